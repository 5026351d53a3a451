import type { Knex } from 'knex';
import { inBatches, type EntryKind, type RelPath } from '@keepsync/protocol';
import type { MetadataStore, MetadataTx } from '../sync/MetadataStore.js';
import type {
  ChangeRecord, DeleteHoldRecord, DeletionRecord, EntryRecord, HeldDeleteRecord, Folder, NewVersion, TrashEntryRecord, TrashItemRecord, VersionRecord, VersionSummary,
} from '../sync/model.js';
import { isPostgres } from './db.js';

type Row = Record<string, any>;

const IN_BATCH = 500;

const toFolder = (r: Row): Folder => ({ id: r.id, name: r.name, epoch: r.epoch, seq: Number(r.seq) });

const toEntry = (r: Row): EntryRecord => ({
  folderId: r.folder_id,
  path: r.path,
  kind: r.kind as EntryKind,
  deleted: Boolean(r.deleted),
  seq: Number(r.seq),
  versionId: r.version_id,
  size: Number(r.size),
  hash: r.hash,
  mtime: Number(r.mtime),
  exec: Boolean(r.exec),
  movedFrom: r.moved_from ?? null,
  deviceId: r.device_id ?? null,
  updatedAt: Number(r.updated_at),
});

const fromEntry = (e: EntryRecord): Row => ({
  folder_id: e.folderId,
  path: e.path,
  kind: e.kind,
  deleted: e.deleted,
  seq: e.seq,
  version_id: e.versionId,
  size: e.size,
  hash: e.hash,
  mtime: Math.round(e.mtime),
  exec: e.exec,
  moved_from: e.movedFrom,
  device_id: e.deviceId,
  updated_at: e.updatedAt,
});

const toVersion = (r: Row): VersionRecord => ({
  id: r.id,
  folderId: r.folder_id,
  path: r.path,
  size: Number(r.size),
  hash: r.hash,
  mtime: Number(r.mtime),
  exec: Boolean(r.exec),
  manifest: new Uint8Array(r.manifest),
  deviceId: r.device_id ?? null,
  createdAt: Number(r.created_at),
});

const toTrashItem = (r: Row): TrashItemRecord => ({
  id: r.id,
  folderId: r.folder_id,
  path: r.path,
  kind: r.kind,
  size: Number(r.size),
  files: r.files,
  deletedAt: Number(r.deleted_at),
  deviceId: r.device_id ?? null,
  state: r.state,
});

const toHold = (r: Row): DeleteHoldRecord => ({
  id: r.id,
  folderId: r.folder_id,
  deviceId: r.device_id ?? null,
  state: r.state,
  files: Number(r.files),
  heldAt: Number(r.held_at),
  decidedAt: r.decided_at === null || r.decided_at === undefined ? null : Number(r.decided_at),
});

/** Upper bound of a subtree range: `dir/` ≤ path < `dir0` ('0' follows '/'). */
const subtreeRange = (dir: string): [string, string] => [`${dir}/`, `${dir}0`];

class KnexTx implements MetadataTx {
  constructor(private readonly db: Knex.Transaction, private readonly pg: boolean) {}

  async lockFolder(folderId: number): Promise<Folder> {
    const q = this.db('folders').where({ id: folderId }).first();
    const row = this.pg ? await q.forUpdate() : await q;
    if (!row) throw new Error(`bug: folder ${folderId} vanished`);
    return toFolder(row);
  }

  async setFolderSeq(folderId: number, seq: number): Promise<void> {
    await this.db('folders').where({ id: folderId }).update({ seq });
  }

  async entries(folderId: number, paths: readonly RelPath[]): Promise<Map<RelPath, EntryRecord>> {
    const out = new Map<RelPath, EntryRecord>();
    for (const batch of inBatches([...new Set(paths)], IN_BATCH)) {
      const rows = await this.db('entries').where({ folder_id: folderId }).whereIn('path', batch);
      for (const r of rows) out.set(r.path, toEntry(r));
    }
    return out;
  }

  async entriesUnder(folderId: number, dir: RelPath): Promise<EntryRecord[]> {
    const [lo, hi] = subtreeRange(dir);
    const rows = await this.db('entries').where({ folder_id: folderId }).andWhere('path', '>=', lo).andWhere('path', '<', hi).orderBy('path');
    return rows.map(toEntry);
  }

