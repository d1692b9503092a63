/**
 * Inputs for the gate-versus-Go differential: hand-written smuggling and ambiguity cases, and
 * a seeded mutator that derives more from them.
 *
 * @module
 */

import { Buffer } from "node:buffer";

const H = "Host: d\r\n";
const FORM = "application/x-www-form-urlencoded";

/** Known smuggling and ambiguity cases, by name (latin1 text, so any byte can be written). */
export const CASES: Record<string, string> = {
  plainGet: `GET /v1.41/containers/json?all=1 HTTP/1.1\r\n${H}\r\n`,
  postJson:
    `POST /v1.41/containers/create?name=a HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
  duplicateContentLength:
    `POST /build HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc`,
  differentContentLengths:
    `POST /build HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 5\r\n\r\nabcde`,
  contentLengthList: `POST /build HTTP/1.1\r\n${H}Content-Length: 3, 3\r\n\r\nabc`,
  contentLengthPlus: `POST /build HTTP/1.1\r\n${H}Content-Length: +3\r\n\r\nabc`,
  contentLengthEmpty: `POST /build HTTP/1.1\r\n${H}Content-Length:\r\n\r\n`,
  clAndTe:
    `POST /build HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n`,
  teChunkedIdentity:
    `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n1\r\na\r\n0\r\n\r\n`,
  teTwice:
    `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
  teUpper: `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: CHUNKED\r\n\r\n1\r\na\r\n0\r\n\r\n`,
  teHttp10: `POST /build HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n`,
  obsFold: `GET /info HTTP/1.1\r\n${H}X-A: 1\r\n 2\r\n\r\n`,
  obsFoldContentLength: `POST /build HTTP/1.1\r\n${H}Content-Length:\r\n 3\r\n\r\nabc`,
  bareLf: `GET /info HTTP/1.1\n${H}\n`,
  bareLfInHeader: `GET /info HTTP/1.1\r\nHost: d\nContent-Length: 3\r\n\r\nabc`,
  spaceBeforeColon: `POST /build HTTP/1.1\r\n${H}Content-Length : 3\r\n\r\nabc`,
  tabInValue: `GET /info HTTP/1.1\r\n${H}X-A:\t1\t\r\n\r\n`,
  chunkExtension:
    `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1;a=b\r\na\r\n0\r\n\r\n`,
  chunkLeadingZeros:
    `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0001\r\na\r\n000\r\n\r\n`,
  chunkHex0x: `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0x1\r\na\r\n0\r\n\r\n`,
  chunkHuge:
    `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\na\r\n0\r\n\r\n`,
  chunkSpace: `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1 \r\na\r\n0\r\n\r\n`,
  chunkBareLf: `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n`,
  chunkTrailer:
    `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T: 1\r\n\r\n`,
  chunkDataTooLong:
    `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n`,
  encodedSlash: `GET /containers/a%2fb/json HTTP/1.1\r\n${H}\r\n`,
  encodedDot: `GET /containers/%2e%2e/json HTTP/1.1\r\n${H}\r\n`,
  encodedLetters: `GET /v1.41/containers/%6Aso%6e HTTP/1.1\r\n${H}\r\n`,
  semicolonQuery: `GET /containers/json?all=1;size=1 HTTP/1.1\r\n${H}\r\n`,
  plusAndSpace: `GET /images/json?filters=a+b%20c%2B HTTP/1.1\r\n${H}\r\n`,
  emptyQueryParts: `GET /containers/json?&&all&=x&a== HTTP/1.1\r\n${H}\r\n`,
  invalidUtf8Query: `GET /containers/json?a=%ff%fe HTTP/1.1\r\n${H}\r\n`,
  badEscapeQuery: `GET /containers/json?a=%zz&b=1 HTTP/1.1\r\n${H}\r\n`,
  questionOnly: `GET /containers/json? HTTP/1.1\r\n${H}\r\n`,
  twoQuestions: `GET /containers/json?a=1?b=2 HTTP/1.1\r\n${H}\r\n`,
  nonAsciiHeader: `GET /info HTTP/1.1\r\n${H}X-A: caf\xc3\xa9 \xff\r\n\r\n`,
  http10KeepAlive:
    `GET /info HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /version HTTP/1.0\r\n\r\n`,
  // JS String#trim strips NBSP (0xa0), VT and FF too; Go's token lists trim space and tab only.
  http10KeepAliveNbsp:
    `GET /info HTTP/1.0\r\nConnection: keep-alive\xa0\r\n\r\nGET /version HTTP/1.0\r\n\r\n`,
  closeNbsp:
    `GET /info HTTP/1.1\r\n${H}Connection: close\xa0\r\n\r\nGET /version HTTP/1.1\r\n${H}\r\n`,
  closeVt:
    `GET /info HTTP/1.1\r\n${H}Connection: \x0bclose\r\n\r\nGET /version HTTP/1.1\r\n${H}\r\n`,
  http10Close: `GET /info HTTP/1.0\r\n\r\nGET /version HTTP/1.0\r\n\r\n`,
  pipelined:
    `POST /build HTTP/1.1\r\n${H}Content-Length: 1\r\n\r\naGET /info HTTP/1.1\r\n${H}\r\nGET /version HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
  pipelinedChunked:
    `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\nGET /info HTTP/1.1\r\n${H}\r\n`,
  absoluteForm: `GET http://d/v1.41/info HTTP/1.1\r\n${H}\r\n`,
  asteriskForm: `OPTIONS * HTTP/1.1\r\n${H}\r\n`,
  noHost: `GET /info HTTP/1.1\r\n\r\n`,
  twoHosts: `GET /info HTTP/1.1\r\n${H}${H}\r\n`,
  emptyHost: `GET /info HTTP/1.1\r\nHost:\r\n\r\n`,
  lowerMethod: `get /info HTTP/1.1\r\n${H}\r\n`,
  http2Version: `GET /info HTTP/1.2\r\n${H}\r\n`,
  doubleSpaceRequestLine: `GET  /info HTTP/1.1\r\n${H}\r\n`,
  formUpper:
    `POST /build HTTP/1.1\r\n${H}Content-Type: APPLICATION/X-WWW-FORM-URLENCODED; charset=x\r\nContent-Length: 16\r\n\r\nnetworkmode=host`,
  formBadParam:
    `POST /build HTTP/1.1\r\n${H}Content-Type: ${FORM}; charset\r\nContent-Length: 16\r\n\r\nnetworkmode=host`,
  formSpacing:
    `POST /build HTTP/1.1\r\n${H}Content-Type:   ${FORM}  ;  a=b \r\nContent-Length: 16\r\n\r\nnetworkmode=host`,
  formTab:
    `POST /build HTTP/1.1\r\n${H}Content-Type:\t${FORM}\t\r\nContent-Length: 16\r\n\r\nnetworkmode=host`,
  formChunked:
    `POST /build HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nnetworkmode=host\r\n0\r\n\r\n`,
  formDottedI:
    `POST /build HTTP/1.1\r\n${H}Content-Type: appl\xc4\xb0cation/x-www-form-urlencoded\r\nContent-Length: 16\r\n\r\nnetworkmode=host`,
  formNel:
    `POST /build HTTP/1.1\r\n${H}Content-Type: \xc2\x85${FORM}\r\nContent-Length: 16\r\n\r\nnetworkmode=host`,
  formTwoContentTypes:
    `POST /build HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\nnetworkmode=host`,
  formAfterJson:
    `POST /build HTTP/1.1\r\n${H}Content-Type: application/json, ${FORM}\r\nContent-Length: 16\r\n\r\nnetworkmode=host`,
  formPut:
    `PUT /containers/a/archive?path=/ HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nContent-Length: 6\r\n\r\npath=x`,
  multipart:
    `POST /build HTTP/1.1\r\n${H}Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 8\r\n\r\n--x--\r\n\r\n`,
  jsonCharset:
    `POST /containers/create HTTP/1.1\r\n${H}Content-Type: application/json; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}`,
  tarBody:
    `PUT /containers/a/archive?path=/ HTTP/1.1\r\n${H}Content-Type: application/x-tar\r\nContent-Length: 3\r\n\r\nabc`,
  emptyContentType:
    `POST /build HTTP/1.1\r\n${H}Content-Type:\r\nContent-Length: 16\r\n\r\nnetworkmode=host`,
  upgrade:
    `POST /containers/a/attach?stream=1 HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: tcp\r\n\r\nGET /info HTTP/1.1\r\n${H}\r\n`,
  nulInHeader: `GET /info HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n`,
  ctlInHeader: `GET /info HTTP/1.1\r\n${H}X-A: a\x01b\r\n\r\n`,
  versionPrefixOnly: `GET /v1.41 HTTP/1.1\r\n${H}\r\n`,
  encodedVersion: `GET /%761.41/info HTTP/1.1\r\n${H}\r\n`,
  unicodePath: `GET /containers/caf%C3%A9/json HTTP/1.1\r\n${H}\r\n`,
  rawNonAsciiPath: `GET /containers/caf\xc3\xa9/json HTTP/1.1\r\n${H}\r\n`,
  fragment: `GET /info#x HTTP/1.1\r\n${H}\r\n`,
  oddPathBytes: `GET /containers/a"b<>{}|^\`~!$&'()*+,=@/json HTTP/1.1\r\n${H}\r\n`,
  versionLeadingZero: `GET /v01.41/info HTTP/1.1\r\n${H}\r\n`,
  versionUpper: `GET /V1.41/info HTTP/1.1\r\n${H}\r\n`,
  versionTrailingSlash: `GET /v1.41/ HTTP/1.1\r\n${H}\r\n`,
  queryNulAndPlus: `GET /containers/json?a=%00&b=%2B&c=%2b+ HTTP/1.1\r\n${H}\r\n`,
  queryEncodedAmp: `GET /containers/json?a=1%26b%3D2 HTTP/1.1\r\n${H}\r\n`,
  queryUnicodeKey: `GET /containers/json?%C3%A9=1&%e2%80%8b=2 HTTP/1.1\r\n${H}\r\n`,
  chunkUpperHex:
    `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\n`,
  chunkFifteenDigits:
    `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n000000000000001\r\na\r\n0\r\n\r\n`,
  chunkSixteenDigits:
    `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0000000000000001\r\na\r\n0\r\n\r\n`,
  teSpaces: `POST /build HTTP/1.1\r\n${H}Transfer-Encoding:  chunked \t\r\n\r\n1\r\na\r\n0\r\n\r\n`,
  teNbsp:
    `POST /build HTTP/1.1\r\n${H}Transfer-Encoding: chunked\xa0\r\nContent-Length: 3\r\n\r\nabc`,
  clNbsp: `POST /build HTTP/1.1\r\n${H}Content-Length: 3\xa0\r\n\r\nabc`,
  clLeadingZeros: `POST /build HTTP/1.1\r\n${H}Content-Length: 0003\r\n\r\nabc`,
  hostNbsp: `GET /info HTTP/1.1\r\nHost: \xa0d\xa0\r\n\r\n`,
  expectContinue: `POST /build HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 1\r\n\r\na`,
  upgradeNbsp:
    `POST /containers/a/attach HTTP/1.1\r\n${H}Connection: Upgrade\xa0\r\nUpgrade: tcp\r\n\r\nGET /info HTTP/1.1\r\n${H}\r\n`,
  connectionList:
    `GET /info HTTP/1.1\r\n${H}Connection: keep-alive, ,CLOSE\r\n\r\nGET /version HTTP/1.1\r\n${H}\r\n`,
  incompleteBody: `POST /build HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nabc`,
};

