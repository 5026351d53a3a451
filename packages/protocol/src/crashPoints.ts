/**
 * Crash points: a few named places in the server and the client where the
 * process kills itself with SIGKILL when the environment variable
 * `KEEPSYNC_CRASH_AT` names them. They exist so that the crash scenarios of
 * SAFETY.md (B1 upload, B2 download, B3 server, B8 bulk move) can be tested
 * at exact places rather than at random times (test/e2e/crash-points.test.ts).
 *
 * `KEEPSYNC_CRASH_AT=NAME` dies the first time NAME is reached,
 * `NAME:N` the N-th time (counted from 1, in this process). Unset, a crash
 * point costs one comparison and does nothing.
 */
export type CrashPoint =
  /** The server acknowledged a chunk this device uploaded (it is stored there). */
  | 'client:chunk-acked'
  /** Every chunk of the puts is on the server; the push carrying the ops is not sent yet. */
  | 'client:before-push'
  /** The server answered a push; this device has not recorded the answer yet. */
  | 'client:after-push'
  /** A download is whole and verified in its temporary file, not yet renamed into place. */
  | 'client:before-rename'
  /** A download was renamed into place; this device has not recorded it yet. */
  | 'client:after-rename'
  /** A move made on the server was carried out here; this device has not recorded it yet. */
  | 'client:after-move'
  /** The server wrote a chunk it received and has not acknowledged it yet. */
  | 'server:chunk-stored'
  /** The chunks of a push are durable and checked; the transaction making them visible has not started. */
  | 'server:before-commit'
  /** A change of a folder's index is committed; no device has been told yet, nor answered. */
  | 'server:after-commit'
  /** The other devices were told of a committed change; the device that made it has not been answered. */
  | 'server:after-broadcast';

const target = parse(process.env.KEEPSYNC_CRASH_AT);
let reached = 0;

/** Kills this process with SIGKILL when KEEPSYNC_CRASH_AT names `name` and this is the time it counts. */
export function crashPoint(name: CrashPoint): void {
  if (target === undefined || target.name !== name) return;
  if (++reached < target.count) return;
  process.kill(process.pid, 'SIGKILL');
}

function parse(spec: string | undefined): { name: string; count: number } | undefined {
  if (!spec) return undefined;
  const m = /^(.*?)(?::(\d+))?$/.exec(spec)!;
  return { name: m[1], count: m[2] === undefined ? 1 : Number(m[2]) };
}