  async movedFrom(folderId: number, path: RelPath): Promise<EntryRecord[]> {
    const rows = await this.db('entries').where({ folder_id: folderId, moved_from: path });
    return rows.map(toEntry);
  }

  async putEntries(rows: readonly EntryRecord[]): Promise<void> {
    for (const batch of inBatches(rows, 200)) {
      await this.db('entries').insert(batch.map(fromEntry)).onConflict(['folder_id', 'path']).merge();
    }
  }

  async insertVersion(v: NewVersion): Promise<number> {
    const [row] = await this.db('versions')
      .insert({
        folder_id: v.folderId,
        path: v.path,
        size: v.size,
        hash: v.hash,
        mtime: Math.round(v.mtime),
        exec: v.exec,
        manifest: Buffer.from(v.manifest.buffer, v.manifest.byteOffset, v.manifest.byteLength),
        chunk_count: v.manifest.byteLength / 36,
        device_id: v.deviceId,
        created_at: v.createdAt,
      })
      .returning('id');
    return typeof row === 'object' ? row.id : row;
  }

  async version(id: number): Promise<VersionRecord | undefined> {
    const row = await this.db('versions').where({ id }).first();
    return row ? toVersion(row) : undefined;
  }

  async moveVersions(folderId: number, from: RelPath, to: RelPath, subtree: boolean): Promise<void> {
    await this.db('versions').where({ folder_id: folderId, path: from }).update({ path: to });
    if (!subtree) return;
    const [lo, hi] = subtreeRange(from);
    await this.db('versions')
      .where({ folder_id: folderId })
      .andWhere('path', '>=', lo)
      .andWhere('path', '<', hi)
      .update({ path: this.db.raw('? || substr(path, ?)', [to, from.length + 1]) });
  }

  async insertTrashItem(item: Omit<TrashItemRecord, 'id'>, entries: Omit<TrashEntryRecord, 'trashItemId'>[]): Promise<number> {
    const [row] = await this.db('trash_items')
      .insert({
        folder_id: item.folderId,
        path: item.path,
        kind: item.kind,
        size: item.size,
        files: item.files,
        deleted_at: item.deletedAt,
        device_id: item.deviceId,
        state: item.state,
      })
      .returning('id');
    const id: number = typeof row === 'object' ? row.id : row;
    for (const batch of inBatches(entries, 200)) {
      await this.db('trash_entries').insert(batch.map((e) => ({ trash_item_id: id, path: e.path, kind: e.kind, version_id: e.versionId })));
    }
    return id;
  }

  async setTrashState(id: number, state: TrashItemRecord['state'], at: number): Promise<void> {
    await this.db('trash_items').where({ id }).update({ state, restored_at: state === 'restored' ? at : null });
  }

  async trashEntries(itemId: number): Promise<TrashEntryRecord[]> {
    const rows = await this.db('trash_entries').where({ trash_item_id: itemId }).orderBy('path');
    return rows.map((r: Row) => ({ trashItemId: r.trash_item_id, path: r.path, kind: r.kind, versionId: r.version_id }));
  }

  async liveFileCount(folderId: number): Promise<number> {
    const row = await this.db('entries').where({ folder_id: folderId, deleted: false, kind: 'file' }).count({ n: '*' }).first();
    return Number(row?.n ?? 0);
  }

  async trashedBy(folderId: number, deviceId: number, since: number): Promise<TrashItemRecord[]> {
    const rows = await this.db('trash_items').where({ folder_id: folderId, state: 'trashed', device_id: deviceId }).andWhere('deleted_at', '>=', since).orderBy('id');
    return rows.map(toTrashItem);
  }

  async openHold(folderId: number, deviceId: number): Promise<DeleteHoldRecord | undefined> {
    const row = await this.db('delete_holds').where({ folder_id: folderId, device_id: deviceId, state: 'held' }).orderBy('id').first();
    return row ? toHold(row) : undefined;
  }

