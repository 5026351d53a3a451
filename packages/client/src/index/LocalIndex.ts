import Database from 'better-sqlite3';
import type { EntryKind, Manifest, RelPath } from '@keepsync/protocol';
import { MANIFEST_RECORD, inBatches } from '@keepsync/protocol';

/** What this device and the server last agreed on for a path. */
export interface SyncedRecord {
  path: RelPath;
  kind: EntryKind;
  version: number;
  hash: string;
  size: number;
  mtime: number;
  exec: boolean;
  /** Inode of the local file when it was synced (finds moves). */
  ino: number;
  manifest: Manifest | null;
  /** Status change time of the local file when it was synced; 0 or absent when unknown. */
  ctime?: number;
}

/** The server's latest state of a path, as the changes feed told it. */
export interface RemoteRecord {
  path: RelPath;
  kind: EntryKind;
  deleted: boolean;
  seq: number;
  version: number;
  hash: string;
  size: number;
  mtime: number;
  exec: boolean;
  from: RelPath | null;
  manifest: Manifest | null;
}

/** One change of the server's feed, enough to recognise it again. */
export interface HistoryMark {
  seq: number;
  path: string;
  hash: string;
  deleted: boolean;
}

type Row = Record<string, any>;

const toSynced = (r: Row): SyncedRecord => ({
  path: r.path, kind: r.kind, version: r.version, hash: r.hash, size: r.size, mtime: r.mtime, exec: !!r.exec, ino: r.ino,
  manifest: r.manifest ? new Uint8Array(r.manifest) : null, ctime: r.ctime ?? 0,
});
const toRemote = (r: Row): RemoteRecord => ({
  path: r.path, kind: r.kind, deleted: !!r.deleted, seq: r.seq, version: r.version, hash: r.hash, size: r.size,
  mtime: r.mtime, exec: !!r.exec, from: r.from_path ?? null, manifest: r.manifest ? new Uint8Array(r.manifest) : null,
});
/** Values looked up by one `IN` query (one prepared statement: a short batch repeats its last value). */
const BATCH = 500;
const PLACES = Array(BATCH).fill('?').join(', ');

function batches(values: readonly string[]): string[][] {
  const all = inBatches(values, BATCH);
  const last = all[all.length - 1];
  while (last && last.length < BATCH) last.push(last[last.length - 1]);
  return all;
}

const blob = (m: Manifest | null) => (m ? Buffer.from(m.buffer, m.byteOffset, m.byteLength) : null);

/**
 * The device's local index (SQLite in the home dir): the synced base of every
 * path, the server's latest state, where each chunk can be read locally, and
 * the folder epoch and sequence this device has applied.
 */
