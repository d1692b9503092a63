/**
 * JSON read the strict way: one value, no duplicate keys, nothing after it, valid UTF-8, no
 * lone surrogates, bounded depth.
 *
 * Why not `JSON.parse`: it keeps the last of two duplicate keys silently, and dockerd's Go
 * decoder does the same, but a policy that reads a body must see the one value the daemon
 * will act on, with no doubt left. `{"Privileged":false,"Privileged":true}` is refused here,
 * not judged. (Case-folded keys, which Go also matches, are the schema checker's job, see
 * `no_escape.ts`.)
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
  return parse(bytes, undefined).value;
}

/** Where a value sits in a document's text: `[start, end)` in UTF-16 units. */
export interface Span {
  /** Offset of the value's first character. */
  start: number;
  /** Offset just after the value. */
  end: number;
}

/** An object's span and, for each key, the key's and the value's spans. */
export interface ObjectSpan extends Span {
  /** The member spans by key. */
  members: Map<string, { key: Span; value: Span }>;
}

/** An array's span and its items' spans. */
export interface ArraySpan extends Span {
  /** The item spans in order. */
  items: Span[];
}

/**
 * A parsed body that can be edited in place: the text, the value, and where each object and
 * array (and each of their members) sits in the text. Edits change only the bytes they name,
 * so numbers, escapes and order stay exactly as the client sent them.
 */
export class JsonDocument {
  /** The document's text. */
  readonly text: string;
  /** Its value (the same as {@linkcode parseStrictJson} gives). */
  readonly value: JsonValue;
  readonly #spans: WeakMap<object, ObjectSpan | ArraySpan>;
  readonly #edits: { start: number; end: number; text: string }[] = [];

  /**
   * Parse `bytes` strictly (see {@linkcode parseStrictJson}), keeping the spans.
   *
   * @example
   * ```ts
   * import { JsonDocument } from "./strict_json.ts";
   * const doc = new JsonDocument(new TextEncoder().encode('{"Labels":{"a":"1"},"N":1e400}'));
   * doc.insertMember(doc.value as object, "Extra", "true");
   * if (doc.result() !== '{"Extra":true,"Labels":{"a":"1"},"N":1e400}') throw new Error(doc.result());
   * ```
   */
  constructor(bytes: Uint8Array) {
    const spans = new WeakMap<object, ObjectSpan | ArraySpan>();
    const { text, value } = parse(bytes, spans);
    this.text = text;
    this.value = value;
    this.#spans = spans;
  }

  /** The span of an object or array of this document. */
  spanOf(node: object): ObjectSpan | ArraySpan {
    const span = this.#spans.get(node);
    if (!span) throw new TypeError("not an object or array of this document");
    return span;
  }

  /** Replace the value of `key` in `object` by the JSON text `json`. */
  replaceValue(object: object, key: string, json: string): void {
    const member = (this.spanOf(object) as ObjectSpan).members?.get(key);
    if (!member) throw new RangeError(`no key "${key}" to replace`);
    this.#edit(member.value.start, member.value.end, json);
  }

  /** Rename `key` of `object` to `newKey` (the value stays). */
  renameKey(object: object, key: string, newKey: string): void {
    const member = (this.spanOf(object) as ObjectSpan).members?.get(key);
    if (!member) throw new RangeError(`no key "${key}" to rename`);
    this.#edit(member.key.start, member.key.end, JSON.stringify(newKey));
  }

  /** Replace item `index` of `array` by the JSON text `json`. */
  replaceItem(array: object, index: number, json: string): void {
    const item = (this.spanOf(array) as ArraySpan).items?.[index];
    if (!item) throw new RangeError(`no item ${index} to replace`);
    this.#edit(item.start, item.end, json);
  }

  /** Add `key` with the JSON text `json` as the first member of `object`. */
  insertMember(object: object, key: string, json: string): void {
    this.insertMembers(object, [[key, json]]);
  }