  async lastHoldDecision(folderId: number, deviceId: number): Promise<number> {
    const row = await this.db('delete_holds').where({ folder_id: folderId, device_id: deviceId }).max({ at: 'decided_at' }).first();
    return Number(row?.at ?? 0);
  }

  async insertHold(hold: Omit<DeleteHoldRecord, 'id'>): Promise<number> {
    const [row] = await this.db('delete_holds')
      .insert({ folder_id: hold.folderId, device_id: hold.deviceId, state: hold.state, files: hold.files, held_at: hold.heldAt, decided_at: hold.decidedAt })
      .returning('id');
    return typeof row === 'object' ? row.id : row;
  }

  async addHeldDeletes(holdId: number, rows: readonly Omit<HeldDeleteRecord, 'holdId'>[]): Promise<void> {
    for (const batch of inBatches(rows, 200)) {
      await this.db('held_deletes').insert(batch.map((r) => ({
        hold_id: holdId, kind: r.kind, path: r.path, base: r.base, seq: r.seq, held_seq: r.heldSeq, trash_item_id: r.trashItemId, files: r.files,
      })));
    }
    const files = rows.reduce((n, r) => n + r.files, 0);
    await this.db('delete_holds').where({ id: holdId }).update({ files: this.db.raw('files + ?', [files]) });
  }

  async heldDeletes(holdId: number): Promise<HeldDeleteRecord[]> {
    const rows = await this.db('held_deletes').where({ hold_id: holdId }).orderBy('path');
    return rows.map((r: Row) => ({
      holdId: r.hold_id, kind: r.kind, path: r.path, base: r.base, seq: Number(r.seq), heldSeq: Number(r.held_seq), trashItemId: r.trash_item_id ?? null, files: r.files,
    }));
  }

  async hold(id: number): Promise<DeleteHoldRecord | undefined> {
    const q = this.db('delete_holds').where({ id }).first();
    const row = this.pg ? await q.forUpdate() : await q;
    return row ? toHold(row) : undefined;
  }

  async setHoldState(id: number, state: DeleteHoldRecord['state'], at: number): Promise<void> {
    await this.db('delete_holds').where({ id }).update({ state, decided_at: at });
  }

  async history(folderId: number, scope: RelPath | undefined): Promise<{ versions: VersionSummary[]; deletions: DeletionRecord[] }> {
    const inScope = (q: Knex.QueryBuilder, col: string) => {
      if (!scope) return q;
      const [lo, hi] = subtreeRange(scope);
      return q.andWhere((w) => w.where(col, scope).orWhere((r) => r.where(col, '>=', lo).andWhere(col, '<', hi)));
    };
    const versionRows: Row[] = await inScope(this.db('versions').where({ folder_id: folderId }), 'path')
      .select('id', 'folder_id', 'path', 'size', 'hash', 'mtime', 'exec', 'device_id', 'created_at')
      .orderBy('id');
    const deletionRows: Row[] = await inScope(
      this.db('trash_entries as t').join('trash_items as i', 'i.id', 't.trash_item_id').join('versions as v', 'v.id', 't.version_id')
        .where('i.folder_id', folderId).andWhere('t.kind', 'file'),
      'v.path',
    ).select('t.trash_item_id', 'v.path', 't.version_id', 'i.deleted_at', 'i.restored_at', 'i.state');
    return {
      versions: versionRows.map((r) => {
        const { manifest: _, ...v } = toVersion({ ...r, manifest: Buffer.alloc(0) });
        return v;
      }),
      deletions: deletionRows.map((r) => ({
        trashItemId: r.trash_item_id, path: r.path, versionId: r.version_id, deletedAt: Number(r.deleted_at),
        restoredAt: r.restored_at === null || r.restored_at === undefined ? null : Number(r.restored_at), state: r.state,
      })),
    };
  }

  async activity(kind: string, message: string, deviceId: number | null, folderId: number | null, at: number): Promise<void> {
    await this.db('activity').insert({ kind, message, device_id: deviceId, folder_id: folderId, at });
  }

