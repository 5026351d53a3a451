import type { Manifest, ManifestDelta } from './manifest.js';
import type { RelPath } from './paths.js';

/** Kind of an entry in a folder. */
export type EntryKind = 'file' | 'dir';

/** One path's current state on the server, as the changes feed carries it. */
export interface Entry {
  path: RelPath;
  kind: EntryKind;
  /** A tombstone: the path was deleted or moved away at `seq`. */
  deleted: boolean;
  /** Sequence number of the change that made this state. */
  seq: number;
  /** Current version id of a file; 0 for folders and tombstones. */
  version: number;
  size: number;
  /** SHA-256 of the whole content, hex; '' for folders and tombstones. */
  hash: string;
  /** Modification time, ms since the epoch. */
  mtime: number;
  /** The executable bit. */
  exec: boolean;
  /** Set when this entry was moved here from another path in this change. */
  from?: RelPath;
  /** The chunk list, inline for small files; otherwise ask with get-manifest. */
  manifest?: Manifest;
}

/** The content half of a put: the full chunk list or a delta against a version. */
export type ManifestRef = { full: Manifest } | { delta: ManifestDelta };

/** A change a device pushes, checked against the server's state by `base`. */
export type Op =
  | {
      op: 'put';
      path: RelPath;
      /** The version the device last had at this path; 0 when it believes the path is new. */
      base: number;
      size: number;
      hash: string;
      mtime: number;
      exec: boolean;
      manifest: ManifestRef;
    }
  | { op: 'mkdir'; path: RelPath }
  | {
      op: 'delete';
      path: RelPath;
      kind: EntryKind;
      /** Files: the version the device deleted. Folders: unused (0). */
      base: number;
      /** Folders: the highest sequence the device had applied; newer entries of others survive. */
      seq: number;
    }
  | { op: 'move'; from: RelPath; to: RelPath; kind: EntryKind; base: number };

/** What became of one op. */
export type OpResult =
  | {
    status: 'ok'; version: number; seq: number;
    /** A delete the server holds for the admin to apply or undo (a burst, SAFETY.md E2). */
    held?: true;
    /**
     * Set when the path already held these very bytes and the server kept
     * its version (A7: no new version): that version's mtime, which the
     * device gives its file too, so every device ends with one mtime.
     */
    mtime?: number;
    /**
     * Set on an edit of a file that another device moved meanwhile: the edit
     * went where the file is now, and the device moves its file there too.
     */
    path?: RelPath;
  }
  /** The device's content was kept beside the current one at `path`. */
  | { status: 'conflict'; path: RelPath; version: number; seq: number }
  /** Refused because the server's state moved on; the device learns it from the feed. */
  | { status: 'stale'; reason: string }
  | { status: 'error'; code: string; message: string };

// ---- device → server ----

/** First message on a connection; nothing else is accepted before it. */
export interface HelloMsg {
  type: 'hello';
  protocol: number;
  token: string;
  folder: string;
  /** The folder epoch the device last saw ('' when it never synced). */
  epoch: string;
  /** The highest sequence the device has applied. */
  seq: number;
  platform: string;
  client: string;
}
/** Asks for every entry changed after `since`, a page at a time. */
export interface ListMsg { type: 'list'; id: number; since: number }
/** Asks for a version's chunk list, as a delta against `base` when the device has it. */
export interface GetManifestMsg { type: 'get-manifest'; id: number; version: number; base: number }
/** Asks which of these chunks the server lacks. `hashes` is packed 32-byte SHA-256s. */
export interface HasChunksMsg { type: 'has-chunks'; id: number; hashes: Uint8Array }
/** Uploads one chunk; answered by chunk-ok or an error with the same id. */
export interface PutChunkMsg { type: 'put-chunk'; id: number; hash: Uint8Array; data: Uint8Array }
/** Asks for chunk data; each arrives as a chunk-data message with this id. */
export interface GetChunksMsg { type: 'get-chunks'; id: number; hashes: Uint8Array }
/** Applies ops in order, in one transaction. */
export interface PushMsg { type: 'push'; id: number; ops: Op[] }
/** Lists the versions of a file. */
export interface VersionsMsg { type: 'versions'; id: number; path: RelPath }
/** Makes a version current again (0: the previous one). */
export interface RestoreMsg { type: 'restore'; id: number; path: RelPath; version: number }
/**
 * Restores a folder (or a file) to how it was at a point in time: its files
 * of then come back, newer files go to the trash. Answered by `done`.
 */
