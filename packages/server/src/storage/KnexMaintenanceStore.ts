import type { Knex } from 'knex';
import { inBatches, type RelPath } from '@keepsync/protocol';
import type {
  IndexFigures, LiveEntryRow, MaintenanceStore, RetentionPolicy, RetentionResult, VersionRole, VersionRow,
} from '../maintenance/MaintenanceStore.js';
import { isPostgres } from './db.js';

type Row = Record<string, any>;

/** Ids per IN (…) list. */
const IN_BATCH = 500;

/** Version ids of the current files (of one folder, or of all). */
function currentVersionIds(db: Knex | Knex.Transaction, folderId?: number): Knex.QueryBuilder {
  const q = db('entries').select('version_id').where({ deleted: false, kind: 'file' });
  return folderId === undefined ? q : q.andWhere({ folder_id: folderId });
}

/** `column` (version_id or path) of the trash entries of items still in the trash. */
function heldByTrash(db: Knex | Knex.Transaction, column: 'version_id' | 'path', folderId?: number): Knex.QueryBuilder {
  const q = db('trash_entries as te')
    .join('trash_items as ti', 'ti.id', 'te.trash_item_id')
    .select(`te.${column}`)
    .where('ti.state', 'trashed');
  return folderId === undefined ? q : q.andWhere('ti.folder_id', folderId);
}

/** MaintenanceStore on knex: SQLite (better-sqlite3) or PostgreSQL. */
export class KnexMaintenanceStore implements MaintenanceStore {
  private readonly pg: boolean;

  constructor(private readonly db: Knex) {
    this.pg = isPostgres(db);
  }

  async folders(): Promise<Array<{ id: number; name: string }>> {
    return (await this.db('folders').orderBy('id').select('id', 'name')).map((r: Row) => ({ id: r.id, name: r.name }));
  }

  async applyRetention(folderId: number, policy: RetentionPolicy, now: number): Promise<RetentionResult> {
    return this.db.transaction(async (trx) => {
      // The same row lock a push takes: retention never sees half of a change.
      const lock = trx('folders').where({ id: folderId }).first('id');
      if (!(this.pg ? await lock.forUpdate() : await lock)) return { trashItems: 0, versions: 0, versionBytes: 0 };

      const trashItems = await trx('trash_items')
        .where({ folder_id: folderId, state: 'trashed' })
        .andWhere('deleted_at', '<', policy.trashDeletedBefore)
        .update({ state: 'purged' });

      // Newest first per path: rank 1 is the newest; a version was replaced when the next newer one was made.
      const ranked = trx('versions')
        .where({ folder_id: folderId })
        .select(
          'id', 'path', 'size',
          trx.raw('ROW_NUMBER() OVER (PARTITION BY path ORDER BY id DESC) AS rank'),
          trx.raw('LAG(created_at) OVER (PARTITION BY path ORDER BY id DESC) AS replaced_at'),
        )
        .as('r');
      const livePaths = trx('entries').select('path').where({ folder_id: folderId, deleted: false, kind: 'file' });
      const expired: Row[] = await trx
        .from(ranked)
        .select('r.id', 'r.size')
        .whereNotIn('r.id', currentVersionIds(trx, folderId))
        .whereNotIn('r.id', heldByTrash(trx, 'version_id', folderId))
        .where((w) => {
          w.where('r.rank', '>', policy.keep)
            .orWhere('r.replaced_at', '<', policy.versionsReplacedBefore)
            .orWhere((gone) =>
              gone
                .whereNotIn('r.path', livePaths)
                .whereNotIn('r.path', heldByTrash(trx, 'path', folderId))
                // A trashed file whose folder was renamed since: its history moved with the folder.
                .whereNotIn('r.path', trx('versions').select('path').where({ folder_id: folderId }).whereIn('id', heldByTrash(trx, 'version_id', folderId))));
        });

      const ids = expired.map((r) => Number(r.id));
      for (const batch of inBatches(ids, IN_BATCH)) {
        await trx('versions').whereIn('id', batch).delete();
      }
      const versionBytes = expired.reduce((n, r) => n + Number(r.size), 0);
      if (ids.length > 0 || trashItems > 0) {
        await trx('activity').insert({
          at: now, kind: 'retention', device_id: null, folder_id: folderId,
          message: `retention removed ${ids.length} earlier version${ids.length === 1 ? '' : 's'} and purged ${trashItems} trash item${trashItems === 1 ? '' : 's'}`,
        });
      }
      return { trashItems, versions: ids.length, versionBytes };
    });
  }

  async versionsAfter(afterId: number, limit: number): Promise<VersionRow[]> {
    const rows: Row[] = await this.db('versions')
      .where('id', '>', afterId)
      .orderBy('id')
      .limit(limit)
      .select('id', 'folder_id', 'path', 'size', 'manifest');
    return rows.map((r) => ({ id: r.id, folderId: r.folder_id, path: r.path, size: Number(r.size), manifest: new Uint8Array(r.manifest) }));
  }

  async chunkReferences(): Promise<number> {
    const row = await this.db('versions').sum({ n: 'chunk_count' }).first();
    return Number(row?.n ?? 0);
  }

  async roles(versionIds: readonly number[]): Promise<Map<number, VersionRole>> {
    const out = new Map<number, VersionRole>();
    for (const batch of inBatches(versionIds, IN_BATCH)) {
      for (const r of await this.db('versions').whereIn('id', batch).select('id')) out.set(r.id, 'history');
      for (const r of await heldByTrash(this.db, 'version_id').whereIn('te.version_id', batch)) out.set(r.version_id, 'trash');
      for (const r of await currentVersionIds(this.db).whereIn('version_id', batch)) out.set(r.version_id, 'current');
    }
    return out;
  }

  async liveEntriesAfter(folderId: number, afterPath: string, limit: number): Promise<LiveEntryRow[]> {
    const rows: Row[] = await this.db('entries')
      .where({ folder_id: folderId, deleted: false })
      .andWhere('path', '>', afterPath)
      .orderBy('path')
      .limit(limit)
      .select('path', 'kind');
    return rows.map((r) => ({ path: r.path, kind: r.kind }));
  }

  async filesWithoutVersion(): Promise<Array<{ folderId: number; path: RelPath }>> {
    const rows: Row[] = await this.db('entries as e')
      .leftJoin('versions as v', 'v.id', 'e.version_id')
      .where({ 'e.deleted': false, 'e.kind': 'file' })
      .whereNull('v.id')
      .select('e.folder_id', 'e.path');
    return rows.map((r) => ({ folderId: r.folder_id, path: r.path }));
  }

  async figures(): Promise<IndexFigures> {
    const [current, trash, versions] = await Promise.all([
      this.db('entries').where({ deleted: false, kind: 'file' }).sum({ bytes: 'size' }).first(),
      this.db('trash_items').where({ state: 'trashed' }).sum({ bytes: 'size' }).count({ n: '*' }).first(),
      this.db('versions')
        .whereNotIn('id', currentVersionIds(this.db))
        .whereNotIn('id', heldByTrash(this.db, 'version_id'))
        .sum({ bytes: 'size' })
        .count({ n: '*' })
        .first(),
    ]);
    return {
      currentBytes: Number(current?.bytes ?? 0),
      versionBytes: Number(versions?.bytes ?? 0),
      trashBytes: Number(trash?.bytes ?? 0),
      versions: Number(versions?.n ?? 0),
      trashItems: Number(trash?.n ?? 0),
    };
  }
}
