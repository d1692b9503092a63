// findHeadEnd's fast paths (the head searched in the text of its first bytes, line ends
// checked by native searches before the regex) must answer exactly what the plain scan does:
// the same end, the same error, wherever the head ends or the bad byte sits.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { findHeadEnd, HttpError, MAX_HEAD_BYTES } from "../src/docker/http.ts";

/** The plain scan: the buffer's own search, one regex over the head. */
function reference(buffer: Buffer, maxBytes = MAX_HEAD_BYTES): number | string {
  const end = buffer.indexOf(Buffer.from("\r\n\r\n"));
  const scan = end === -1 ? Math.min(buffer.length, maxBytes + 1) : end + 4;
  const text = buffer.toString("latin1", 0, scan);
  // deno-lint-ignore no-control-regex
  const bad = /\x00|\r(?!\n)|(?<!\r)\n/.exec(text);
  if (bad && !(bad[0] === "\r" && end === -1 && bad.index === text.length - 1)) {
    return bad[0] === "\0" ? "NUL" : bad[0] === "\r" ? "bare CR" : "bare LF";
  }
  if (end === -1) return buffer.length > maxBytes ? "too long" : -1;
  return end + 4 > maxBytes ? "too long" : end + 4;
}

function actual(buffer: Buffer, maxBytes?: number): number | string {
  try {
    return findHeadEnd(buffer, maxBytes);
  } catch (err) {
    assert.ok(err instanceof HttpError);
    const m = err.message;
    return m.startsWith("NUL")
      ? "NUL"
      : m.startsWith("bare CR")
      ? "bare CR"
      : m.startsWith("bare LF")
      ? "bare LF"
      : m.includes("too long")
      ? "too long"
      : m;
  }
}

/** A head of about `size` bytes: header lines of `x` padding, then the blank line. */
function head(size: number): string {
  let text = "GET / HTTP/1.1\r\nHost: d\r\n";
  while (text.length + 12 < size) {
    text += `X-P: ${"x".repeat(Math.min(60, size - text.length - 12))}\r\n`;
  }
  return text + "\r\n";
}

Deno.test("findHeadEnd: the end wherever the head ends, with or without bytes after it", () => {
  for (const size of [40, 1000, 2030, 2040, 2044, 2045, 2046, 2047, 2048, 2049, 2052, 2100, 9000]) {
    for (const after of ["", "body", "x".repeat(3000)]) {
      for (const cut of [0, 1, 2, 3, 4]) {
        const b = Buffer.from(head(size) + after, "latin1");
        const part = cut && !after ? b.subarray(0, b.length - cut) : b;
        assert.equal(
          actual(part),
          reference(part),
          `size ${size} after ${after.length} cut ${cut}`,
        );
      }
    }
  }
});

Deno.test("findHeadEnd: the same error for every bad byte at every place", () => {
  const base = head(2100);
  for (const at of [3, 20, 500, 2040, 2046, 2047, 2048, 2049, 2090, base.length - 3]) {
    for (const bad of ["\0", "\r", "\n", "\rx", "x\n", "\r\r\n", "\n\r"]) {
      for (const tail of ["", "\r\n\r\nrest"]) {
        const text = base.slice(0, at) + bad + base.slice(at) + tail;
        const b = Buffer.from(text, "latin1");
        assert.equal(actual(b), reference(b), `${JSON.stringify(bad)} at ${at}`);
        const open = Buffer.from(base.slice(0, at) + bad, "latin1"); // head not complete yet
        assert.equal(actual(open), reference(open), `${JSON.stringify(bad)} at ${at}, open`);
      }
    }
  }
  for (const text of ["GET / HTTP/1.1\r", "\r", "\n", "GET / HTTP/1.1\r\n\r", ""]) {
    const b = Buffer.from(text, "latin1");
    assert.equal(actual(b), reference(b), JSON.stringify(text));
  }
});

Deno.test("findHeadEnd: the length limit, around the text prefix and the limit", () => {
  for (const max of [100, 2047, 2048, 2049, 4096]) {
    for (const size of [90, 2040, 2050, 3000, 5000]) {
      const b = Buffer.from(head(size) + "rest", "latin1");
      assert.equal(actual(b, max), reference(b, max), `max ${max} size ${size}`);
      const open = b.subarray(0, size - 4);
      assert.equal(actual(open, max), reference(open, max), `max ${max} size ${size} open`);
    }
  }
});