/** The cases as bytes, in a stable order. */
export function caseInputs(): { name: string; bytes: Buffer }[] {
  return Object.entries(CASES).map(([name, text]) => ({
    name,
    bytes: Buffer.from(text, "latin1"),
  }));
}

/** A small seeded PRNG (mulberry32): the same seed gives the same inputs. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INSERTS = ["\r", "\n", "\r\n", " ", "\t", ":", ";", ",", "%", "0", "\x85", "\xa0", "\x0b"];

/** One to three random mutations of `input`: byte flips, insertions, case changes, dup lines. */
export function mutate(input: Buffer, rand: () => number): Buffer {
  let b = Buffer.from(input);
  const count = 1 + Math.floor(rand() * 3);
  for (let m = 0; m < count; m++) {
    const at = Math.floor(rand() * (b.length + 1));
    const op = Math.floor(rand() * 6);
    if (op === 0 && b.length) {
      b[Math.min(at, b.length - 1)] ^= 1 << Math.floor(rand() * 8);
    } else if (op === 1) {
      const ins = Buffer.from(INSERTS[Math.floor(rand() * INSERTS.length)], "latin1");
      b = Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
    } else if (op === 2 && b.length) {
      const i = Math.min(at, b.length - 1);
      const c = b[i];
      if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) b[i] = c ^ 0x20;
    } else if (op === 3) {
      // Duplicate the line that contains `at` (a repeated header, say).
      const start = b.lastIndexOf("\n", Math.max(0, at - 1)) + 1;
      const end = b.indexOf("\n", at);
      if (end !== -1) {
        b = Buffer.concat([
          b.subarray(0, end + 1),
          b.subarray(start, end + 1),
          b.subarray(end + 1),
        ]);
      }
    } else if (op === 4 && b.length) {
      b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
    } else {
      // Splice in a line of another shape: a framing or content-type header.
      const lines = [
        "Content-Length: 1\r\n",
        "Transfer-Encoding: chunked\r\n",
        `Content-Type: ${FORM}\r\n`,
        "Connection: close\r\n",
        "Connection: keep-alive\r\n",
      ];
      const line = Buffer.from(lines[Math.floor(rand() * lines.length)]);
      const nl = b.indexOf("\r\n");
      if (nl !== -1) b = Buffer.concat([b.subarray(0, nl + 2), line, b.subarray(nl + 2)]);
    }
  }
  return b;
}

