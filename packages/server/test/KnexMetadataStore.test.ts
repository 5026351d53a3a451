import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import { databaseKinds, type TestDatabase } from '../../../test/helpers/databases.js';
import { terminateBackends } from '../../../test/helpers/serverIndex.js';
import { ensureFolder } from '../src/settings/folders.js';
import { openDatabase } from '../src/storage/db.js';
import { KnexMetadataStore } from '../src/storage/KnexMetadataStore.js';

/*
 * A database restart or a dropped connection in the middle of a change
 * (SAFETY.md B4): on a real PostgreSQL, the connection of a transaction is
 * terminated under it.
 */
describe('KnexMetadataStore transactions when the database connection drops (B4)', function () {
  this.timeout(60_000);
  const kind = databaseKinds().find((k) => k.name === 'postgres');
  let database: TestDatabase | undefined;
  let db: Knex | undefined;
  let dataDir: string;

  before(async function () {
    if (!kind) this.skip();
    database = await kind!.create();
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'keepsync-store-'));
    db = await openDatabase({ dataDir, databaseUrl: database.url });
  });
  after(async () => {
    await db?.destroy();
    await database?.drop();
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('runs a transaction again on a new connection when its own was dropped before the commit; a failure of the work is not run again', async () => {
    const store = new KnexMetadataStore(db!);
    const folderId = await ensureFolder(db!, 'Sync');
    let runs = 0;
    const seq = await store.transaction(async (tx) => {
      runs++;
      const folder = await tx.lockFolder(folderId);
      // The first time, every connection of the database is dropped while this one holds the folder's lock.
      if (runs === 1) assert.ok((await terminateBackends(database!.url!)) > 0, 'no connection was dropped');
      await tx.setFolderSeq(folderId, folder.seq + 1);
      return folder.seq + 1;
    });
    assert.equal(runs, 2, 'the transaction ran again once');
    assert.equal((await db!('folders').where({ id: folderId }).first()).seq, seq, 'its change was committed once');

    await assert.rejects(store.transaction(async () => {
      runs++;
      throw new Error('the work itself failed');
    }), /the work itself failed/);
    assert.equal(runs, 3, 'a failure that is not the connection is not run again');
  });
});

/* SQLite keeps each connection's compiled statements (`keepStatements` in db.ts). */
describe('SQLite index with compiled statements kept', () => {
  let db: Knex;
  let dataDir: string;

  beforeEach(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'keepsync-store-'));
    db = await openDatabase({ dataDir });
  });
  afterEach(async () => {
    await db.destroy();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers each query with its own values, again after many other queries and after a change of the schema', async () => {
    await db.schema.createTable('kept', (t) => {
      t.integer('id').primary();
      t.text('name');
    });
    await db('kept').insert(Array.from({ length: 400 }, (_, id) => ({ id, name: `n${id}` })));
    // Every shape once (more than the connection keeps), then the first shapes again.
    for (let n = 1; n <= 300; n++) assert.equal((await db('kept').whereIn('id', Array.from({ length: n }, (_, i) => i))).length, n);
    assert.deepEqual(await db('kept').whereIn('id', [7]), [{ id: 7, name: 'n7' }]);
    assert.deepEqual(await db('kept').where({ id: 9 }).first(), { id: 9, name: 'n9' });
    await db.schema.alterTable('kept', (t) => t.text('extra').defaultTo('x'));
    assert.deepEqual(await db('kept').where({ id: 9 }).first(), { id: 9, name: 'n9', extra: 'x' });
    await assert.rejects(db.transaction(async (tx) => {
      await tx('kept').where({ id: 9 }).update({ name: 'changed' });
      await tx('kept').insert({ id: 9, name: 'twice' });
    }), /UNIQUE/);
    assert.equal((await db('kept').where({ id: 9 }).first()).name, 'n9', 'the failed transaction left nothing');
    await db.transaction(async (tx) => tx('kept').where({ id: 9 }).update({ name: 'changed' }));
    assert.equal((await db('kept').where({ id: 9 }).first()).name, 'changed');
  });
});
