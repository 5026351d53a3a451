import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';

/** A sync folder as the admin API shows it. */
export interface FolderRow {
  id: number;
  name: string;
}

/**
 * Creates the folder `name` if it does not exist yet (with a fresh random
 * epoch and sequence 0) and answers its id. Safe to call at every start and
 * concurrently: an existing folder is never changed.
 */
export async function ensureFolder(db: Knex, name: string, clock: () => number = Date.now): Promise<number> {
  await db('folders')
    .insert({ name, epoch: randomBytes(16).toString('hex'), seq: 0, created_at: clock() })
    .onConflict('name')
    .ignore();
  const row = await db('folders').where({ name }).first('id');
  if (!row) throw new Error(`bug: folder ${name} missing right after insert`);
  return Number(row.id);
}

/** The folder named `name`, or undefined. */
export async function folderByName(db: Knex, name: string): Promise<FolderRow | undefined> {
  const row = await db('folders').where({ name }).first('id', 'name');
  return row ? { id: Number(row.id), name: row.name } : undefined;
}