/** `count` mutated inputs from the hand-written cases, from `seed`. */
export function mutatedInputs(seed: number, count: number): Buffer[] {
  const rand = random(seed);
  const base = caseInputs();
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    out.push(mutate(base[Math.floor(rand() * base.length)].bytes, rand));
  }
  return out;
}

const pick = <T>(rand: () => number, list: readonly T[]): T =>
  list[Math.floor(rand() * list.length)];

const SEGMENTS = [
  "containers",
  "json",
  "v1.41",
  "v1.24",
  "build",
  "a",
  "%41",
  "%2e",
  "%C3%A9",
  "+",
];
const QUERY_PARTS = ["a=1", "a", "=x", "b=%20", "c=+", "d=%2B", "", "e=%zz", "f=%ff", "g=1;h=2"];
const SPACES = ["", " ", "  ", "\t", " \t", "\xa0", "\x0b"];
const HEADERS = [
  "Content-Length",
  "Transfer-Encoding",
  "Content-Type",
  "Connection",
  "Host",
  "Upgrade",
  "X-A",
];
const VALUES: Record<string, readonly string[]> = {
  "Content-Length": ["0", "1", "3", "03", "+3", "3,3", "-1", ""],
  "Transfer-Encoding": ["chunked", "CHUNKED", "chunked, identity", "identity", "gzip, chunked"],
  "Content-Type": [
    "application/json",
    FORM,
    `${FORM}; charset`,
    "Application/JSON; x=y",
    "multipart/form-data; boundary=x",
    "text/plain",
    "application/x-tar",
    "application/json;",
    "",
  ],
  Connection: ["close", "keep-alive", "Upgrade", "close, keep-alive", "CLOSE"],
  Host: ["d", "", "a b", "d:2375"],
  Upgrade: ["tcp", ""],
  "X-A": ["1", "caf\xc3\xa9", "\xff"],
};
const BODIES = ["", "a", "abc", "1\r\na\r\n0\r\n\r\n", "3\r\nabc\r\n0\r\n\r\n", "networkmode=host"];