export interface RestoreAtMsg {
  type: 'restore-at';
  id: number;
  /** The folder or file to restore; absent for the whole sync folder. */
  path?: RelPath;
  /** The point in time, milliseconds since 1970 (UTC). */
  at: number;
}
/** Lists the folder's trash. */
export interface TrashMsg { type: 'trash'; id: number }
/** Restores the newest trash item at a path. */
export interface TrashRestoreMsg { type: 'trash-restore'; id: number; path: RelPath }

export type ClientMessage =
  | HelloMsg
  | ListMsg
  | GetManifestMsg
  | HasChunksMsg
  | PutChunkMsg
  | GetChunksMsg
  | PushMsg
  | VersionsMsg
  | RestoreMsg
  | RestoreAtMsg
  | TrashMsg
  | TrashRestoreMsg;

// ---- server → device ----

export interface WelcomeMsg {
  type: 'welcome';
  deviceId: number;
  deviceName: string;
  folder: { id: number; name: string; epoch: string; seq: number };
  server: string;
  /** The server's public address (`https://host[:port]`), when one is set: where the device goes when its stored address fails. */
  publicUrl?: string;
}
/** Something changed in the folder up to `seq`: list since your last sequence. */
export interface ChangedMsg { type: 'changed'; seq: number }
export interface ChangesMsg { type: 'changes'; id: number; entries: Entry[]; seq: number; more: boolean }
export interface ManifestMsg { type: 'manifest'; id: number; version: number; manifest: ManifestRef }
export interface MissingMsg { type: 'missing'; id: number; hashes: Uint8Array }
export interface ChunkOkMsg { type: 'chunk-ok'; id: number }
export interface ChunkDataMsg { type: 'chunk-data'; id: number; hash: Uint8Array; data: Uint8Array }
export interface PushedMsg { type: 'pushed'; id: number; results: OpResult[] }
export interface VersionInfo {
  id: number;
  size: number;
  hash: string;
  modifiedAt: string;
  createdAt: string;
  device: string;
  current: boolean;
}
export interface VersionsListMsg { type: 'versions-list'; id: number; versions: VersionInfo[] }
export interface TrashInfo {
  id: number;
  path: string;
  kind: EntryKind;
  size: number;
  deletedAt: string;
  deletedBy: string;
}
export interface TrashListMsg { type: 'trash-list'; id: number; items: TrashInfo[] }
/** A generic success answer with a message for the user. */
export interface DoneMsg { type: 'done'; id: number; message: string; path?: string }
/** An error answer. `id` is 0 when it concerns no request. */
export interface ErrorMsg { type: 'error'; id: number; code: string; message: string }

export type ServerMessage =
  | WelcomeMsg
  | ChangedMsg
  | ChangesMsg
  | ManifestMsg
  | MissingMsg
  | ChunkOkMsg
  | ChunkDataMsg
  | PushedMsg
  | VersionsListMsg
  | TrashListMsg
  | DoneMsg
  | ErrorMsg;

export type ClientMessageType = ClientMessage['type'];
export type ServerMessageType = ServerMessage['type'];
export type ClientMessageOf<T extends ClientMessageType> = Extract<ClientMessage, { type: T }>;
export type ServerMessageOf<T extends ServerMessageType> = Extract<ServerMessage, { type: T }>;
