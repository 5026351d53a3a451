import assert from 'node:assert/strict';
import fs from 'node:fs';
import pg from 'pg';
import { forEachDatabase, scenario, type Scenario, type TestDevice } from '../helpers/cluster.js';
import { ServerIndex, verifyServer } from '../helpers/serverIndex.js';

/** Copies the server's state aside (data dir, and the database when it is PostgreSQL). */
async function backup(s: Scenario, to: string): Promise<void> {
  fs.cpSync(s.server.dataDir, to, { recursive: true });
  if (s.db.url) await copyDatabase(s.db.url, `${dbName(s.db.url)}_backup`, dbName(s.db.url));
}

/** Puts a backup back in place of the server's state. */
async function restore(s: Scenario, from: string): Promise<void> {
  fs.rmSync(s.server.dataDir, { recursive: true, force: true });
  fs.cpSync(from, s.server.dataDir, { recursive: true });
  if (s.db.url) {
    await adminQuery(s.db.url, `DROP DATABASE ${dbName(s.db.url)} WITH (FORCE)`);
    await copyDatabase(s.db.url, dbName(s.db.url), `${dbName(s.db.url)}_backup`);
    await adminQuery(s.db.url, `DROP DATABASE ${dbName(s.db.url)}_backup`);
  }
}

const dbName = (url: string) => new URL(url).pathname.slice(1);

async function adminQuery(url: string, sql: string): Promise<void> {
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const c = new pg.Client({ connectionString: admin.toString() });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

function copyDatabase(url: string, to: string, from: string): Promise<void> {
  return adminQuery(url, `CREATE DATABASE ${to} TEMPLATE ${from}`);
}

async function settle(...devices: TestDevice[]): Promise<void> {
  for (const d of devices) await d.syncOnce();
  for (const d of devices) await d.syncOnce();
}

function files(d: TestDevice): Map<string, string> {
  return new Map([...d.tree()].filter(([, v]) => v !== '/').map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
}

describe('Recovery', function () {
  this.timeout(180_000);

  forEachDatabase((kind) => {
    let s: Scenario;
    let laptop: TestDevice;
    let desktop: TestDevice;

    beforeEach(async () => {
      s = await scenario(kind);
      laptop = await s.addDevice('laptop');
      desktop = await s.addDevice('desktop');
    });
    afterEach(async () => s.cleanup());

    it('B6: devices notice a server restored from an older backup, keep their newer files and report, deleting nothing', async () => {
      laptop.write('kept.txt', 'v1');
      laptop.write('later-deleted.txt', 'old');
      laptop.write('docs/report.txt', 'draft');
      await settle(laptop, desktop);
      await s.server.stop();
      const saved = `${s.server.root}/backup`;
      await backup(s, saved);
      await s.server.start();

      // Life goes on after the backup.
      laptop.write('kept.txt', 'v2 after the backup');
      laptop.write('docs/new-after-backup.txt', 'new');
      fs.rmSync(laptop.p('later-deleted.txt'));
      await settle(laptop, desktop);
      const before = { laptop: files(laptop), desktop: files(desktop) };

      // The NAS is restored from the old backup.
      await s.server.stop();
      await restore(s, saved);
      await s.server.start();

      const r = await laptop.run(['sync', '--once']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /restored from a backup/, 'the device did not report the older server');
      await settle(laptop, desktop);
      for (const [name, d] of [['laptop', laptop], ['desktop', desktop]] as const) {
        const now = files(d);
        // Every file the device had is still there, with its content (or kept as a conflict copy beside it).
        for (const [p, content] of before[name]) {
          const same = [...now].some(([q, c]) => c === content && (q === p || q.startsWith(p.replace(/\.txt$/, ' (conflict from'))));
          assert.ok(same, `${name} lost ${p} (${content}); now: ${JSON.stringify([...now])}`);
        }
      }
      assert.deepEqual([...files(desktop)].sort(), [...files(laptop)].sort(), 'the devices did not converge');
      const index = await ServerIndex.open(s.server);
      try {
        assert.deepEqual(await verifyServer(s.server, index), []);
        assert.equal((await index.live()).get('docs/new-after-backup.txt')?.kind, 'file', 'the newer file did not go back to the server');
      } finally {
        await index.close();
      }
    });

    it('B5: a device that lost its local index merges without deleting anything', async () => {
      laptop.write('same.txt', 'same on both');
      laptop.write('edited-here.txt', 'v1');
      laptop.write('deleted-there.txt', 'will be deleted by desktop');
      laptop.write('changed-there.txt', 'v1');
      await settle(laptop, desktop);
      fs.rmSync(desktop.p('deleted-there.txt'));
      desktop.write('changed-there.txt', 'v2 from desktop');
      await desktop.syncOnce();
      // The laptop's index is gone (a reinstall, a lost home dir); it edited a file meanwhile.
      for (const f of fs.readdirSync(laptop.home).filter((n) => n.startsWith('index.db'))) fs.rmSync(`${laptop.home}/${f}`);
      laptop.write('edited-here.txt', 'v2 from laptop');
      const before = files(laptop);
      await settle(laptop, desktop);
      const now = files(laptop);
      for (const [p, content] of before) assert.ok([...now.values()].includes(content), `the laptop lost ${p} (${content})`);
      assert.equal(now.get('same.txt'), 'same on both');
      assert.ok(![...now.keys()].some((k) => k.startsWith('same (conflict')), 'identical content became a conflict');
      assert.ok([...now.values()].includes('v2 from desktop'), 'the other device\'s edit was lost');
      assert.deepEqual([...files(desktop)].sort(), [...now].sort());
    });
  });
});
