/**
 * The one way an error becomes text in a message: its `message` when it is an `Error`, else
 * its string form.
 *
 * @example
 * ```ts
 * import { errorMessage } from "./errors.ts";
 * if (errorMessage(new Error("boom")) !== "boom" || errorMessage(42) !== "42") throw new Error();
 * ```
 *
 * @module
 */

/** The text of `error` for a one-line message. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
