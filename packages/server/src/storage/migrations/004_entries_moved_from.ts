import type { Knex } from 'knex';

/**
 * Finds where a file was moved: an edit pushed against a file that another
 * device renamed meanwhile follows the rename (looked up by `moved_from`).
 */
export async function up(db: Knex): Promise<void> {
  await db.schema.alterTable('entries', (t) => {
    t.index(['folder_id', 'moved_from'], 'entries_folder_id_moved_from_index');
  });
}

export async function down(db: Knex): Promise<void> {
  await db.schema.alterTable('entries', (t) => {
    t.dropIndex(['folder_id', 'moved_from'], 'entries_folder_id_moved_from_index');
  });
}
