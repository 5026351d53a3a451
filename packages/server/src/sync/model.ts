import type { EntryKind, Manifest, RelPath } from '@keepsync/protocol';

/** A sync folder. */
export interface Folder {
  id: number;
  name: string;
  epoch: string;
  seq: number;
}

/** One path's state in a folder (live or tombstone), as the index stores it. */
export interface EntryRecord {
  folderId: number;
  path: RelPath;
  kind: EntryKind;
  deleted: boolean;
  seq: number;
  versionId: number;
  size: number;
  hash: string;
  mtime: number;
  exec: boolean;
  movedFrom: RelPath | null;
  deviceId: number | null;
  updatedAt: number;
}

/** Immutable content of a file at one point in time. */
export interface VersionRecord {
  id: number;
  folderId: number;
  path: RelPath;
  size: number;
  hash: string;
  mtime: number;
  exec: boolean;
  manifest: Manifest;
  deviceId: number | null;
  createdAt: number;
}

export type NewVersion = Omit<VersionRecord, 'id'>;

/** A version without its chunk list: enough to tell what a path held when. */
export type VersionSummary = Omit<VersionRecord, 'manifest'>;

/** A file a trash item took, named by the path its history has now. */
export interface DeletionRecord {
  trashItemId: number;
  path: RelPath;
  /** The version the file had when it was deleted. */
  versionId: number;
  deletedAt: number;
  /** When its trash item was restored; null while trashed or when not known. */
  restoredAt: number | null;
  state: TrashItemRecord['state'];
}

/** A trash item: a deleted file, or a deleted folder with its subtree. */
export interface TrashItemRecord {
  id: number;
  folderId: number;
  path: RelPath;
  kind: EntryKind;
  size: number;
  files: number;
  deletedAt: number;
  deviceId: number | null;
  state: 'trashed' | 'restored' | 'purged';
}

export interface TrashEntryRecord {
  trashItemId: number;
  path: RelPath;
  kind: EntryKind;
  versionId: number;
}

/** A changes-feed row: an entry and, for small files, its manifest. */
export interface ChangeRecord extends EntryRecord {
  manifest: Manifest | null;
}

/** A burst of one device's deletes, held for the admin to apply or undo. */
export interface DeleteHoldRecord {
  id: number;
  folderId: number;
  deviceId: number | null;
  state: 'held' | 'applied' | 'undone';
  /** Files the burst deletes (held ones and those already in the trash). */
  files: number;
  heldAt: number;
  decidedAt: number | null;
}

/**
 * What a hold keeps: a delete op as the device sent it (a file with its
 * base version, a folder with the sequence the device had seen), or a trash
 * item the same burst had put in the trash before it was held.
 */
export interface HeldDeleteRecord {
  holdId: number;
  kind: 'file' | 'dir' | 'trash';
  path: RelPath;
  base: number;
  seq: number;
  /** The folder's sequence when the delete was held: what is newer is spared when it is applied. */
  heldSeq: number;
  trashItemId: number | null;
  files: number;
}
