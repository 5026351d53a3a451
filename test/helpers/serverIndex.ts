import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { unpackManifest } from '@keepsync/protocol';
import type { TestServer } from './cluster.js';

/** A live entry of the server's folder index. */
export interface ServerEntry {
  path: string;
  kind: 'file' | 'dir';
  hash: string;
  size: number;
  mtime: number;
  exec: boolean;
}

type Row = Record<string, any>;

/** The PostgreSQL application name of this reader, so fault injection can spare it. */
export const TEST_READER = 'keepsync-test-reader';

/**
 * Reads a test server's index straight from its database (SQLite read-only
 * beside the running server, or PostgreSQL), for checks no API offers:
 * every version ever kept, every manifest, the trash.
 */
export class ServerIndex {
  private constructor(private readonly query: (sql: string, args: unknown[]) => Promise<Row[]>, private readonly end: () => Promise<void>) {}

  static async open(server: TestServer): Promise<ServerIndex> {
    if (server.db.url) {
      const client = new pg.Client({ connectionString: server.db.url, application_name: TEST_READER });
      client.on('error', () => {});
      await client.connect();
      let n = 0;
      const toPg = (sql: string) => sql.replace(/\?/g, () => `$${++n}`);
      return new ServerIndex(async (sql, args) => {
        n = 0;
        return (await client.query(toPg(sql), args)).rows;
      }, () => client.end());
    }
    const db = new Database(path.join(server.dataDir, 'keepsync.db'), { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    return new ServerIndex(async (sql, args) => db.prepare(sql).all(...args) as Row[], async () => {
      db.close();
    });
  }

  close(): Promise<void> {
    return this.end();
  }

  private async folderId(name: string): Promise<number> {
    const [row] = await this.query('SELECT id FROM folders WHERE name = ?', [name]);
    if (!row) throw new Error(`the server has no folder ${name}`);
    return row.id;
  }

  /** The folder's current tree: live entries by path. */
  async live(folder = 'Sync'): Promise<Map<string, ServerEntry>> {
    const id = await this.folderId(folder);
    const rows = await this.query('SELECT path, kind, hash, size, mtime, exec FROM entries WHERE folder_id = ? AND NOT deleted', [id]);
    return new Map(rows.map((r) => [r.path, { path: r.path, kind: r.kind, hash: r.hash, size: Number(r.size), mtime: Number(r.mtime), exec: Boolean(r.exec) }]));
  }

  /** The content hashes of every version the server keeps (current, history, trash, conflict copies). */
  async versionHashes(folder = 'Sync'): Promise<Set<string>> {
    const id = await this.folderId(folder);
    return new Set((await this.query('SELECT DISTINCT hash FROM versions WHERE folder_id = ?', [id])).map((r) => r.hash));
  }

  async hasVersion(hash: string, folder = 'Sync'): Promise<boolean> {
    const id = await this.folderId(folder);
    return (await this.query('SELECT 1 AS one FROM versions WHERE folder_id = ? AND hash = ? LIMIT 1', [id, hash])).length > 0;
  }

  /** The content hashes of the versions kept under `path`, oldest first. */
  async versionsOf(path: string, folder = 'Sync'): Promise<string[]> {
    const id = await this.folderId(folder);
    return (await this.query('SELECT hash FROM versions WHERE folder_id = ? AND path = ? ORDER BY id', [id, path])).map((r) => r.hash);
  }

  /** The paths of the items in the trash (not restored or purged), in the order they were deleted. */
  async trashPaths(folder = 'Sync'): Promise<string[]> {
    const id = await this.folderId(folder);
    return (await this.query('SELECT path FROM trash_items WHERE folder_id = ? AND state = ? ORDER BY id', [id, 'trashed'])).map((r) => r.path);
  }

  /** When the server last saw the device named `name` (ms), or undefined. */
  async lastSeen(name: string): Promise<number | undefined> {
    const [row] = await this.query('SELECT last_seen_at FROM devices WHERE name = ?', [name]);
    return row?.last_seen_at === null || row?.last_seen_at === undefined ? undefined : Number(row.last_seen_at);
  }

  /** The content hashes of every version of each path, oldest first (conflict copies are paths of their own). */
  async versionsByPath(folder = 'Sync'): Promise<Map<string, string[]>> {
    const id = await this.folderId(folder);
    const out = new Map<string, string[]>();
    for (const r of await this.query('SELECT path, hash FROM versions WHERE folder_id = ? ORDER BY id', [id])) {
      out.set(r.path, [...(out.get(r.path) ?? []), r.hash]);
    }
    return out;
  }

  /** Every version's id, content hash, size and chunk list. */
  async manifests(): Promise<Array<{ id: number; hash: string; size: number; manifest: Uint8Array }>> {
    const rows = await this.query('SELECT id, hash, size, manifest FROM versions', []);
    return rows.map((r) => ({ id: r.id, hash: r.hash, size: Number(r.size), manifest: new Uint8Array(r.manifest) }));
  }

  /** Trash items still in the trash, with the version hashes they hold. */
  async trashHashes(folder = 'Sync'): Promise<Set<string>> {
    const id = await this.folderId(folder);
    const rows = await this.query(
      'SELECT v.hash FROM trash_entries te JOIN trash_items ti ON ti.id = te.trash_item_id JOIN versions v ON v.id = te.version_id WHERE ti.folder_id = ? AND ti.state = ?',
      [id, 'trashed'],
    );
    return new Set(rows.map((r) => r.hash));
  }
}

/**
 * Checks the server's store the way `keepsync server verify` does: every chunk
 * a version names exists and hashes to its name, every version's chunks add up
 * to its content hash and size, and every live entry's parent is a live folder.
 * Answers the problems found (empty when sound).
 */
export async function verifyServer(server: TestServer, index: ServerIndex): Promise<string[]> {
  const problems: string[] = [];
  const checked = new Map<string, Buffer | undefined>();
  const chunk = (hash: string): Buffer | undefined => {
    if (!checked.has(hash)) {
      let data: Buffer | undefined;
      try {
        data = fs.readFileSync(path.join(server.dataDir, 'chunks', hash.slice(0, 2), hash));
      } catch {
        data = undefined;
      }
      if (data && crypto.createHash('sha256').update(data).digest('hex') !== hash) {
        problems.push(`chunk ${hash} does not match its hash`);
        data = undefined;
      }
      checked.set(hash, data);
    }
    return checked.get(hash);
  };
  for (const v of await index.manifests()) {
    const whole = crypto.createHash('sha256');
    let size = 0;
    let complete = true;
    for (const c of unpackManifest(v.manifest)) {
      const data = chunk(c.hash);
      if (!data) {
        problems.push(`version ${v.id} names chunk ${c.hash}, which is missing or corrupt`);
        complete = false;
        break;
      }
      whole.update(data);
      size += data.length;
    }
    if (complete && (whole.digest('hex') !== v.hash || size !== v.size)) problems.push(`version ${v.id}: its chunks do not add up to its hash and size`);
  }
  const live = await index.live();
  for (const e of live.values()) {
    const slash = e.path.lastIndexOf('/');
    if (slash > 0 && live.get(e.path.slice(0, slash))?.kind !== 'dir') problems.push(`${e.path} is live but its parent is not a live folder`);
  }
  return problems;
}

/** Drops every database connection of the server (pg_terminate_backend), as a database restart would. */
export async function terminateBackends(url: string): Promise<number> {
  const dbName = new URL(url).pathname.slice(1);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const c = new pg.Client({ connectionString: admin.toString() });
  await c.connect();
  try {
    const r = await c.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> $2",
      [dbName, TEST_READER],
    );
    return r.rowCount ?? 0;
  } finally {
    await c.end();
  }
}
