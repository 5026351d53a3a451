import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import pg from 'pg';
import { forEachDatabase, scenario, sortedTree, tempDir, type Scenario, type TestDevice, type TestServer } from '../helpers/cluster.js';
import { AdminClient } from '../helpers/rawDevice.js';
import { ContentLog, serverTree, sha256 } from '../helpers/serverContent.js';

/*
 * Recovering from lost state (SAFETY.md B5, B6): a device whose local index
 * is gone and a server put back from an older backup. Real server and CLI
 * processes on every database. In both cases nothing may be deleted: files
 * are merged, and where two contents differ both are kept.
 */

/** Syncs devices in turn until they agree (each `--once` run settles its side). */
async function settle(...devices: TestDevice[]): Promise<void> {
  for (const d of devices) await d.syncOnce();
  for (const d of devices) await d.syncOnce();
}

function removeIndex(d: TestDevice): void {
  for (const f of ['index.db', 'index.db-wal', 'index.db-shm']) fs.rmSync(`${d.home}/${f}`, { force: true });
}

const conflictCopies = (d: TestDevice, stem: string, ext: string) =>
  [...d.tree().keys()].filter((k) => new RegExp(`^${stem} \\(conflict from \\S+ \\d{4}-\\d\\d-\\d\\d \\d{6}\\)\\.${ext}$`).test(k));

/**
 * A backup of a stopped server: its data dir, and on PostgreSQL a copy of
 * its database (CREATE DATABASE … TEMPLATE). `restore` puts both back.
 */
async function backup(server: TestServer): Promise<{ restore(): Promise<void>; drop(): Promise<void> }> {
  const copy = tempDir('backup');
  fs.cpSync(server.dataDir, copy, { recursive: true });
  const url = server.db.url;
  if (!url) {
    return {
      async restore() {
        fs.rmSync(server.dataDir, { recursive: true, force: true });
        fs.cpSync(copy, server.dataDir, { recursive: true });
      },
      async drop() {
        fs.rmSync(copy, { recursive: true, force: true });
      },
    };
  }
  const name = new URL(url).pathname.slice(1);
  const saved = `${name}_bak`;
  const adminUrl = new URL(url);
  adminUrl.pathname = '/postgres';
  const sql = async (...statements: string[]) => {
    const c = new pg.Client({ connectionString: adminUrl.toString() });
    await c.connect();
    try {
      for (const s of statements) await c.query(s);
    } finally {
      await c.end();
    }
  };
  await sql(`CREATE DATABASE ${saved} TEMPLATE ${name}`);
  return {
    async restore() {
      fs.rmSync(server.dataDir, { recursive: true, force: true });
      fs.cpSync(copy, server.dataDir, { recursive: true });
      await sql(`DROP DATABASE ${name} WITH (FORCE)`, `CREATE DATABASE ${name} TEMPLATE ${saved}`);
    },
    async drop() {
      fs.rmSync(copy, { recursive: true, force: true });
      await sql(`DROP DATABASE IF EXISTS ${saved} WITH (FORCE)`);
    },
  };
}