export class LocalIndex {
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS synced (
        path TEXT PRIMARY KEY, kind TEXT NOT NULL, version INTEGER NOT NULL, hash TEXT NOT NULL, size INTEGER NOT NULL,
        mtime REAL NOT NULL, exec INTEGER NOT NULL, ino INTEGER NOT NULL, manifest BLOB, ctime REAL NOT NULL DEFAULT 0);
      CREATE TABLE IF NOT EXISTS remote (
        path TEXT PRIMARY KEY, kind TEXT NOT NULL, deleted INTEGER NOT NULL, seq INTEGER NOT NULL, version INTEGER NOT NULL,
        hash TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL, exec INTEGER NOT NULL, from_path TEXT, manifest BLOB);
      CREATE TABLE IF NOT EXISTS chunks (hash TEXT NOT NULL, path TEXT NOT NULL, offset INTEGER NOT NULL, size INTEGER NOT NULL,
        PRIMARY KEY (hash, path, offset));
      CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path);
    `);
    // Indexes made before the status change time was kept gain it (0: unknown until the next scan).
    if (!(this.db.pragma('table_info(synced)') as Row[]).some((c) => c.name === 'ctime')) {
      this.db.exec('ALTER TABLE synced ADD COLUMN ctime REAL NOT NULL DEFAULT 0');
    }
  }

  /** A prepared statement, compiled once per index. */
  private stmt(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  /** The rows of `table` whose path is one of `paths`: a query per batch, not one per path. */
  private *rowsOf(table: 'synced' | 'remote', paths: readonly string[]): Generator<Row> {
    for (const batch of batches(paths)) yield* this.stmt(`SELECT * FROM ${table} WHERE path IN (${PLACES})`).all(...batch) as Row[];
  }

  close(): void {
    this.db.close();
  }

  /** Runs `fn` in one transaction. */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  getMeta(key: string): string | undefined {
    return (this.stmt('SELECT value FROM meta WHERE key = ?').get(key) as Row | undefined)?.value;
  }

  setMeta(key: string, value: string): void {
    this.stmt('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  get epoch(): string {
    return this.getMeta('epoch') ?? '';
  }
  get seq(): number {
    return Number(this.getMeta('seq') ?? 0);
  }

  /** The last change pulled from the server (highest sequence), or undefined before the first. */
  get head(): HistoryMark | undefined {
    const v = this.getMeta('head');
    return v ? (JSON.parse(v) as HistoryMark) : undefined;
  }
  setHead(h: HistoryMark): void {
    this.setMeta('head', JSON.stringify(h));
  }

  // ---- synced ----

  synced(path: string): SyncedRecord | undefined {
    const r = this.stmt('SELECT * FROM synced WHERE path = ?').get(path) as Row | undefined;
    return r ? toSynced(r) : undefined;
  }

  /** The synced records of those of `paths` that have one, by path. */
  syncedOf(paths: readonly string[]): Map<string, SyncedRecord> {
    const found = new Map<string, SyncedRecord>();
    for (const r of this.rowsOf('synced', paths)) found.set(r.path, toSynced(r));
    return found;
  }

  allSynced(): SyncedRecord[] {
    return (this.stmt('SELECT * FROM synced').all() as Row[]).map(toSynced);
  }

  /** Synced records strictly under `dir`. */
  syncedUnder(dir: string): SyncedRecord[] {
    return (this.stmt('SELECT * FROM synced WHERE path >= ? AND path < ?').all(`${dir}/`, `${dir}0`) as Row[]).map(toSynced);
  }

  syncedCount(): number {
    return (this.stmt('SELECT count(*) AS n FROM synced').get() as Row).n;
  }

  setSyncedCtime(path: RelPath, ctime: number): void {
    this.stmt('UPDATE synced SET ctime = ? WHERE path = ?').run(ctime, path);
  }

  putSynced(s: SyncedRecord): void {
    this.stmt('INSERT OR REPLACE INTO synced (path, kind, version, hash, size, mtime, exec, ino, manifest, ctime) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(s.path, s.kind, s.version, s.hash, s.size, s.mtime, s.exec ? 1 : 0, s.ino, blob(s.manifest), s.ctime ?? 0);
    this.stmt('DELETE FROM chunks WHERE path = ?').run(s.path);
    if (s.manifest && s.kind === 'file') {
      const ins = this.stmt('INSERT OR IGNORE INTO chunks (hash, path, offset, size) VALUES (?, ?, ?, ?)');
      const view = new DataView(s.manifest.buffer, s.manifest.byteOffset, s.manifest.byteLength);
      let offset = 0;
      for (let o = 0; o < s.manifest.byteLength; o += MANIFEST_RECORD) {
        const size = view.getUint32(o + 32);
        ins.run(Buffer.from(s.manifest.subarray(o, o + 32)).toString('hex'), s.path, offset, size);
        offset += size;
      }
    }
  }

  deleteSynced(path: string): void {
    this.stmt('DELETE FROM synced WHERE path = ?').run(path);
    this.stmt('DELETE FROM chunks WHERE path = ?').run(path);
  }

  /** Moves synced records of `from` (and its subtree) to `to`. */
  rebaseSynced(from: string, to: string): void {
    const rows = [this.synced(from), ...this.syncedUnder(from)].filter((r): r is SyncedRecord => r !== undefined);
    for (const r of rows) {
      this.deleteSynced(r.path);
      this.putSynced({ ...r, path: (to + r.path.slice(from.length)) as RelPath });
    }
  }

  /** Those of `hashes` that some synced file here contains. */
  chunksHeld(hashes: readonly string[]): Set<string> {
    const held = new Set<string>();
    for (const batch of batches(hashes)) {
      for (const r of this.stmt(`SELECT DISTINCT hash FROM chunks WHERE hash IN (${PLACES})`).all(...batch) as Row[]) held.add(r.hash);
    }
    return held;
  }

  /** Where a chunk can be read locally: synced files that contain it. */
  chunkSources(hash: string): Array<{ path: RelPath; offset: number; size: number }> {
    return this.stmt('SELECT path, offset, size FROM chunks WHERE hash = ? LIMIT 4').all(hash) as never;
  }

  // ---- remote ----

  remote(path: string): RemoteRecord | undefined {
    const r = this.stmt('SELECT * FROM remote WHERE path = ?').get(path) as Row | undefined;
    return r ? toRemote(r) : undefined;
  }

  /** The server's records of those of `paths` that have one, by path. */
  remoteOf(paths: readonly string[]): Map<string, RemoteRecord> {
    const found = new Map<string, RemoteRecord>();
    for (const r of this.rowsOf('remote', paths)) found.set(r.path, toRemote(r));
    return found;
  }

  allRemote(): RemoteRecord[] {
    return (this.stmt('SELECT * FROM remote').all() as Row[]).map(toRemote);
  }

  remoteUnder(dir: string): RemoteRecord[] {
    return (this.stmt('SELECT * FROM remote WHERE path >= ? AND path < ?').all(`${dir}/`, `${dir}0`) as Row[]).map(toRemote);
  }

  putRemote(r: RemoteRecord): void {
    this.stmt('INSERT OR REPLACE INTO remote (path, kind, deleted, seq, version, hash, size, mtime, exec, from_path, manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(r.path, r.kind, r.deleted ? 1 : 0, r.seq, r.version, r.hash, r.size, r.mtime, r.exec ? 1 : 0, r.from, blob(r.manifest));
  }

  /** Forgets everything synced (a new epoch or a lost index): the next sync merges. */
  resetForMerge(epoch: string): void {
    this.tx(() => {
      this.db.exec('DELETE FROM synced; DELETE FROM remote; DELETE FROM chunks;');
      this.db.exec("DELETE FROM meta WHERE key = 'head'");
      this.setMeta('epoch', epoch);
      this.setMeta('seq', '0');
    });
  }
}