  /**
   * Add the members `[key, JSON text]` first in `object`, in this order: one edit (two
   * {@linkcode JsonDocument.insertMember} calls on one object are two insertions at one place).
   *
   * @example
   * ```ts
   * import { JsonDocument } from "./strict_json.ts";
   * const doc = new JsonDocument(new TextEncoder().encode("{}"));
   * doc.insertMembers(doc.value as object, [["a", "1"], ["b", "2"]]);
   * if (doc.result() !== '{"a":1,"b":2}') throw new Error(doc.result());
   * ```
   */
  insertMembers(object: object, members: readonly [string, string][]): void {
    const span = this.spanOf(object) as ObjectSpan;
    if (!span.members) throw new TypeError("not an object");
    const keys = new Set<string>();
    for (const [key] of members) {
      if (span.members.has(key) || keys.has(key)) {
        throw new RangeError(`key "${key}" is there already`);
      }
      keys.add(key);
    }
    if (members.length === 0) return;
    const text = members.map(([k, json]) => `${JSON.stringify(k)}:${json}`).join(",");
    const comma = span.members.size > 0 ? "," : "";
    this.#edit(span.start + 1, span.start + 1, `${text}${comma}`);
  }

  #edit(start: number, end: number, text: string): void {
    for (const e of this.#edits) {
      if (start < e.end && e.start < end) throw new RangeError("overlapping edits");
      if (start === end && e.start === e.end && start === e.start) {
        throw new RangeError("two insertions at one place");
      }
    }
    this.#edits.push({ start, end, text });
  }

  /** Whether any edit was made. */
  get edited(): boolean {
    return this.#edits.length > 0;
  }

  /** The text with every edit applied. */
  result(): string {
    const edits = [...this.#edits].sort((a, b) => a.start - b.start);
    let out = "";
    let at = 0;
    for (const e of edits) {
      out += this.text.slice(at, e.start) + e.text;
      at = e.end;
    }
    return out + this.text.slice(at);
  }
}

function parse(
  bytes: Uint8Array,
  spans: WeakMap<object, ObjectSpan | ArraySpan> | undefined,
): { text: string; value: JsonValue } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new JsonError("body is not valid UTF-8");
  }
  const p = new Parser(text, spans);
  p.ws();
  const value = p.value(0);
  p.ws();
  if (p.i !== text.length) throw new JsonError("data after the JSON value");
  return { text, value };
}

class Parser {
  i = 0;
  constructor(
    readonly s: string,
    readonly spans: WeakMap<object, ObjectSpan | ArraySpan> | undefined,
  ) {}

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
    const span: ArraySpan | undefined = this.spans
      ? { start: this.i, end: 0, items: [] }
      : undefined;
    this.i++;
    const out: JsonValue[] = [];
    if (span) this.spans!.set(out, span);
    this.ws();
    if (this.s[this.i] === "]") {
      this.i++;
      if (span) span.end = this.i;
      return out;
    }
    for (;;) {
      this.ws();
      const start = this.i;
      out.push(this.value(depth + 1));
      span?.items.push({ start, end: this.i });
      this.ws();
      const c = this.s[this.i++];
      if (c === "]") {
        if (span) span.end = this.i;
        return out;
      }
      if (c !== ",") this.fail("expected ',' or ']'");
    }
  }

  object(depth: number): JsonObject {
    const span: ObjectSpan | undefined = this.spans
      ? { start: this.i, end: 0, members: new Map() }
      : undefined;
    this.i++;
    const out: JsonObject = Object.create(null);
    if (span) this.spans!.set(out, span);
    this.ws();
    if (this.s[this.i] === "}") {
      this.i++;
      if (span) span.end = this.i;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail("expected a key");
      const keyStart = this.i;
      const key = this.string();
      const keyEnd = this.i;
      if (Object.hasOwn(out, key)) throw new JsonError(`duplicate key "${key}"`);
      this.ws();
      if (this.s[this.i++] !== ":") this.fail("expected ':'");
      this.ws();
      const start = this.i;
      out[key] = this.value(depth + 1);
      span?.members.set(key, {
        key: { start: keyStart, end: keyEnd },
        value: { start, end: this.i },
      });
      this.ws();
      const c = this.s[this.i++];
      if (c === "}") {
        if (span) span.end = this.i;
        return out;
      }
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