  async trashedUnder(folderId: number, dir: RelPath, deviceId: number | null, since: number): Promise<TrashItemRecord[]> {
    const [lo, hi] = subtreeRange(dir);
    const q = this.db('trash_items')
      .where({ folder_id: folderId, state: 'trashed' })
      .andWhere('path', '>=', lo)
      .andWhere('path', '<', hi)
      .andWhere('deleted_at', '>=', since);
    if (deviceId === null) q.whereNull('device_id');
    else q.andWhere('device_id', deviceId);
    return (await q.orderBy('id')).map(toTrashItem);
  }

  async mergeTrashItems(into: number, from: readonly TrashItemRecord[]): Promise<void> {
    if (from.length === 0) return;
    const size = from.reduce((n, i) => n + i.size, 0);
    const files = from.reduce((n, i) => n + i.files, 0);
    for (const batch of inBatches(from.map((i) => i.id), IN_BATCH)) {
      await this.db('trash_entries').whereIn('trash_item_id', batch).update({ trash_item_id: into });
      await this.db('trash_items').whereIn('id', batch).del();
    }
    await this.db('trash_items')
      .where({ id: into })
      .update({ size: this.db.raw('size + ?', [size]), files: this.db.raw('files + ?', [files]) });
  }

  async purgeTrashItem(id: number): Promise<boolean> {
    const item = await this.db('trash_items').where({ id, state: 'trashed' }).first();
    if (!item) return false;
    // Each deleted file's content and the history before it, wherever a later move put it.
    const files: Row[] = await this.db('trash_entries as t')
      .join('versions as v', 'v.id', 't.version_id')
      .where('t.trash_item_id', id)
      .select('v.path', 'v.id');
    const candidates: number[] = [];
    for (const f of files) {
      const rows = await this.db('versions').where({ folder_id: item.folder_id, path: f.path }).andWhere('id', '<=', f.id).select('id');
      for (const r of rows) candidates.push(r.id);
    }
    await this.db('trash_entries').where({ trash_item_id: id }).del();
    await this.db('trash_items').where({ id }).update({ state: 'purged', size: 0, files: 0 });
    // A version that a live entry or another trash item still points at stays.
    for (const batch of inBatches([...new Set(candidates)], IN_BATCH)) {
      await this.db('versions')
        .whereIn('id', batch)
        .whereNotIn('id', this.db('entries').where({ folder_id: item.folder_id, deleted: false }).select('version_id'))
        .whereNotIn('id', this.db('trash_entries').select('version_id'))
        .del();
    }
    return true;
  }
}

/** Times a transaction runs again after its database connection was lost. */
const TRANSACTION_RETRIES = 2;

/** PostgreSQL's connection failures (class 08, and a server shutting down or starting), and a socket that broke. */
const CONNECTION_LOST = new Set(['57P01', '57P02', '57P03', 'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT']);

/** The error says the database connection went away, not that the work was wrong. */
function connectionLost(err: unknown): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (code.startsWith('08') || CONNECTION_LOST.has(code))) return true;
  return typeof message === 'string' && /Connection terminated|terminating connection|not queryable|Connection ended/i.test(message);
}

/** MetadataStore on knex: SQLite (better-sqlite3) or PostgreSQL. */
export class KnexMetadataStore implements MetadataStore {
  private readonly pg: boolean;

  constructor(private readonly db: Knex) {
    this.pg = isPostgres(db);
  }

