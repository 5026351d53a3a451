import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { forEachDatabase, scenario, sortedTree, type Scenario, type TestDevice } from '../helpers/cluster.js';

/** Syncs devices in turn until they agree (each `--once` run settles its side). */
async function settle(...devices: TestDevice[]): Promise<void> {
  for (const d of devices) await d.syncOnce();
  for (const d of devices) await d.syncOnce();
}

function assertSameTrees(a: TestDevice, b: TestDevice): void {
  assert.deepEqual(sortedTree(b.tree()), sortedTree(a.tree()));
}

function chunkFiles(dataDir: string): number {
  let n = 0;
  const root = path.join(dataDir, 'chunks');
  for (const d of fs.readdirSync(root)) if (d.length === 2) n += fs.readdirSync(path.join(root, d)).length;
  return n;
}

describe('Sync between two devices', function () {
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

    it('propagates adds, edits, deletes, renames and moves of files and folders both ways', async () => {
      laptop.write('docs/a.txt', 'alpha');
      laptop.write('docs/deep/b.txt', 'beta');
      fs.mkdirSync(laptop.p('empty/inner'), { recursive: true });
      await settle(laptop, desktop);
      assert.equal(desktop.read('docs/a.txt'), 'alpha');
      assert.equal(desktop.read('docs/deep/b.txt'), 'beta');
      assert.ok(fs.statSync(desktop.p('empty/inner')).isDirectory());

      // The other way: edit, rename, move a folder, delete a file and a folder.
      desktop.write('docs/a.txt', 'alpha 2');
      fs.renameSync(desktop.p('docs/deep/b.txt'), desktop.p('docs/deep/b-renamed.txt'));
      fs.renameSync(desktop.p('docs/deep'), desktop.p('moved-deep'));
      fs.rmSync(desktop.p('empty'), { recursive: true });
      desktop.write('new/c.txt', 'gamma');
      await settle(desktop, laptop);
      assert.equal(laptop.read('docs/a.txt'), 'alpha 2');
      assert.equal(laptop.read('moved-deep/b-renamed.txt'), 'beta');
      assert.ok(!laptop.exists('docs/deep'));
      assert.ok(!laptop.exists('empty'));
      assert.equal(laptop.read('new/c.txt'), 'gamma');
      fs.rmSync(laptop.p('new/c.txt'));
      await settle(laptop, desktop);
      assert.ok(!desktop.exists('new/c.txt'));
      assert.ok(desktop.exists('new'));
      assertSameTrees(laptop, desktop);
    });

    it('brings back a folder deleted here that the server kept for a file added in it elsewhere, after that file went too (A3)', async () => {
      fs.mkdirSync(laptop.p('shared/sub'), { recursive: true });
      await settle(laptop, desktop);
      // The desktop deletes the folder while the laptop adds a file in it: the add wins, the folder stays.
      laptop.write('shared/sub/run.sh', 'added while the folder was deleted elsewhere');
      await laptop.syncOnce();
      fs.rmSync(desktop.p('shared'), { recursive: true });
      await desktop.syncOnce();
      assert.equal(desktop.read('shared/sub/run.sh'), 'added while the folder was deleted elsewhere');
      // The file goes as well: the folders it kept stay, on both devices, as on the server.
      fs.rmSync(laptop.p('shared/sub/run.sh'));
      await settle(laptop, desktop);
      assert.ok(fs.statSync(desktop.p('shared/sub')).isDirectory(), 'the desktop lacks the folders the server kept');
      assertSameTrees(laptop, desktop);
    });

    it('preserves modification times and the executable bit', async () => {
      laptop.write('run.sh', '#!/bin/sh\necho hi\n');
      fs.chmodSync(laptop.p('run.sh'), 0o755);
      const when = new Date('2021-03-04T05:06:07.000Z');
      fs.utimesSync(laptop.p('run.sh'), when, when);
      await settle(laptop, desktop);
      const st = fs.statSync(desktop.p('run.sh'));
      assert.equal(st.mtimeMs, when.getTime());
      assert.ok((st.mode & 0o111) !== 0, 'executable bit lost');
    });

    it('syncs 1,000 small files in nested folders', async () => {
      for (let i = 0; i < 1000; i++) laptop.write(`bulk/d${i % 10}/e${i % 7}/f${i}.txt`, `file ${i}\n`.repeat(i % 50 + 1));
      await settle(laptop, desktop);
      assertSameTrees(laptop, desktop);
      assert.equal([...desktop.tree().keys()].filter((k) => k.endsWith('.txt')).length, 1000);
    });

    it('catches up with edits made while a device was not running', async () => {
      laptop.write('notes.txt', 'v1');
      laptop.write('keep.txt', 'keep');
      laptop.write('gone.txt', 'gone');
      await settle(laptop, desktop);
      // desktop is stopped; both sides change things meanwhile.
      laptop.write('notes.txt', 'v2 from laptop');
      fs.rmSync(laptop.p('gone.txt'));
      await laptop.syncOnce();
      desktop.write('offline.txt', 'written offline');
      fs.renameSync(desktop.p('keep.txt'), desktop.p('kept.txt'));
      await settle(desktop, laptop);
      for (const d of [laptop, desktop]) {
        assert.equal(d.read('notes.txt'), 'v2 from laptop');
        assert.equal(d.read('offline.txt'), 'written offline');
        assert.equal(d.read('kept.txt'), 'keep');
        assert.ok(!d.exists('keep.txt'));
        assert.ok(!d.exists('gone.txt'));
      }
    });

    it('keeps both sides of a concurrent edit, naming the loser as a conflict copy on every device', async () => {
      laptop.write('thesis.tex', 'original');
      await settle(laptop, desktop);
      laptop.write('thesis.tex', 'laptop edit');
      desktop.write('thesis.tex', 'desktop edit');
      await laptop.syncOnce(); // first to reach the server wins
      await settle(desktop, laptop);
      for (const d of [laptop, desktop]) {
        assert.equal(d.read('thesis.tex'), 'laptop edit');
        const copies = [...d.tree().keys()].filter((k) => /^thesis \(conflict from desktop \d{4}-\d\d-\d\d \d{6}\)\.tex$/.test(k));
        assert.equal(copies.length, 1, `${d.name}: ${[...d.tree().keys()].join(', ')}`);
        assert.equal(d.read(copies[0]), 'desktop edit');
      }
    });

    it('lets an edit win over a concurrent delete', async () => {
      laptop.write('report.txt', 'v1');
      await settle(laptop, desktop);
      fs.rmSync(laptop.p('report.txt'));
      desktop.write('report.txt', 'v2 edited');
      await laptop.syncOnce();
      await settle(desktop, laptop);
      assert.equal(laptop.read('report.txt'), 'v2 edited');
      assert.equal(desktop.read('report.txt'), 'v2 edited');
    });

    it('renames a large folder without sending its content again', async () => {
      const big = Buffer.alloc(3 * 1024 * 1024);
      for (let i = 0; i < 20; i++) {
        big.fill(i + 1);
        big.writeUInt32LE(i * 7919, 0);
        laptop.write(`Photos/2024/img${i}.raw`, Buffer.from(big));
      }
      await settle(laptop, desktop);
      const before = chunkFiles(s.server.dataDir);
      fs.renameSync(laptop.p('Photos/2024'), laptop.p('Photos/Holidays 2024'));
      const r = await laptop.syncOnce();
      await desktop.syncOnce();
      assert.equal(chunkFiles(s.server.dataDir), before, 'the rename stored new chunks');
      assert.equal(desktop.exists('Photos/2024'), false);
      assert.equal(fs.readdirSync(desktop.p('Photos/Holidays 2024')).length, 20);
      assert.equal(r.code, 0);
      assertSameTrees(laptop, desktop);
    });

    it('merges the files of a folder that already had content when paired', async () => {
      laptop.write('shared.txt', 'laptop version');
      laptop.write('only-laptop.txt', 'L');
      await laptop.syncOnce();
      const third = await s.addDevice('third');
      third.write('shared.txt', 'third version');
      third.write('only-third.txt', 'T');
      await settle(third, laptop, desktop);
      for (const d of [laptop, desktop, third]) {
        assert.equal(d.read('shared.txt'), 'laptop version');
        assert.equal(d.read('only-laptop.txt'), 'L');
        assert.equal(d.read('only-third.txt'), 'T');
        const copy = [...d.tree().keys()].find((k) => k.startsWith('shared (conflict from third'));
        assert.ok(copy, `${d.name} has no conflict copy`);
        assert.equal(d.read(copy!), 'third version');
      }
    });

    it('honours .keepsyncignore and never syncs OS junk', async () => {
      laptop.write('.keepsyncignore', 'build/\n*.tmp\n');
      laptop.write('build/out.o', 'obj');
      laptop.write('x.tmp', 'tmp');
      laptop.write('.DS_Store', 'junk');
      laptop.write('Thumbs.db', 'junk');
      laptop.write('movie.mkv.crdownload', 'half a download');
      laptop.write('movie2.mkv.part', 'half a download');
      laptop.write('real.txt', 'real');
      await settle(laptop, desktop);
      assert.equal(desktop.read('real.txt'), 'real');
      assert.equal(desktop.read('.keepsyncignore'), 'build/\n*.tmp\n');
      for (const junk of ['build/out.o', 'x.tmp', '.DS_Store', 'Thumbs.db', 'movie.mkv.crdownload', 'movie2.mkv.part']) assert.ok(!desktop.exists(junk), `${junk} was synced`);
      // The finished download, renamed from its partial file, syncs.
      fs.renameSync(laptop.p('movie.mkv.crdownload'), laptop.p('movie.mkv'));
      await settle(laptop, desktop);
      assert.equal(desktop.read('movie.mkv'), 'half a download');
    });

    it('stops instead of deleting everything when the folder root vanishes or is emptied', async () => {
      laptop.write('a.txt', 'a');
      laptop.write('b/c.txt', 'c');
      await settle(laptop, desktop);
      fs.rmSync(laptop.dir, { recursive: true });
      fs.mkdirSync(laptop.dir);
      const r = await laptop.run(['sync', '--once', '--quiet']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /is empty or missing; not propagating deletions/);
      fs.rmSync(laptop.dir, { recursive: true });
      const r2 = await laptop.run(['sync', '--once', '--quiet']);
      assert.equal(r2.code, 1);
      await desktop.syncOnce();
      assert.equal(desktop.read('a.txt'), 'a');
      assert.equal(desktop.read('b/c.txt'), 'c');
    });
  });
});
