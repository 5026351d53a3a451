import path from 'node:path';
import watcher from '@parcel/watcher';

/** Live change notifications for a folder tree. */
export interface Watcher {
  close(): Promise<void>;
}

/**
 * Watches `root` with the OS's native facility and reports changed paths
 * relative to the root (`/`-separated). Events are hints: the engine stats
 * what they name. `onOverflow` asks for a full rescan when events were lost.
 */
export async function watchFolder(root: string, onPaths: (rel: string[]) => void, onOverflow: () => void): Promise<Watcher> {
  const sub = await watcher.subscribe(
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
        rels.push(rel.split(path.sep).join('/'));
      }
      if (rels.length > 0) onPaths(rels);
    },
    { ignore: ['**/.keepsync-*'] },
  );
  return { close: () => sub.unsubscribe() };
}
