import type { Knex } from 'knex';

/**
 * The whole index. Times are milliseconds since the epoch (BIGINT); paths are
 * folder-relative, NFC, `/`-separated, compared byte-wise (C collation on
 * PostgreSQL, BINARY on SQLite) so that `dir/` ranges select a subtree.
 */
export async function up(db: Knex): Promise<void> {
  const pg = db.client.config.client === 'pg';
  const pathCol = (t: Knex.CreateTableBuilder, name: string) =>
    pg ? t.specificType(name, 'text collate "C"') : t.text(name);

  // A sync folder. `epoch` is random per folder and changes if the index is
  // ever rebuilt, so devices can tell a restored backup from a live history.
  // `seq` is the last sequence number handed out to a change in this folder.
  await db.schema.createTable('folders', (t) => {
    t.increments('id');
    t.string('name', 255).notNullable().unique();
    t.string('epoch', 64).notNullable();
    t.bigInteger('seq').notNullable().defaultTo(0);
    t.bigInteger('created_at').notNullable();
  });

  // A paired device. Only the SHA-256 of its 256-bit token is kept.
  await db.schema.createTable('devices', (t) => {
    t.increments('id');
    t.string('name', 255).notNullable();
    t.string('platform', 64).notNullable().defaultTo('');
    t.string('token_hash', 64).notNullable().unique();
    t.bigInteger('paired_at').notNullable();
    t.bigInteger('last_seen_at');
    t.string('address', 128);
    t.bigInteger('removed_at');
  });

  // A pairing link: single use, expiring, stored hashed.
  await db.schema.createTable('pairings', (t) => {
    t.increments('id');
    t.string('code_hash', 64).notNullable().unique();
    t.string('name', 255);
    t.integer('folder_id').notNullable().references('folders.id');
    t.bigInteger('created_at').notNullable();
    t.bigInteger('expires_at').notNullable();
    t.bigInteger('used_at');
    t.integer('device_id');
  });

  // Immutable content of a file at one point in time. The current content of a
  // path is the version its entry points at; the others with the same path are
  // its history. `manifest` is the packed chunk list (32-byte hash + 4-byte size).
  await db.schema.createTable('versions', (t) => {
    t.increments('id');
    t.integer('folder_id').notNullable().references('folders.id');
    pathCol(t, 'path').notNullable();
    t.bigInteger('size').notNullable();
    t.string('hash', 64).notNullable();
    t.bigInteger('mtime').notNullable();
    t.boolean('exec').notNullable().defaultTo(false);
    t.binary('manifest').notNullable();
    t.integer('chunk_count').notNullable();
    t.integer('device_id');
    t.bigInteger('created_at').notNullable();
    t.index(['folder_id', 'path', 'id']);
  });

  // One row per path ever seen in a folder: its current state, or a tombstone
  // (`deleted`). Tombstones are never compacted, so a device offline for months
  // still learns of every delete. `seq` orders the changes feed.
  await db.schema.createTable('entries', (t) => {
    t.integer('folder_id').notNullable().references('folders.id');
    pathCol(t, 'path').notNullable();
    t.string('kind', 8).notNullable();
    t.boolean('deleted').notNullable().defaultTo(false);
    t.bigInteger('seq').notNullable();
    t.integer('version_id').notNullable().defaultTo(0);
    t.bigInteger('size').notNullable().defaultTo(0);
    t.string('hash', 64).notNullable().defaultTo('');
    t.bigInteger('mtime').notNullable().defaultTo(0);
    t.boolean('exec').notNullable().defaultTo(false);
    pathCol(t, 'moved_from');
    t.integer('device_id');
    t.bigInteger('updated_at').notNullable();
    t.primary(['folder_id', 'path']);
    t.index(['folder_id', 'seq']);
  });

  // A deleted file or folder (one item for a whole folder), restorable until
  // retention or a purge removes it.
  await db.schema.createTable('trash_items', (t) => {
    t.increments('id');
    t.integer('folder_id').notNullable().references('folders.id');
    pathCol(t, 'path').notNullable();
    t.string('kind', 8).notNullable();
    t.bigInteger('size').notNullable().defaultTo(0);
    t.integer('files').notNullable().defaultTo(0);
    t.bigInteger('deleted_at').notNullable();
    t.integer('device_id');
    t.string('state', 16).notNullable().defaultTo('trashed');
    t.index(['folder_id', 'state']);
  });

  // The files and folders a trash item holds, with the version of each file.
  await db.schema.createTable('trash_entries', (t) => {
    t.integer('trash_item_id').notNullable().references('trash_items.id');
    pathCol(t, 'path').notNullable();
    t.string('kind', 8).notNullable();
    t.integer('version_id').notNullable().defaultTo(0);
    t.index(['trash_item_id']);
  });

  await db.schema.createTable('settings', (t) => {
    t.string('key', 64).primary();
    t.text('value').notNullable();
  });

  // Admin sessions, stored by the SHA-256 of the cookie value.
  await db.schema.createTable('admin_sessions', (t) => {
    t.string('id_hash', 64).primary();
    t.string('csrf_token', 64).notNullable();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('login_at').notNullable();
    t.bigInteger('expires_at').notNullable();
  });

  // What happened, for the admin page: pairings, removals, deletes, restores, conflicts.
  await db.schema.createTable('activity', (t) => {
    t.increments('id');
    t.bigInteger('at').notNullable();
    t.string('kind', 32).notNullable();
    t.text('message').notNullable();
    t.integer('device_id');
    t.integer('folder_id');
  });
}

export async function down(db: Knex): Promise<void> {
  for (const table of ['activity', 'admin_sessions', 'settings', 'trash_entries', 'trash_items', 'entries', 'versions', 'pairings', 'devices', 'folders']) {
    await db.schema.dropTableIfExists(table);
  }
}
