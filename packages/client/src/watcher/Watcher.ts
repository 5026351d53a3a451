import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import watcher from '@parcel/watcher';

/** Live change notifications for a folder tree. */
export interface Watcher {
  close(): Promise<void>;
}

/** After a folder moved in, the subscription is renewed this long after the last such event. */
const RENEW_AFTER_MS = 100;
/** A renewal that failed is tried again, waiting twice as long each time up to this (a tree that cannot be watched at all is not walked over and over). */
const RENEW_RETRY_MAX_MS = 30_000;
/** Starting, a subscription that failed is tried this many times before the error stands. */
const START_ATTEMPTS = 5;
/** While the system's limits leave no room to watch the folder, watching is tried again this often. */
const UNWATCHED_RETRY_MS = 60_000;
/** The look at the system's inotify limits gives up after this (and the folder is watched as usual). */
const PROBE_TIMEOUT_MS = 10_000;

/**
 * Watches `root` with the OS's native facility and reports changed paths
 * relative to the root (`/`-separated). Events are hints: the engine stats
 * what they name. `onOverflow` asks for a full rescan when events were lost.
 *
 * A folder renamed or moved inside the tree (by the user or by a remote
 * move) leaves the native watches on Linux pointing at its old path: later
 * changes inside it are reported under the old name or not at all. So when a
 * folder appears that already has content, the subscription is renewed and
 * a full rescan catches whatever happened in between. So is a folder
 * removed and made again at once (`rm -r out && mkdir -p out/b/c`, as a
 * build or an export does): the native watcher reports that as an update
 * of the folder, and a subfolder made before the new folder was watched
 * would never get a watch of its own. A folder deleted inside the tree is
 * treated the same way: on a busy machine the native watches were seen to
 * go quiet for folders made after one was removed.
 *
 * Building the native watches walks the tree and fails when a folder goes
 * while it is walked (an `rm -r` still running). A renewal that fails is
 * tried again until it holds, so the folder is never left unwatched, and
 * the full rescan comes once the new watches are in place.
 *
 * On Linux the system limits what can be watched, per user and shared with
 * every other program: inotify instances (128 on many systems, where a few
 * editors and desktop services take them all) and watches (one per folder).
 * Without an instance the native watcher never returns from its start: the
 * whole process would hang. So every subscription is preceded by a look,
 * in a short-lived child process, at whether an instance and a watch can be
 * had. When the limits leave no room, `onUnwatched` says why (and how to
 * raise them), the caller finds changes by scanning instead, and watching
 * is tried again every minute; `onUnwatched(undefined)` says it works again.
 */
