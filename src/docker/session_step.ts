/**
 * The step before a recorded session is forwarded: an exec start or attach of a role with
 * `"record"` asks the daemon what it will run (the exec instance, or the container), opens the
 * session's recording (`session_record.ts`), and only then lets the request on. A role with
 * `"record": "required"` is refused when the recording cannot be opened, so dockerd never
 * starts a session that is not recorded.
 *
 * @module
 */

import type { Duplex } from "node:stream";
import { hostname } from "node:os";
import type { Role } from "./api_policy.ts";
import { DaemonClient } from "./daemon_client.ts";
import { isJsonObject, type JsonValue, parseStrictJson } from "./strict_json.ts";
import type { SessionMeta, SessionRecorder, SessionRecording } from "./session_record.ts";

/** What the step needs. */
export interface SessionStepOptions {
  /** Where recordings go; without it no session can be recorded. */
  recorder?: SessionRecorder;
  /** A connection to the daemon, for its inspect of the exec or container. */
  connectDaemon?: () => Promise<Duplex>;
  /** Who, for the header. */
  who: { identity: string; serial: string };
  /** Give up on the daemon's inspect after this long. Default: 10 000 ms. */
  timeoutMs?: number;
}

/** What the step decided: go on (with a recording, or with the reason there is none), or refuse. */
export type SessionOutcome =
  | { kind: "go"; recording?: SessionRecording; problem?: string }
  | { kind: "refuse"; status: number; rule: string };

const EXEC_START = /^\/exec\/([^/]+)\/start$/;
const ATTACH = /^\/containers\/([^/]+)\/attach(\/ws)?$/;

/** The session a request starts: exec start (by exec ID) or attach (by container). */
function sessionOf(
  method: string,
  path: string,
): { kind: "exec" | "attach"; name: string } | undefined {
  const exec = method === "POST" ? EXEC_START.exec(path) : null;
  if (exec) return { kind: "exec", name: exec[1] };
  const attach = ATTACH.exec(path);
  if (attach && method === (attach[2] ? "GET" : "POST")) return { kind: "attach", name: attach[1] };
  return undefined;
}

function strings(v: JsonValue | undefined): string[] {
  return Array.isArray(v) ? v.filter((s): s is string => typeof s === "string") : [];
}

/**
 * The recording step of one relayed connection.
 *
 * @example
 * ```ts
 * import { SessionStep } from "./session_step.ts";
 * import { compileApiPolicy } from "./api_policy.ts";
 * const role = compileApiPolicy({ roles: { r: { preset: "no-escape", record: true } }, identities: [] }, "x").roles.get("r")!;
 * const step = new SessionStep({ who: { identity: "a", serial: "1" } });
 * if (!step.takes(role, "POST", "/exec/ab/start") || step.takes(role, "GET", "/containers/json")) throw new Error();
 * ```
 */
export class SessionStep {
  readonly #options: SessionStepOptions;
  #daemon: DaemonClient | undefined;

  /** A step for one connection. */
  constructor(options: SessionStepOptions) {
    this.#options = options;
  }

  /** Whether `role`'s `method path` starts a session to record. */
  takes(role: Role, method: string, path: string): boolean {
    return role.record !== false && sessionOf(method, path) !== undefined;
  }

  /**
   * Open the recording of the session `method path` starts; `startTty` is what an exec
   * start's body says (it decides the stream's framing). Never throws: a failure is a refusal
   * for a role that requires the recording, else a `go` with the problem.
   */
  async open(
    role: Role,
    method: string,
    path: string,
    startTty: boolean | undefined,
  ): Promise<SessionOutcome> {
    try {
      const recorder = this.#options.recorder;
      if (!recorder) throw new Error("serve runs without --record-sessions");
      // A websocket attach's stream is in WebSocket frames (masked from the client) that the
      // gate does not read: it cannot be recorded as what was typed and shown.
      if (path.endsWith("/attach/ws")) throw new Error("a websocket attach is not recorded");
      const meta = await this.#meta(sessionOf(method, path)!, startTty);
      return { kind: "go", recording: recorder.open(meta) };
    } catch (err) {
      const problem = `the session cannot be recorded: ${(err as Error).message}`;
      if (role.record !== "required") return { kind: "go", problem };
      return { kind: "refuse", status: 403, rule: `record: required: ${problem}` };
    }
  }

  /** Close the step's daemon connection. */
  close(): void {
    this.#daemon?.close();
  }

  async #meta(
    session: { kind: "exec" | "attach"; name: string },
    startTty: boolean | undefined,
  ): Promise<SessionMeta> {
    const who = this.#options.who;
    const base = {
      identity: who.identity,
      serial: who.serial,
      host: hostname(),
      kind: session.kind,
    };
    if (session.kind === "exec") {
      const exec = await this.#inspect(`/exec/${encodeURIComponent(session.name)}/json`);
      const proc = isJsonObject(exec["ProcessConfig"]) ? exec["ProcessConfig"] : {};
      const entry = typeof proc["entrypoint"] === "string" ? [proc["entrypoint"]] : [];
      return {
        ...base,
        container: typeof exec["ContainerID"] === "string" ? exec["ContainerID"] : "?",
        command: [...entry, ...strings(proc["arguments"])],
        tty: startTty ?? proc["tty"] === true,
      };
    }
    const c = await this.#inspect(`/containers/${encodeURIComponent(session.name)}/json`);
    const config = isJsonObject(c["Config"]) ? c["Config"] : {};
    const id = typeof c["Id"] === "string" ? c["Id"] : "?";
    const name = typeof c["Name"] === "string" ? c["Name"].replace(/^\//, "") : "";
    return {
      ...base,
      container: name ? `${id} (${name})` : id,
      command: [...(typeof c["Path"] === "string" ? [c["Path"]] : []), ...strings(c["Args"])],
      tty: config["Tty"] === true,
    };
  }

  /** The daemon's inspect answer as an object, within the timeout. */
  async #inspect(path: string) {
    const connect = this.#options.connectDaemon;
    if (!connect) throw new Error("no daemon connection to inspect the session");
    this.#daemon ??= new DaemonClient(connect);
    const ms = this.#options.timeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer from the daemon in ${ms} ms`)), ms);
    });
    try {
      const answer = await Promise.race([this.#daemon.request("GET", path), late]);
      if (answer.status !== 200) throw new Error(`the daemon answered ${answer.status} to ${path}`);
      const body = parseStrictJson(answer.body);
      if (!isJsonObject(body)) throw new Error(`the daemon's answer to ${path} is not an object`);
      return body;
    } finally {
      clearTimeout(timer);
    }
  }
}
