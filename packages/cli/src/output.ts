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
  const message = isKeepsyncError(err) ? err.message : (systemErrorMessage(err) ?? `unexpected error: ${errorMessage(err)}`);
  process.stderr.write(`keepsync: ${message.split('\n')[0]}\n`);
  if (debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return Exit.ERROR;
}

type SystemError = NodeJS.ErrnoException & { address?: string; port?: number };

/**
 * What the operating system refused, said for people: a port in use, an
 * address this machine does not have, a file where a folder should be.
 * Undefined for anything else.
 */
export function systemErrorMessage(err: unknown): string | undefined {
  if (!(err instanceof Error) || typeof (err as SystemError).code !== 'string') return undefined;
  const e = err as SystemError;
  const where = e.path ?? '';
  switch (e.code) {
    case 'EADDRINUSE':
      return `port ${e.port} on ${e.address} is already in use (another keepsync server?); stop that program or choose another --port`;
    case 'EADDRNOTAVAIL':
      return `${e.address} is not an address of this machine; choose another --host (0.0.0.0 listens on all of them)`;
    case 'EACCES':
    case 'EPERM':
      if (e.syscall === 'listen' || e.syscall === 'bind') return `no permission to listen on port ${e.port}; choose a --port from 1024 up`;
      return where ? `permission denied: ${where}; check its owner and permissions` : undefined;
    case 'EROFS':
      return where ? `${where} is on a read-only file system; use a writable location` : undefined;
    case 'ENOSPC':
      return `the disk is full${where ? ` (writing ${where})` : ''}; free some space and try again`;
    case 'EEXIST':
      return e.syscall === 'mkdir' && where ? `${where} is a file, not a folder; choose another path` : undefined;
    case 'ENOTDIR':
      return where ? `a file is in the way of ${where}; move it or choose another path` : undefined;
    case 'ENOENT':
      return where ? `${where} does not exist` : undefined;
    default:
      return undefined;
  }
}

/** Prints one JSON document on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
