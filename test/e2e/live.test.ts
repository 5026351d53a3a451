import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { forEachDatabase, scenario, type Scenario, type TestDevice } from '../helpers/cluster.js';
import { fileSha } from '../helpers/files.js';
import { waitFor } from '../helpers/wait.js';

describe('Live sync', function () {
  this.timeout(180_000);

  forEachDatabase((kind) => {
    let s: Scenario;
    let laptop: TestDevice;
    let desktop: TestDevice;

    beforeEach(async () => {
      s = await scenario(kind);
      laptop = await s.addDevice('laptop');
      desktop = await s.addDevice('desktop');
      await laptop.start();
      await desktop.start();
    });
    afterEach(async () => s.cleanup());

    it('carries edits, moves and deletes both ways while both devices run', async () => {
      laptop.write('live/a.txt', 'one');
      await waitFor('a.txt on desktop', () => desktop.read('live/a.txt') === 'one');
      desktop.write('live/a.txt', 'two');
      await waitFor('the edit on laptop', () => laptop.read('live/a.txt') === 'two');
      fs.renameSync(laptop.p('live'), laptop.p('renamed'));
      await waitFor('the move on desktop', () => desktop.read('renamed/a.txt') === 'two' && !desktop.exists('live'));
      fs.rmSync(desktop.p('renamed'), { recursive: true });
      await waitFor('the delete on laptop', () => !laptop.exists('renamed'));
    });

    it('sends deletes made the moment files arrived, which the watcher may report as no change at all', async () => {
      for (let i = 0; i < 5; i++) laptop.write(`f${i}.txt`, `content ${i}`);
      await waitFor('the files on desktop', () => desktop.exists('f4.txt'), 30_000, 2);
      for (let i = 0; i < 3; i++) fs.rmSync(desktop.p(`f${i}.txt`), { force: true });
      await waitFor('the deletes on laptop', () => [0, 1, 2].every((i) => !laptop.exists(`f${i}.txt`)), 20_000);
      assert.deepEqual([3, 4].map((i) => laptop.read(`f${i}.txt`)), ['content 3', 'content 4']);
    });

    it('syncs a 100 MiB file intact', async () => {
      const block = crypto.randomBytes(1024 * 1024);
      const fd = fs.openSync(laptop.p('big.bin'), 'w');
      for (let i = 0; i < 100; i++) {
        block.writeUInt32LE(i, 0);
        fs.writeSync(fd, block);
      }
      fs.closeSync(fd);
      const want = fileSha(laptop.p('big.bin'));
      await waitFor('big.bin on desktop', () => fileSha(desktop.p('big.bin')) === want, 120_000, 200);
      const leftovers = fs.readdirSync(desktop.dir).filter((n) => n.startsWith('.keepsync-'));
      assert.deepEqual(leftovers, []);
    });
  });
});
