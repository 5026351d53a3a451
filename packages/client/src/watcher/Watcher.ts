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
 */
export async function watchFolder(
  root: string,
  onPaths: (rel: string[]) => void,
  onOverflow: () => void,
  wasFolder: (rel: string) => boolean = () => false,
): Promise<Watcher> {
  let closed = false;
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
  for (let attempt = 1; !sub; attempt++) {
    try {
      sub = await subscribe();
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
      try {
        const next = await subscribe();
        if (closed) {
          await next.unsubscribe();
          return;
        }
        sub = next;
        retryMs = RENEW_AFTER_MS;
      } catch {
        retryMs = Math.min(retryMs * 2, RENEW_RETRY_MAX_MS);
        clearTimeout(renewTimer);
        renewTimer = setTimeout(renew, retryMs);
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
