import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { forEachDatabase, scenario, sortedTree, type Scenario, type TestDevice } from '../helpers/cluster.js';
import { AdminClient } from '../helpers/rawDevice.js';
import { ContentLog, serverTree, sha256 } from '../helpers/serverContent.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Absurd modification times, skewed clocks, Windows-reserved names and long
 * paths (SAFETY.md D6). Times come from each device's file system and are
 * kept as they are; which edit wins is the server's order, never an mtime;
 * the server stamps versions and trash items with its own clock, so
 * retention is not fooled by a file from 1970 or 2200. Names that Windows
 * reserves are legal on Linux and sync like any other.
 */

const YEAR_MS = 365.25 * 24 * 3600 * 1000;

/** Times a file may carry (ms since the epoch). */
const TIMES: Record<string, number> = {
  'epoch.txt': 0,
  'before-epoch.txt': -86_400_000 * 365,
  'year-2200.txt': Date.UTC(2200, 0, 1),
  'fraction.txt': 1_600_000_000_123.456,
  'y2038.txt': 2 ** 31 * 1000 + 1000,
};

/** Names Windows refuses or changes, all legal on Linux. */
const WINDOWS_NAMES = ['CON', 'aux.txt', 'NUL', 'com1.log', 'LPT9', 'ends with dot.', 'ends with space ', 'what?.txt', 'star*.txt', 'pipe|.txt', 'colon:name.txt', '<angle>.txt', '"quoted".txt'];

function setMtime(file: string, ms: number): void {
  fs.utimesSync(file, new Date(ms), new Date(ms));
}

async function settle(...devices: TestDevice[]): Promise<void> {
  for (const d of devices) await d.syncOnce();
  for (const d of devices) await d.syncOnce();
}