describe('Recovery from lost state', function () {
  this.timeout(180_000);

  forEachDatabase((kind) => {
    let s: Scenario;
    let admin: AdminClient;
    let log: ContentLog;

    beforeEach(async () => {
      s = await scenario(kind);
      // Restarts keep the port: devices are paired with the server's address.
      s.server.extraArgs.push('--port', new URL(s.server.url).port);
      admin = await AdminClient.login(s.server);
      log = new ContentLog();
    });
    afterEach(async () => s.cleanup());

    async function restartServer(): Promise<void> {
      await s.server.start();
      admin = await AdminClient.login(s.server);
    }

    it('merges a device whose local index was lost: adopts identical files, keeps differing ones as conflict copies, deletes nothing (B5)', async () => {
      const laptop = await s.addDevice('laptop');
      const desktop = await s.addDevice('desktop');
      const big = randomBytes(3 * 1024 * 1024);
      laptop.write('same.bin', log.add('same.bin', big));
      laptop.write('notes/differ.txt', log.add('notes/differ.txt', 'shared v1'));
      laptop.write('notes/deep/kept.txt', log.add('notes/deep/kept.txt', 'kept'));
      fs.mkdirSync(laptop.p('empty'), { recursive: true });
      await settle(laptop, desktop);
      const sameBefore = fs.statSync(laptop.p('same.bin'));
      const versionsBefore = (await admin.request('GET', '/folders/Sync/versions?path=same.bin')).body.length;

      // The laptop loses its index while it is not running; meanwhile both sides change.
      removeIndex(laptop);
      laptop.write('notes/differ.txt', log.add('notes/differ.txt', 'laptop edit while its index was gone'));
      laptop.write('laptop-new.txt', log.add('laptop-new.txt', 'new on the laptop'));
      desktop.write('desktop-new.txt', log.add('desktop-new.txt', 'new on the desktop'));
      fs.rmSync(desktop.p('notes/deep/kept.txt'));
      await desktop.syncOnce();
      const serverBefore = await serverTree(admin);

      await laptop.syncOnce();

      // Nothing that was on the server went away, and nothing local did either.
      const serverAfter = await serverTree(admin);
      for (const [p, h] of serverBefore) assert.equal(serverAfter.get(p), h, `${p} changed or vanished on the server`);
      assert.equal(laptop.read('notes/differ.txt'), 'shared v1');
      const copies = conflictCopies(laptop, 'notes/differ', 'txt');
      assert.equal(copies.length, 1, `conflict copies: ${[...laptop.tree().keys()].join(', ')}`);
      assert.equal(laptop.read(copies[0]), 'laptop edit while its index was gone');
      assert.equal(laptop.read('desktop-new.txt'), 'new on the desktop');
      assert.equal(serverAfter.get('laptop-new.txt'), sha256('new on the laptop'));
      // The lost index knew nothing of the desktop's delete: the laptop's copy comes back rather than being deleted.
      assert.equal(laptop.read('notes/deep/kept.txt'), 'kept');
      assert.ok(laptop.exists('empty'));
      // Identical content is adopted: not downloaded again, no new version.
      const sameAfter = fs.statSync(laptop.p('same.bin'));
      assert.equal(sameAfter.ino, sameBefore.ino);
      assert.equal(sameAfter.mtimeMs, sameBefore.mtimeMs);
      assert.equal((await admin.request('GET', '/folders/Sync/versions?path=same.bin')).body.length, versionsBefore);

      await settle(desktop, laptop);
      assert.deepEqual(sortedTree(desktop.tree()), sortedTree(laptop.tree()));
      await log.assertNothingLost(admin);
    });

    it('keeps and re-uploads newer files when the server is restored from an older backup (B6)', async () => {
      const laptop = await s.addDevice('laptop');
      const desktop = await s.addDevice('desktop');
      laptop.write('a.txt', log.add('a.txt', 'a v1'));
      laptop.write('b.txt', log.add('b.txt', 'b v1'));
      await settle(laptop, desktop);
      await s.server.stop();
      const old = await backup(s.server);
      try {
        await restartServer();
        laptop.write('a.txt', log.add('a.txt', 'a v2, after the backup'));
        laptop.write('later/c.txt', log.add('later/c.txt', 'c, after the backup'));
        fs.rmSync(laptop.p('b.txt'));
        await settle(laptop, desktop);
        assert.equal(desktop.read('later/c.txt'), 'c, after the backup');

        await s.server.stop();
        await old.restore();
        await restartServer();
        assert.equal((await serverTree(admin)).has('later/c.txt'), false, 'the backup was not put back');

        const r = await laptop.run(['sync', '--once']);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /restored from a backup/);
        await settle(desktop, laptop);

        // The newer content is back on the server; nothing on the devices was deleted.
        const tree = await serverTree(admin);
        assert.equal(tree.get('later/c.txt'), sha256('c, after the backup'));
        for (const d of [laptop, desktop]) {
          assert.equal(d.read('later/c.txt'), 'c, after the backup');
          const a2 = [...d.tree().keys()].filter((k) => k.startsWith('a') && d.read(k) === 'a v2, after the backup');
          assert.ok(a2.length >= 1, `${d.name} lost a v2: ${[...d.tree().keys()].join(', ')}`);
        }
        assert.deepEqual(sortedTree(desktop.tree()), sortedTree(laptop.tree()));
        await log.assertNothingLost(admin);
      } finally {
        await old.drop();
      }
    });

    it('does not take an ordinary restart, moves or deletes for a restored backup', async () => {
      const laptop = await s.addDevice('laptop');
      const desktop = await s.addDevice('desktop');
      laptop.write('docs/a.txt', 'a');
      laptop.write('docs/sub/b.txt', 'b');
      laptop.write('c.txt', 'c');
      await settle(laptop, desktop);
      fs.renameSync(laptop.p('docs'), laptop.p('moved'));
      fs.rmSync(laptop.p('c.txt'));
      await settle(laptop, desktop);
      await s.server.restart();
      desktop.write('d.txt', 'd');
      await desktop.syncOnce();
      for (const d of [laptop, desktop, laptop]) {
        const r = await d.run(['sync', '--once']);
        assert.equal(r.code, 0, r.stderr);
        assert.doesNotMatch(r.stderr, /restored from a backup|merging/, d.name);
      }
      assert.equal(laptop.read('d.txt'), 'd');
      assert.deepEqual(sortedTree(desktop.tree()), sortedTree(laptop.tree()));
    });

    it('notices a restored backup even after other devices moved the server past where it was (B6)', async () => {
      const laptop = await s.addDevice('laptop');
      const tablet = await s.addDevice('tablet');
      laptop.write('a.txt', log.add('a.txt', 'a v1'));
      await settle(laptop, tablet);
      await s.server.stop();
      const old = await backup(s.server);
      try {
        await restartServer();
        laptop.write('a.txt', log.add('a.txt', 'a v2, after the backup'));
        laptop.write('c.txt', log.add('c.txt', 'c, after the backup'));
        await laptop.syncOnce();

        await s.server.stop();
        await old.restore();
        await restartServer();
        // The tablet, which never saw the lost changes, writes more than were lost.
        for (let i = 0; i < 8; i++) tablet.write(`t/${i}.txt`, log.add(`t/${i}.txt`, `tablet ${i}`));
        await tablet.syncOnce();

        const r = await laptop.run(['sync', '--once']);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /restored from a backup/);
        await settle(tablet, laptop);
        const tree = await serverTree(admin);
        assert.equal(tree.get('c.txt'), sha256('c, after the backup'), `c.txt was not uploaded again: ${[...tree.keys()].join(', ')}`);
        assert.equal(laptop.read('t/7.txt'), 'tablet 7');
        assert.deepEqual(sortedTree(tablet.tree()), sortedTree(laptop.tree()));
        await log.assertNothingLost(admin);
      } finally {
        await old.drop();
      }
    });
  });
});
