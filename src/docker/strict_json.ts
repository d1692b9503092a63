/**
 * JSON read the strict way: one value, no duplicate keys, nothing after it, valid UTF-8, no
 * lone surrogates, bounded depth.
 *
 * Why not `JSON.parse`: it keeps the last of two duplicate keys silently, and dockerd's Go
 * decoder does the same, but a policy that reads a body must see the one value the daemon
 * will act on, with no doubt left. `{"Privileged":false,"Privileged":true}` is refused here,
 * not judged. (Case-folded keys, which Go also matches, are the schema checker's job, see
 * `body_rules.ts`.)
 *
 * @module
 */

/** A parsed JSON value; objects have no prototype (a key `__proto__` is just a key). */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
/** A parsed JSON object. */
export type JsonObject = { [key: string]: JsonValue };

/** A body that is not one unambiguous JSON value. */
export class JsonError extends Error {
  /** Make one. */
  constructor(message: string) {
    super(message);
    this.name = "JsonError";
  }
}

/** Nesting deeper than this is refused (no create body comes close). */
export const MAX_JSON_DEPTH = 64;

/**
 * Parse `bytes` as exactly one JSON value. Throws a {@linkcode JsonError} for invalid UTF-8,
 * a duplicate key in any object, trailing data, or anything `JSON.parse` would also refuse.
 *
 * @example
 * ```ts
 * import { parseStrictJson } from "./strict_json.ts";
 * const v = parseStrictJson(new TextEncoder().encode('{"a":[1,true,null]}')) as { a: unknown[] };
 * if (v.a.length !== 3) throw new Error();
 * let refused = false;
 * try { parseStrictJson(new TextEncoder().encode('{"a":1,"a":2}')); } catch { refused = true; }
 * if (!refused) throw new Error("duplicates must be refused");
 * ```
 */
export function parseStrictJson(bytes: Uint8Array): JsonValue {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new JsonError("body is not valid UTF-8");
  }
  const p = new Parser(text);
  p.ws();
  const value = p.value(0);
  p.ws();
  if (p.i !== text.length) throw new JsonError("data after the JSON value");
  return value;
}

class Parser {
  i = 0;
  constructor(readonly s: string) {}

  ws(): void {
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      this.i++;
    }
  }

  fail(what: string): never {
    throw new JsonError(`invalid JSON at offset ${this.i}: ${what}`);
  }

  value(depth: number): JsonValue {
    if (depth > MAX_JSON_DEPTH) this.fail("nested too deeply");
    const c = this.s[this.i];
    if (c === "{") return this.object(depth);
    if (c === "[") return this.array(depth);
    if (c === '"') return this.string();
    if (c === "t") return this.literal("true", true);
    if (c === "f") return this.literal("false", false);
    if (c === "n") return this.literal("null", null);
    return this.number();
  }

  literal<T>(word: string, v: T): T {
    if (this.s.startsWith(word, this.i)) {
      this.i += word.length;
      return v;
    }
    return this.fail("unexpected token");
  }

  number(): number {
    const m = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
    m.lastIndex = this.i;
    const r = m.exec(this.s);
    if (!r || r[0] === "" || r[0] === "-") this.fail("unexpected token");
    this.i += r[0].length;
    return Number(r[0]);
  }

  string(): string {
    this.i++; // opening quote
    let out = "";
    for (;;) {
      if (this.i >= this.s.length) this.fail("unterminated string");
      const c = this.s.charCodeAt(this.i);
      if (c === 0x22) {
        this.i++;
        break;
      }
      if (c < 0x20) this.fail("control character in a string");
      if (c === 0x5c) {
        out += this.escape();
        continue;
      }
      if (c >= 0xd800 && c <= 0xdfff) this.fail("lone surrogate in a string");
      out += this.s[this.i++];
    }
    return out;
  }

  escape(): string {
    const e = this.s[this.i + 1];
    this.i += 2;
    const simple: Record<string, string> = {
      '"': '"',
      "\\": "\\",
      "/": "/",
      b: "\b",
      f: "\f",
      n: "\n",
      r: "\r",
      t: "\t",
    };
    if (e in simple) return simple[e];
    if (e !== "u") this.fail("bad escape");
    const unit = this.hex4();
    if (unit >= 0xd800 && unit <= 0xdbff) {
      if (this.s.slice(this.i, this.i + 2) !== "\\u") this.fail("lone surrogate escape");
      this.i += 2;
      const low = this.hex4();
      if (low < 0xdc00 || low > 0xdfff) this.fail("lone surrogate escape");
      return String.fromCharCode(unit, low);
    }
    if (unit >= 0xdc00 && unit <= 0xdfff) this.fail("lone surrogate escape");
    return String.fromCharCode(unit);
  }

  hex4(): number {
    const h = this.s.slice(this.i, this.i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail("bad \\u escape");
    this.i += 4;
    return parseInt(h, 16);
  }

  array(depth: number): JsonValue[] {
    this.i++;
    const out: JsonValue[] = [];
    this.ws();
    if (this.s[this.i] === "]") {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      out.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === "]") return out;
      if (c !== ",") this.fail("expected ',' or ']'");
    }
  }

  object(depth: number): JsonObject {
    this.i++;
    const out: JsonObject = Object.create(null);
    this.ws();
    if (this.s[this.i] === "}") {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail("expected a key");
      const key = this.string();
      if (Object.hasOwn(out, key)) throw new JsonError(`duplicate key "${key}"`);
      this.ws();
      if (this.s[this.i++] !== ":") this.fail("expected ':'");
      this.ws();
      out[key] = this.value(depth + 1);
      this.ws();
      const c = this.s[this.i++];
      if (c === "}") return out;
      if (c !== ",") this.fail("expected ',' or '}'");
    }
  }
}

/**
 * Whether `v` is a JSON object (not an array, not null).
 *
 * @example
 * ```ts
 * import { isJsonObject } from "./strict_json.ts";
 * if (!isJsonObject({}) || isJsonObject([]) || isJsonObject(null)) throw new Error();
 * ```
 */
export function isJsonObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
