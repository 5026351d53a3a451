import type { RelPath } from '@keepsync/protocol';
import type { DeletionRecord, VersionSummary } from './model.js';

/** Something that happened to a path: content saved, deleted, or back from the trash. */
interface PathEvent {
  at: number;
  /** Orders events of the same millisecond: saved, then deleted, then restored. */
  rank: 0 | 1 | 2;
  /** The content the path holds afterwards; undefined after a delete. */
  version?: VersionSummary;
}

/**
 * The files a folder held at time `at`, worked out from its history by
 * replaying, path by path, every version saved, every delete the trash
 * remembers and every restore from the trash, up to `at`. Paths are where
 * each file's history is now: a file moved since `at` is found at its new
 * place.
 *
 * What retention or a purge has removed is not known: a file whose versions
 * before `at` are gone counts as not there at `at`. A trash item restored
 * before restore times were kept counts as restored at once.
 */
export function filesAt(versions: readonly VersionSummary[], deletions: readonly DeletionRecord[], at: number): Map<RelPath, VersionSummary> {
  const byId = new Map(versions.map((v) => [v.id, v]));
  const events = new Map<RelPath, PathEvent[]>();
  const add = (path: RelPath, e: PathEvent) => {
    if (e.at > at) return;
    let list = events.get(path);
    if (!list) events.set(path, (list = []));
    list.push(e);
  };
  for (const v of versions) add(v.path, { at: v.createdAt, rank: 0, version: v });
  for (const d of deletions) {
    add(d.path, { at: d.deletedAt, rank: 1 });
    const v = byId.get(d.versionId);
    if (d.state === 'restored' && v) add(d.path, { at: d.restoredAt ?? d.deletedAt, rank: 2, version: v });
  }
  const out = new Map<RelPath, VersionSummary>();
  for (const [path, list] of events) {
    list.sort((a, b) => a.at - b.at || a.rank - b.rank || (a.version?.id ?? 0) - (b.version?.id ?? 0));
    let held: VersionSummary | undefined;
    for (const e of list) {
      // A restore finding its place taken went beside it (a path of its own).
      if (e.rank === 2 && held) continue;
      held = e.version;
    }
    if (held) out.set(path, held);
  }
  return out;
}
