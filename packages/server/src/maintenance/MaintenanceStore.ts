import type { Manifest, RelPath } from '@keepsync/protocol';

/** What retention keeps; times are milliseconds since the epoch. */
export interface RetentionPolicy {
  /** Versions kept per file, the current one included. */
  keep: number;
  /** A version replaced by a newer one before this time is removed. */
  versionsReplacedBefore: number;
  /** A trash item deleted before this time is purged. */
  trashDeletedBefore: number;
}

/** What one retention pass over a folder removed. */
export interface RetentionResult {
  trashItems: number;
  versions: number;
  /** Sum of the removed versions' file sizes (not yet bytes on disk: the collector frees those). */
  versionBytes: number;
}

/** A version row as the collector and the verifier read it. */
export interface VersionRow {
  id: number;
  folderId: number;
  path: RelPath;
  size: number;
  manifest: Manifest;
}

/** What a version is to its folder. */
export type VersionRole = 'current' | 'trash' | 'history';

/** Sizes of what the index holds, in bytes of file content (before deduplication). */
export interface IndexFigures {
  /** Current files. */
  currentBytes: number;
  /** Earlier versions (neither current nor held by a trash item). */
  versionBytes: number;
  /** Files in trash items not yet restored or purged. */
  trashBytes: number;
  versions: number;
  trashItems: number;
}

/** A live entry as the verifier walks them. */
export interface LiveEntryRow {
  path: RelPath;
  kind: 'file' | 'dir';
}

/**
 * The index queries of retention, garbage collection, verification and the
 * storage figures. Kept apart from MetadataStore because none of this is on
 * the sync path. Implemented on knex (SQLite and PostgreSQL).
 */
export interface MaintenanceStore {
  folders(): Promise<Array<{ id: number; name: string }>>;
  /**
   * In one transaction that holds the folder's lock (so no push, restore or
   * purge interleaves): purges trash items deleted before the policy's time,
   * then removes every version that is neither current nor held by a trash
   * item still in the trash, and that is beyond `keep` for its path, or was
   * replaced before the policy's time, or belongs to a file that is gone for
   * good (no current file and no trash item at its path).
   */
  applyRetention(folderId: number, policy: RetentionPolicy, now: number): Promise<RetentionResult>;
  /** Version rows with id greater than `afterId`, in id order, at most `limit`. */
  versionsAfter(afterId: number, limit: number): Promise<VersionRow[]>;
  /** How many chunk references all manifests hold together (an upper bound of distinct chunks). */
  chunkReferences(): Promise<number>;
  /** The role of each of these versions; absent ids are no longer in the index. */
  roles(versionIds: readonly number[]): Promise<Map<number, VersionRole>>;
  /** Live entries of a folder after `afterPath` in byte order, at most `limit`. */
  liveEntriesAfter(folderId: number, afterPath: string, limit: number): Promise<LiveEntryRow[]>;
  /** Live files whose version row is missing. */
  filesWithoutVersion(): Promise<Array<{ folderId: number; path: RelPath }>>;
  figures(): Promise<IndexFigures>;
}