  /**
   * Runs `fn` in one transaction. A connection lost before the commit (the
   * database restarted, its connections dropped) left nothing written: the
   * whole transaction runs again on a new connection, twice at most. Lost
   * during the commit, whether it took is unknown, and the caller hears of it.
   */
  async transaction<T>(fn: (tx: MetadataTx) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let committing = false;
      try {
        return await this.db.transaction(async (trx) => {
          const out = await fn(new KnexTx(trx, this.pg));
          committing = true;
          return out;
        });
      } catch (err) {
        if (committing || attempt > TRANSACTION_RETRIES || !connectionLost(err)) throw err;
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
  }

  async folderByName(name: string): Promise<Folder | undefined> {
    const row = await this.db('folders').where({ name }).first();
    return row ? toFolder(row) : undefined;
  }

  async folderById(id: number): Promise<Folder | undefined> {
    const row = await this.db('folders').where({ id }).first();
    return row ? toFolder(row) : undefined;
  }

  async folders(): Promise<Folder[]> {
    return (await this.db('folders').orderBy('id')).map(toFolder);
  }

  async ensureFolder(name: string, epoch: string, now: number): Promise<Folder> {
    await this.db('folders').insert({ name, epoch, seq: 0, created_at: now }).onConflict('name').ignore();
    const folder = await this.folderByName(name);
    if (!folder) throw new Error(`bug: folder ${name} not created`);
    return folder;
  }

  async changesSince(folderId: number, since: number, limit: number, inlineChunks: number): Promise<ChangeRecord[]> {
    const rows = await this.db('entries as e')
      .leftJoin('versions as v', 'v.id', 'e.version_id')
      .where('e.folder_id', folderId)
      .andWhere('e.seq', '>', since)
      .orderBy('e.seq')
      .limit(limit)
      .select('e.*', this.db.raw('CASE WHEN v.chunk_count <= ? THEN v.manifest END AS manifest', [inlineChunks]));
    return rows.map((r: Row) => ({ ...toEntry(r), manifest: r.manifest ? new Uint8Array(r.manifest) : null }));
  }

  async version(id: number): Promise<VersionRecord | undefined> {
    const row = await this.db('versions').where({ id }).first();
    return row ? toVersion(row) : undefined;
  }

  async versionsOf(folderId: number, path: RelPath): Promise<VersionRecord[]> {
    return (await this.db('versions').where({ folder_id: folderId, path }).orderBy('id', 'desc')).map(toVersion);
  }

  async entry(folderId: number, path: RelPath): Promise<EntryRecord | undefined> {
    const row = await this.db('entries').where({ folder_id: folderId, path }).first();
    return row ? toEntry(row) : undefined;
  }

  async liveUnder(folderId: number, dir: RelPath | undefined): Promise<EntryRecord[]> {
    const q = this.db('entries').where({ folder_id: folderId, deleted: false });
    if (dir) {
      const [lo, hi] = subtreeRange(dir);
      q.andWhere('path', '>=', lo).andWhere('path', '<', hi);
    }
    return (await q.orderBy('path')).map(toEntry);
  }

  async deviceName(id: number): Promise<string | undefined> {
    const row = await this.db('devices').where({ id }).first('name');
    return row?.name;
  }

  async trashItems(folderId: number): Promise<TrashItemRecord[]> {
    return (await this.db('trash_items').where({ folder_id: folderId, state: 'trashed' }).orderBy('id', 'desc')).map(toTrashItem);
  }

  async trashItem(id: number): Promise<TrashItemRecord | undefined> {
    const row = await this.db('trash_items').where({ id }).first();
    return row ? toTrashItem(row) : undefined;
  }

  async trashEntries(itemId: number): Promise<TrashEntryRecord[]> {
    const rows = await this.db('trash_entries').where({ trash_item_id: itemId }).orderBy('path');
    return rows.map((r: Row) => ({ trashItemId: r.trash_item_id, path: r.path, kind: r.kind, versionId: r.version_id }));
  }

  async activity(kind: string, message: string, deviceId: number | null, folderId: number | null, at: number): Promise<void> {
    await this.db('activity').insert({ kind, message, device_id: deviceId, folder_id: folderId, at });
  }

  async holds(state: DeleteHoldRecord['state']): Promise<DeleteHoldRecord[]> {
    return (await this.db('delete_holds').where({ state }).orderBy('id')).map(toHold);
  }

  async hold(id: number): Promise<DeleteHoldRecord | undefined> {
    const row = await this.db('delete_holds').where({ id }).first();
    return row ? toHold(row) : undefined;
  }

  async liveChildren(folderId: number, dir: RelPath | undefined): Promise<EntryRecord[]> {
    const q = this.db('entries').where({ folder_id: folderId, deleted: false });
    const find = this.pg ? 'strpos' : 'instr';
    if (dir) {
      const [lo, hi] = subtreeRange(dir);
      q.andWhere('path', '>=', lo).andWhere('path', '<', hi).andWhereRaw(`${find}(substr(path, ?), '/') = 0`, [[...lo].length + 1]);
    } else {
      q.andWhereRaw(`${find}(path, '/') = 0`);
    }
    return (await q.orderBy('path')).map(toEntry);
  }
}