describe('Clocks, times, names and long paths (D6)', function () {
  this.timeout(120_000);

  forEachDatabase((kind) => {
    let s: Scenario;
    let admin: AdminClient;
    let log: ContentLog;
    let laptop: TestDevice;
    let desktop: TestDevice;

    beforeEach(async () => {
      s = await scenario(kind);
      admin = await AdminClient.login(s.server);
      log = new ContentLog();
      laptop = await s.addDevice('laptop');
      desktop = await s.addDevice('desktop');
    });
    afterEach(async () => {
      await s.cleanup();
    });

    it('keeps absurd modification times as the file system allows, and lets the server order edits, not mtimes', async () => {
      for (const [name, ms] of Object.entries(TIMES)) {
        laptop.write(name, log.add(name, `a file from ${ms}`));
        setMtime(laptop.p(name), ms);
      }
      await settle(laptop, desktop);
      for (const [name, ms] of Object.entries(TIMES)) {
        assert.equal(desktop.read(name), `a file from ${ms}`);
        const got = fs.statSync(desktop.p(name)).mtimeMs;
        assert.ok(Math.abs(got - ms) <= 1, `${name}: mtime ${got} on the desktop, ${ms} on the laptop`);
        assert.ok(Math.abs(fs.statSync(laptop.p(name)).mtimeMs - ms) <= 1, `${name}: the laptop's own mtime changed`);
      }

      // A device whose clock runs 100 years ahead writes a file; the other edits it after.
      // The later edit wins although its mtime is far older; nothing is lost.
      laptop.write('skewed.txt', log.add('skewed.txt', 'from a clock 100 years ahead'));
      setMtime(laptop.p('skewed.txt'), Date.now() + 100 * YEAR_MS);
      await settle(laptop, desktop);
      desktop.write('skewed.txt', log.add('skewed.txt', 'edited later on a right clock'));
      desktop.write('epoch.txt', log.add('epoch.txt', 'edited later, from 1970 to now'));
      await settle(desktop, laptop);
      assert.equal(laptop.read('skewed.txt'), 'edited later on a right clock');
      assert.equal(laptop.read('epoch.txt'), 'edited later, from 1970 to now');

      // The same file written on both with opposite skews: one wins by server order, the other is a conflict copy.
      laptop.write('both.txt', log.add('both.txt', 'laptop, from 2200'));
      setMtime(laptop.p('both.txt'), Date.UTC(2200, 0, 1));
      desktop.write('both.txt', log.add('both.txt', 'desktop, from 1970'));
      setMtime(desktop.p('both.txt'), 1000);
      await settle(laptop, desktop);
      assert.deepEqual(sortedTree(laptop.tree()), sortedTree(desktop.tree()));
      assert.equal([...laptop.tree().keys()].filter((p) => p.startsWith('both')).length, 2);

      // The server's times are its own: versions and trash items are stamped now, whatever the mtime.
      fs.rmSync(laptop.p('year-2200.txt'));
      fs.rmSync(laptop.p('before-epoch.txt'));
      await settle(laptop, desktop);
      const trash: Array<{ path: string; deletedAt: string }> = (await admin.request('GET', '/folders/Sync/trash')).body;
      assert.deepEqual(trash.map((t) => t.path).sort(), ['before-epoch.txt', 'year-2200.txt']);
      for (const t of trash) assert.ok(Math.abs(Date.parse(t.deletedAt) - Date.now()) < 10 * 60_000, `${t.path} deleted at ${t.deletedAt}`);
      const versions: Array<{ createdAt: string; modifiedAt: string }> = (await admin.request('GET', '/folders/Sync/versions?path=skewed.txt')).body;
      assert.equal(versions.length, 2);
      for (const v of versions) assert.ok(Math.abs(Date.parse(v.createdAt) - Date.now()) < 10 * 60_000, `a version created at ${v.createdAt}`);

      // Retention by age counts from those times: with a one-day limit, a version from 1970 replaced
      // just now and a file from 2200 deleted just now stay; keeping 2 versions per file removes one.
      laptop.write('control.txt', 'control v1'); // the version retention removes
      await laptop.syncOnce();
      laptop.write('control.txt', log.add('control.txt', 'control v2, a little longer'));
      await laptop.syncOnce();
      laptop.write('control.txt', 'control v3, longer still');
      await laptop.syncOnce();
      const r = await admin.request('PUT', '/settings', { versions: { keep: 2, maxAgeDays: 1 }, trashDays: 1 });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      await waitFor('retention to run', () => /maintenance: removed \d+ earlier versions/.test(s.server.proc.stderr + s.server.proc.stdout), 30_000);
      assert.match(s.server.proc.stderr + s.server.proc.stdout, /maintenance: removed 1 earlier versions, purged 0 trash items/);
      assert.equal((await admin.request('GET', '/folders/Sync/versions?path=epoch.txt')).body.length, 2);
      assert.equal((await admin.request('GET', '/folders/Sync/trash')).body.length, 2);
      await log.assertNothingLost(admin);
    });

    it('sends a touch (the same bytes, another mtime) to the other devices without making a version (A7), live too', async () => {
      const mtimeOf = (d: TestDevice) => Math.round(fs.statSync(d.p('touched.txt')).mtimeMs);
      laptop.write('touched.txt', log.add('touched.txt', 'the same bytes throughout'));
      setMtime(laptop.p('touched.txt'), Date.UTC(2020, 0, 1, 0, 0, 0, 123));
      await settle(laptop, desktop);
      assert.equal(mtimeOf(desktop), Date.UTC(2020, 0, 1, 0, 0, 0, 123));

      const later = Date.UTC(2024, 5, 6, 7, 8, 9, 456);
      setMtime(laptop.p('touched.txt'), later);
      await settle(laptop, desktop);
      assert.deepEqual([mtimeOf(laptop), mtimeOf(desktop)], [later, later]);
      // Back to an older time, on the other device.
      const older = Date.UTC(2010, 0, 2, 3, 4, 5, 6);
      setMtime(desktop.p('touched.txt'), older);
      await settle(desktop, laptop);
      assert.deepEqual([mtimeOf(laptop), mtimeOf(desktop)], [older, older]);

      // Live: a touch on the laptop shows on the running desktop.
      await laptop.start();
      await desktop.start();
      const live = Date.UTC(2025, 10, 12, 13, 14, 15, 789);
      setMtime(laptop.p('touched.txt'), live);
      await waitFor('the touch on the desktop', () => mtimeOf(desktop) === live, 30_000);
      await laptop.stop();
      await desktop.stop();

      assert.equal(desktop.read('touched.txt'), 'the same bytes throughout');
      const versions: Array<{ modifiedAt: string }> = (await admin.request('GET', '/folders/Sync/versions?path=touched.txt')).body;
      assert.equal(versions.length, 1, 'a touch makes no version');
      await log.assertNothingLost(admin);
    });

    it('syncs names Windows reserves, the longest names and paths, and reports what the wire cannot carry', async () => {
      for (const name of WINDOWS_NAMES) laptop.write(name, log.add(name, `named ${name}`));
      laptop.write('PRN/aux/nul.txt', log.add('PRN/aux/nul.txt', 'in reserved folders'));
      const longAscii = `${'n'.repeat(251)}.txt`;
      const longUnicode = `${'é'.repeat(125)}.txt`; // 254 bytes in UTF-8
      laptop.write(longAscii, log.add(longAscii, 'a 255-byte name'));
      laptop.write(longUnicode, log.add(longUnicode, 'a 254-byte name in two-byte characters'));
      // A path of 2,040 bytes: the longest the wire takes is 2,048.
      const deep = `${Array.from({ length: 8 }, (_, i) => `${String(i)}${'d'.repeat(249)}`).join('/')}/${'f'.repeat(24)}.txt`;
      assert.ok(Buffer.byteLength(deep) <= 2048 && Buffer.byteLength(deep) > 2000);
      laptop.write(deep, log.add(deep, 'deep down'));
      // Longer than the wire takes, and a name with a backslash: legal here, not syncable.
      const tooDeep = `${Array.from({ length: 9 }, (_, i) => `${String(i)}${'t'.repeat(249)}`).join('/')}/x.txt`;
      laptop.write(tooDeep, 'too deep for the wire');
      laptop.write('back\\slash.txt', 'a backslash in the name');
      await settle(laptop, desktop);

      for (const name of WINDOWS_NAMES) assert.equal(desktop.read(name), `named ${name}`, name);
      assert.equal(desktop.read('PRN/aux/nul.txt'), 'in reserved folders');
      assert.equal(desktop.read(longAscii), 'a 255-byte name');
      assert.equal(desktop.read(longUnicode), 'a 254-byte name in two-byte characters');
      assert.equal(desktop.read(deep), 'deep down');
      assert.equal(desktop.exists('back\\slash.txt'), false);
      assert.equal(laptop.read('back\\slash.txt'), 'a backslash in the name', 'a file the wire cannot carry was touched');
      assert.equal(laptop.read(tooDeep), 'too deep for the wire');
      const r = await laptop.run(['sync', '--once']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /^back\\slash\.txt is not synced: the server does not take it \(.*backslash\); rename it$/m);
      assert.match(r.stderr, /\/8t+ is not synced: the server does not take it \(.*too long\); rename it$/m);

      // Edited, renamed and deleted on the other side, they come back right.
      desktop.write('CON', log.add('CON', 'CON edited'));
      fs.renameSync(desktop.p('ends with dot.'), desktop.p('renamed.'));
      fs.rmSync(desktop.p('what?.txt'));
      await settle(desktop, laptop);
      assert.equal(laptop.read('CON'), 'CON edited');
      assert.equal(laptop.read('renamed.'), 'named ends with dot.');
      assert.equal(laptop.exists('what?.txt'), false);
      const tree = await serverTree(admin);
      assert.equal(tree.get('renamed.'), sha256('named ends with dot.'));
      const mirror = (t: Map<string, string>) => sortedTree(new Map([...t].filter(([p]) => !p.includes('/8ttt') && !p.includes('\\'))));
      assert.deepEqual(mirror(desktop.tree()), mirror(laptop.tree()));
      await log.assertNothingLost(admin);
    });
  });
});
