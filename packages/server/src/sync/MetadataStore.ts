import type { RelPath } from '@keepsync/protocol';
import type {
  ChangeRecord, DeleteHoldRecord, DeletionRecord, EntryRecord, HeldDeleteRecord, Folder, NewVersion, TrashEntryRecord, TrashItemRecord, VersionRecord, VersionSummary,
} from './model.js';

/**
 * The index: folders, entries, versions and trash. Sync logic sees only this
 * interface; the knex implementation keeps SQLite/PostgreSQL differences.
 */
export interface MetadataStore {
  /** Runs `fn` in one transaction: all of its writes become visible together or not at all. */
  transaction<T>(fn: (tx: MetadataTx) => Promise<T>): Promise<T>;
  folderByName(name: string): Promise<Folder | undefined>;
  folderById(id: number): Promise<Folder | undefined>;
  folders(): Promise<Folder[]>;
  /** Creates the folder when absent; answers it either way. */
  ensureFolder(name: string, epoch: string, now: number): Promise<Folder>;
  /** Entries changed after `since`, in sequence order, at most `limit`. */
  changesSince(folderId: number, since: number, limit: number, inlineChunks: number): Promise<ChangeRecord[]>;
  version(id: number): Promise<VersionRecord | undefined>;
  /** Versions of a path, newest first. */
  versionsOf(folderId: number, path: RelPath): Promise<VersionRecord[]>;
  entry(folderId: number, path: RelPath): Promise<EntryRecord | undefined>;
  /** Live entries strictly under `dir` (or the whole folder when dir is undefined). */
  liveUnder(folderId: number, dir: RelPath | undefined): Promise<EntryRecord[]>;
  deviceName(id: number): Promise<string | undefined>;
  trashItems(folderId: number): Promise<TrashItemRecord[]>;
  trashItem(id: number): Promise<TrashItemRecord | undefined>;
  trashEntries(itemId: number): Promise<TrashEntryRecord[]>;
  activity(kind: string, message: string, deviceId: number | null, folderId: number | null, at: number): Promise<void>;
  /** Live entries directly in `dir` (the folder's top level when dir is undefined), by path. */
  liveChildren(folderId: number, dir: RelPath | undefined): Promise<EntryRecord[]>;
  /** Holds in `state`, oldest first. */
  holds(state: DeleteHoldRecord['state']): Promise<DeleteHoldRecord[]>;
  hold(id: number): Promise<DeleteHoldRecord | undefined>;
}

/** Reads and writes inside one transaction. */
export interface MetadataTx {
  /** Locks the folder row until the transaction ends and answers it. */
  lockFolder(folderId: number): Promise<Folder>;
  setFolderSeq(folderId: number, seq: number): Promise<void>;
  /** The entries at these paths (live or tombstones). */
  entries(folderId: number, paths: readonly RelPath[]): Promise<Map<RelPath, EntryRecord>>;
  /** Every entry (live or tombstone) strictly under `dir`. */
  entriesUnder(folderId: number, dir: RelPath): Promise<EntryRecord[]>;
  /** The entries (live or tombstones) whose last change was a move from `path`. */
  movedFrom(folderId: number, path: RelPath): Promise<EntryRecord[]>;
  /** Inserts or replaces entries by (folder, path). */
  putEntries(rows: readonly EntryRecord[]): Promise<void>;
  insertVersion(v: NewVersion): Promise<number>;
  version(id: number): Promise<VersionRecord | undefined>;
  /** Moves the history of `from` (and, for a folder, of its subtree) to `to`. */
  moveVersions(folderId: number, from: RelPath, to: RelPath, subtree: boolean): Promise<void>;
  insertTrashItem(item: Omit<TrashItemRecord, 'id'>, entries: Omit<TrashEntryRecord, 'trashItemId'>[]): Promise<number>;
  /** Sets an item's state; `at` is when, recorded for a restore. */
  setTrashState(id: number, state: TrashItemRecord['state'], at: number): Promise<void>;
  /**
   * The history of `scope` (that path and everything under it; the whole
   * folder when undefined): every version kept, without manifests, and every
   * file deletion the trash remembers (purged items forget theirs).
   */
  history(folderId: number, scope: RelPath | undefined): Promise<{ versions: VersionSummary[]; deletions: DeletionRecord[] }>;
  activity(kind: string, message: string, deviceId: number | null, folderId: number | null, at: number): Promise<void>;
  /** Trash items still in the trash strictly under `dir`, deleted by `deviceId` at or after `since`. */
  trashedUnder(folderId: number, dir: RelPath, deviceId: number | null, since: number): Promise<TrashItemRecord[]>;
  /**
   * Folds the items `from` into `into`: their files and folders join it,
   * their sizes and file counts add up, and the `from` rows are gone.
   */
  mergeTrashItems(into: number, from: readonly TrashItemRecord[]): Promise<void>;
  /**
   * Purges a trash item for good: the versions only it still keeps (the
   * deleted files' content and earlier history, unless a live entry or
   * another trash item needs them) and its entry list are deleted, and the
   * item becomes `purged`. Their chunks are then garbage for the collector.
   * Answers false, changing nothing, when the item is not in the trash.
   */
  purgeTrashItem(id: number): Promise<boolean>;
  /** The files and folders a trash item holds. */
  trashEntries(itemId: number): Promise<TrashEntryRecord[]>;
  /** Live files in the folder. */
  liveFileCount(folderId: number): Promise<number>;
  /** Trash items still in the trash that `deviceId` deleted at or after `since`, anywhere in the folder. */
  trashedBy(folderId: number, deviceId: number, since: number): Promise<TrashItemRecord[]>;
  /** The device's hold of this folder still waiting for the admin. */
  openHold(folderId: number, deviceId: number): Promise<DeleteHoldRecord | undefined>;
  /** When the admin last decided a hold of this device and folder; 0 if never. */
  lastHoldDecision(folderId: number, deviceId: number): Promise<number>;
  insertHold(hold: Omit<DeleteHoldRecord, 'id'>): Promise<number>;
  /** Adds what a hold keeps; its file count grows by theirs. */
  addHeldDeletes(holdId: number, rows: readonly Omit<HeldDeleteRecord, 'holdId'>[]): Promise<void>;
  heldDeletes(holdId: number): Promise<HeldDeleteRecord[]>;
  /** Re-reads a hold under the transaction (its state may have changed). */
  hold(id: number): Promise<DeleteHoldRecord | undefined>;
  setHoldState(id: number, state: DeleteHoldRecord['state'], at: number): Promise<void>;
}
