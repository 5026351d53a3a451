import type { Knex } from 'knex';

/**
 * Deletes held on the server. When one device deletes a burst of files (see
 * the deleteHold setting), its deletes are not applied: the files stay
 * current on the server and on every other device until the admin applies
 * the hold (the deletes happen, into the trash) or undoes it (the files go
 * back to the deleting device). One open hold per folder and device at a time.
 */
export async function up(db: Knex): Promise<void> {
  const pg = db.client.config.client === 'pg';
  const pathCol = (t: Knex.CreateTableBuilder, name: string) =>
    pg ? t.specificType(name, 'text collate "C"') : t.text(name);

  // `state`: held, applied or undone. `files`: how many files the burst deletes.
  await db.schema.createTable('delete_holds', (t) => {
    t.increments('id');
    t.integer('folder_id').notNullable().references('folders.id');
    t.integer('device_id');
    t.string('state', 16).notNullable().defaultTo('held');
    t.integer('files').notNullable().defaultTo(0);
    t.bigInteger('held_at').notNullable();
    t.bigInteger('decided_at');
    t.index(['folder_id', 'device_id', 'state']);
  });

  // What a hold keeps: a held delete op as the device sent it (`kind` file or
  // dir, with its base version or the sequence the device had seen) and the
  // folder's sequence when it was held, or a trash item the same burst had
  // already put in the trash (`kind` trash).
  await db.schema.createTable('held_deletes', (t) => {
    t.integer('hold_id').notNullable().references('delete_holds.id');
    t.string('kind', 8).notNullable();
    pathCol(t, 'path').notNullable();
    t.integer('base').notNullable().defaultTo(0);
    t.bigInteger('seq').notNullable().defaultTo(0);
    t.bigInteger('held_seq').notNullable().defaultTo(0);
    t.integer('trash_item_id');
    t.integer('files').notNullable().defaultTo(0);
    t.index(['hold_id']);
  });
}

export async function down(db: Knex): Promise<void> {
  await db.schema.dropTable('held_deletes');
  await db.schema.dropTable('delete_holds');
}
