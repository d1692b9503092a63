/**
 * A strict DER reader for the few structures the gate reads itself: CRLs (a CRL of 100,000
 * revoked serials is ~3 MB, which @peculiar/x509's ASN.1 parser refuses as too many nodes),
 * name constraints and subject alternative names. Strict means: definite, minimal lengths
 * only, nothing past the end of a value, and no value running past its parent. Anything
 * else is a `TypeError`, so a crafted structure cannot be read two ways.
 *
 * @module
 */

/** One DER value: its tag byte and where its contents lie in `bytes`. */
export interface Tlv {
  /** The identifier octet (class, constructed bit and tag number below 31). */
  tag: number;
  /** The whole encoding the value was read from. */
  bytes: Uint8Array;
  /** Offset of the identifier octet. */
  start: number;
  /** Offset of the first content octet. */
  contentStart: number;
  /** Offset just past the last content octet. */
  end: number;
}

/** Tags the gate reads. */
export const TAG = {
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  oid: 0x06,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
  boolean: 0x01,
} as const;

/**
 * The value at `offset` of `bytes`, which must end at or before `limit`.
 *
 * @example
 * ```ts
 * import { readTlv } from "./der.ts";
 * const v = readTlv(new Uint8Array([0x02, 0x01, 0x05]));
 * if (v.tag !== 2 || v.contentStart !== 2 || v.end !== 3) throw new Error();
 * ```
 */
export function readTlv(bytes: Uint8Array, offset = 0, limit = bytes.length): Tlv {
  if (offset + 2 > limit) throw new TypeError("DER value truncated");
  const tag = bytes[offset];
  if ((tag & 0x1f) === 0x1f) throw new TypeError("DER high tag numbers are not supported");
  let length = bytes[offset + 1];
  let contentStart = offset + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0) throw new TypeError("DER indefinite length");
    if (n > 4) throw new TypeError("DER length too long");
    if (contentStart + n > limit) throw new TypeError("DER length truncated");
    if (bytes[contentStart] === 0) throw new TypeError("DER length not minimal");
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + bytes[contentStart + i];
    if (length < 0x80) throw new TypeError("DER length not minimal");
    contentStart += n;
  }
  const end = contentStart + length;
  if (end > limit) throw new TypeError("DER value runs past its container");
  return { tag, bytes, start: offset, contentStart, end };
}

/**
 * The one value that `bytes` holds, nothing after it.
 *
 * @example
 * ```ts
 * import { readOnly } from "./der.ts";
 * try { readOnly(new Uint8Array([0x05, 0x00, 0x00])); throw new Error("must refuse"); }
 * catch (e) { if (!(e instanceof TypeError)) throw e; }
 * ```
 */
export function readOnly(bytes: Uint8Array): Tlv {
  const v = readTlv(bytes);
  if (v.end !== bytes.length) throw new TypeError("data after the DER value");
  return v;
}

/** The values inside a constructed value, in order. */
export function childrenOf(parent: Tlv): Tlv[] {
  if ((parent.tag & 0x20) === 0) throw new TypeError("DER value is not constructed");
  const out: Tlv[] = [];
  for (let at = parent.contentStart; at < parent.end;) {
    const child = readTlv(parent.bytes, at, parent.end);
    out.push(child);
    at = child.end;
  }
  return out;
}

/** `v` when it has tag `tag`, else a `TypeError` naming `what`. */
export function expectTag(v: Tlv | undefined, tag: number, what: string): Tlv {
  if (!v || v.tag !== tag) throw new TypeError(`expected ${what}`);
  return v;
}

/** The contents of a value. */
export function contentOf(v: Tlv): Uint8Array {
  return v.bytes.subarray(v.contentStart, v.end);
}

/** The whole encoding of a value (identifier, length and contents). */
export function encodingOf(v: Tlv): Uint8Array {
  return v.bytes.subarray(v.start, v.end);
}

/**
 * An OBJECT IDENTIFIER's dotted form.
 *
 * @example
 * ```ts
 * import { oidOf, readOnly } from "./der.ts";
 * if (oidOf(readOnly(new Uint8Array([6, 3, 0x55, 0x1d, 0x13]))) !== "2.5.29.19") throw new Error();
 * ```
 */
export function oidOf(v: Tlv): string {
  const c = contentOf(expectTag(v, TAG.oid, "an OBJECT IDENTIFIER"));
  if (c.length === 0 || c[c.length - 1] & 0x80) throw new TypeError("malformed OID");
  const parts: number[] = [];
  let n = 0;
  for (let i = 0; i < c.length; i++) {
    if (n === 0 && c[i] === 0x80) throw new TypeError("OID not minimal");
    n = n * 128 + (c[i] & 0x7f);
    if (n > Number.MAX_SAFE_INTEGER / 128) throw new TypeError("OID arc too large");
    if ((c[i] & 0x80) === 0) {
      parts.push(n);
      n = 0;
    }
  }
  const first = parts[0] < 40 ? 0 : parts[0] < 80 ? 1 : 2;
  return [first, parts[0] - first * 40, ...parts.slice(1)].join(".");
}

/**
 * A non-negative INTEGER's magnitude as lower-case hex without leading zeros (the form of
 * `normalizeSerial`). Why the raw bytes: a serial is a name, compared as its encoding says.
 */
export function integerHex(v: Tlv): string {
  const c = contentOf(expectTag(v, TAG.integer, "an INTEGER"));
  if (c.length === 0) throw new TypeError("empty INTEGER");
  if (c.length > 1 && c[0] === 0 && (c[1] & 0x80) === 0) throw new TypeError("INTEGER not minimal");
  let hex = "";
  for (const b of c) hex += HEX[b];
  hex = hex.replace(/^0+/, "");
  return hex === "" ? "0" : hex;
}
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** A UTCTime or GeneralizedTime in DER's `Z` form, as a Date. */
export function timeOf(v: Tlv): Date {
  const text = new TextDecoder().decode(contentOf(v));
  let m: RegExpMatchArray | null;
  let year: number;
  if (v.tag === TAG.utcTime) {
    m = text.match(/^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/);
    if (!m) throw new TypeError(`malformed UTCTime "${text}"`);
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy; // RFC 5280 4.1.2.5.1
  } else if (v.tag === TAG.generalizedTime) {
    m = text.match(/^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/);
    if (!m) throw new TypeError(`malformed GeneralizedTime "${text}"`);
    year = Number(m[1]);
  } else {
    throw new TypeError("expected a time");
  }
  const [mo, d, h, mi, s] = m.slice(2).map(Number);
  const date = new Date(Date.UTC(year, mo - 1, d, h, mi, s));
  if (date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d || h > 23 || mi > 59 || s > 59) {
    throw new TypeError(`invalid time "${text}"`);
  }
  return date;
}