/**
 * One structured request (or two pipelined): random method, path, query, headers with random
 * spacing, framing and body. Finds what byte mutations of the cases rarely reach.
 */
export function generate(rand: () => number): Buffer {
  let text = "";
  const requests = 1 + Math.floor(rand() * 2);
  for (let r = 0; r < requests; r++) {
    const method = pick(rand, ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]);
    const segments = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => pick(rand, SEGMENTS));
    const query = rand() < 0.5
      ? ""
      : "?" + Array.from({ length: 1 + Math.floor(rand() * 3) }, () => pick(rand, QUERY_PARTS))
        .join("&");
    const version = rand() < 0.85 ? "HTTP/1.1" : "HTTP/1.0";
    text += `${method} /${segments.join("/")}${query} ${version}\r\n`;
    if (rand() < 0.9) text += "Host: d\r\n";
    const count = Math.floor(rand() * 4);
    for (let h = 0; h < count; h++) {
      const name = pick(rand, HEADERS);
      const spelled = rand() < 0.2 ? name.toUpperCase() : name;
      text += `${spelled}:${pick(rand, SPACES)}${pick(rand, VALUES[name])}${
        pick(rand, SPACES)
      }\r\n`;
    }
    text += `\r\n${pick(rand, BODIES)}`;
  }
  return Buffer.from(text, "latin1");
}

/** `count` generated inputs from `seed`. */
export function generatedInputs(seed: number, count: number): Buffer[] {
  const rand = random(seed);
  return Array.from({ length: count }, () => generate(rand));
}
