import { errorMessage, isKeepsyncError } from '@keepsync/protocol';

/** A wrong command line: exit 2 with the message. */
export class UsageError extends Error {}

/** Exit codes of every command, as the SPEC gives them. */
export const Exit = { OK: 0, ERROR: 1, USAGE: 2 } as const;

let debug = false;
export function setDebug(on: boolean): void {
  debug = on;
}

/** Prints one line on stderr for a failure and answers the exit code. */
export function reportFailure(err: unknown): number {
  if (err instanceof UsageError) {
    process.stderr.write(`keepsync: ${err.message}\nRun "keepsync help" for usage.\n`);
    return Exit.USAGE;
  }
  const message = isKeepsyncError(err) ? err.message : `unexpected error: ${errorMessage(err)}`;
  process.stderr.write(`keepsync: ${message.split('\n')[0]}\n`);
  if (debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return Exit.ERROR;
}

/** Prints one JSON document on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
