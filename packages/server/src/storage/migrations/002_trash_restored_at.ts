import type { Knex } from 'knex';

/**
 * When a trash item was restored. A restore from the trash brings the deleted
 * versions back without writing new ones, so this is what tells, when a
 * folder is restored to a point in time, that a file deleted before that
 * time was back by then. Null for items still in the trash, purged, or
 * restored before this column existed (those count as restored long ago).
 */
export async function up(db: Knex): Promise<void> {
  await db.schema.alterTable('trash_items', (t) => {
    t.bigInteger('restored_at');
  });
}

export async function down(db: Knex): Promise<void> {
  await db.schema.alterTable('trash_items', (t) => {
    t.dropColumn('restored_at');
  });
}