export async function watchFolder(
  root: string,
  onPaths: (rel: string[]) => void,
  onOverflow: () => void,
  wasFolder: (rel: string) => boolean = () => false,
  onUnwatched: (why: string | undefined) => void = () => {},
): Promise<Watcher> {
  let closed = false;
  /** Why the folder is not watched now, when it is not. */
  let unwatched: string | undefined;
  let renewTimer: NodeJS.Timeout | undefined;
  let generation = 0;
  const subscribe = () =>
    watcher.subscribe(
      root,
      (err, events) => {
        if (err) {
          onOverflow();
          return;
        }
        const rels: string[] = [];
        for (const e of events) {
          const rel = path.relative(root, e.path);
          if (!rel || rel.startsWith('..')) {
            onOverflow();
            continue;
          }
          const slashed = rel.split(path.sep).join('/');
          // A folder removed and made again at once is reported as an update of it.
          if ((e.type === 'create' || e.type === 'update') && hasContent(e.path)) renewSoon();
          else if (e.type === 'delete' && wasFolder(slashed)) renewSoon();
          rels.push(slashed);
        }
        if (rels.length > 0) onPaths(rels);
      },
      // The native watcher is shared by subscriptions with equal options; the
      // generation (a name never used: temp names are ignored anyway) makes
      // each renewal build its own.
      { ignore: ['**/.keepsync-*', `**/.keepsync-watch-${++generation}`] },
    );
  let sub: watcher.AsyncSubscription | undefined;
  /** Subscribes, unless the system's limits leave no room to: then answers why not. */
  const attach = async (): Promise<{ sub?: watcher.AsyncSubscription; why?: string }> => {
    const short = await inotifyShortage(root);
    if (short) return { why: short };
    try {
      return { sub: await subscribe() };
    } catch (err) {
      const limit = limitReached(err);
      if (limit) return { why: limit };
      throw err;
    }
  };
  /** Records whether the folder is watched, telling the caller when that changes. */
  const watching = (why: string | undefined) => {
    if (why !== unwatched) onUnwatched(why);
    unwatched = why;
  };
  for (let attempt = 1; ; attempt++) {
    try {
      const attached = await attach();
      sub = attached.sub;
      watching(attached.why);
      break;
    } catch (err) {
      if (attempt >= START_ATTEMPTS) throw err;
      await new Promise((r) => setTimeout(r, RENEW_AFTER_MS * attempt));
    }
  }
  // One renewal at a time: each ends the subscription before it, whether that
  // one was renewed or its renewal is still being tried again.
  let renewing = Promise.resolve();
  let retryMs = RENEW_AFTER_MS;
  const renew = () => {
    renewing = renewing.then(async () => {
      if (closed) return;
      // The native watches are shared by every subscription of the process:
      // the old subscription must end before a new one rebuilds them.
      await sub?.unsubscribe().catch(() => {});
      sub = undefined;
      let why: string | undefined;
      try {
        const attached = await attach();
        if (closed) {
          await attached.sub?.unsubscribe();
          return;
        }
        sub = attached.sub;
        why = attached.why;
        retryMs = RENEW_AFTER_MS;
      } catch {
        retryMs = Math.min(retryMs * 2, RENEW_RETRY_MAX_MS);
        clearTimeout(renewTimer);
        renewTimer = setTimeout(renew, retryMs);
        return;
      }
      watching(why);
      if (why) {
        clearTimeout(renewTimer);
        renewTimer = setTimeout(renew, UNWATCHED_RETRY_MS);
        return;
      }
      // The full rescan covers whatever changed while nothing was watched.
      onOverflow();
    }).catch(() => {}); // Nothing a renewal throws may stop the next one.
  };
  const renewSoon = () => {
    clearTimeout(renewTimer);
    renewTimer = setTimeout(renew, RENEW_AFTER_MS);
  };
  if (unwatched) renewTimer = setTimeout(renew, UNWATCHED_RETRY_MS);
  return {
    close: async () => {
      closed = true;
      clearTimeout(renewTimer);
      await renewing;
      await sub?.unsubscribe();
    },
  };
}

/** A directory that is not empty: moved in or made again rather than just created (a file answers false). */
function hasContent(abs: string): boolean {
  try {
    return fs.readdirSync(abs).length > 0;
  } catch {
    return false;
  }
}

/**
 * Why the folder cannot be watched now, when the system's inotify limits
 * leave no room (Linux): looked at by a child process that takes an
 * instance and a watch and lets them go. Answers undefined when there is
 * room, elsewhere, or when the look itself fails.
 */
function inotifyShortage(root: string): Promise<string | undefined> {
  if (process.platform !== 'linux') return Promise.resolve(undefined);
  const probe = "try { require('fs').watch(process.argv[1]).close() } catch (e) { process.stdout.write(String(e.code)) }";
  return new Promise((resolve) => {
    execFile(process.execPath, ['-e', probe, root], { timeout: PROBE_TIMEOUT_MS }, (err, stdout) => {
      if (err) return resolve(undefined);
      resolve(stdout === 'EMFILE' ? instancesMessage() : stdout === 'ENOSPC' ? watchesMessage() : undefined);
    });
  });
}

/** The limit a failed subscription ran into, when it was one (the watches ran out while the tree was walked). */
function limitReached(err: unknown): string | undefined {
  const message = err instanceof Error ? err.message : String(err);
  if (/no space left on device/i.test(message)) return watchesMessage();
  if (/too many open files/i.test(message)) return instancesMessage();
  return undefined;
}

function instancesMessage(): string {
  return `the system's limit of inotify instances is reached (fs.inotify.max_user_instances = ${sysctl('max_user_instances')}, taken by other programs); raise it with "sudo sysctl fs.inotify.max_user_instances=1024"`;
}

function watchesMessage(): string {
  return `the system's limit of inotify watches is reached (fs.inotify.max_user_watches = ${sysctl('max_user_watches')}, one per folder); raise it with "sudo sysctl fs.inotify.max_user_watches=524288"`;
}

function sysctl(name: string): string {
  try {
    return fs.readFileSync(`/proc/sys/fs/inotify/${name}`, 'utf8').trim();
  } catch {
    return '?';
  }
}
