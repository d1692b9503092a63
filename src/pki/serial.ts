/**
 * Serial numbers as every part compares them: the gate's revocation check, CRL reading, the
 * CA's records and the command line (`keygen revoke SERIAL`).
 *
 * @module
 */

/**
 * Normalise a serial number to lower-case hex without leading zeros, so serials from CRLs,
 * `openssl` output and the command line compare equal.
 *
 * @example
 * ```ts
 * import { normalizeSerial } from "./serial.ts";
 * if (normalizeSerial("00:0A:ff") !== "aff") throw new Error();
 * ```
 */
export function normalizeSerial(serial: string): string {
  const hex = serial.replace(/[:\s]/g, "").toLowerCase().replace(/^0+/, "");
  return hex === "" ? "0" : hex;
}
