import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { databaseKinds } from '../helpers/databases.js';
import { scenario, type Scenario } from '../helpers/cluster.js';
import { fileSha, filesOf } from '../helpers/files.js';
import { waitFor } from '../helpers/wait.js';

/** The client alone is under test: one database is enough. */
describe('A file still being written', function () {
  this.timeout(120_000);
  let s: Scenario;
  afterEach(async () => s?.cleanup());

  it('goes up once it is left alone, not once per write (a download, a copy from a slow disk)', async () => {
    s = await scenario(databaseKinds()[0]);
    const laptop = await s.addDevice('laptop');
    const desktop = await s.addDevice('desktop');
    await laptop.start();
    await desktop.start();
    // 30 MiB written over 6 s, 1 MiB every 200 ms: each write is a change the watcher reports.
    const fd = fs.openSync(laptop.p('video.mp4'), 'w');
    const block = crypto.randomBytes(1024 * 1024);
    for (let i = 0; i < 30; i++) {
      block.writeUInt32LE(i, 0);
      fs.writeSync(fd, block);
      await new Promise((r) => setTimeout(r, 200));
    }
    fs.closeSync(fd);
    const want = fileSha(laptop.p('video.mp4'));
    await waitFor('the whole file on the desktop', () => fileSha(desktop.p('video.mp4')) === want, 60_000, 200);
    const r = await laptop.run(['versions', 'video.mp4', '--json']);
    const versions = JSON.parse(r.stdout) as Array<{ size: number; current: boolean }>;
    // Seen written just now, then growing: held back until done. (A look in the instant
    // between its creation and the first write would send it empty first.)
    assert.ok(versions.length <= 2, `${versions.length} versions: ${versions.map((v) => v.size).join(', ')}`);
    assert.equal(versions.find((v) => v.current)?.size, 30 * 1024 * 1024);
  });

  it('sends every held file once it is left alone, whatever else the device is doing meanwhile', async () => {
    s = await scenario(databaseKinds()[0]);
    const laptop = await s.addDevice('laptop');
    const desktop = await s.addDevice('desktop');
    for (let i = 0; i < 60; i++) laptop.write(`notes/n${i}.txt`, `note ${i}\n`);
    await laptop.start();
    await desktop.start();
    await waitFor('the notes on the desktop', () => filesOf(desktop, 'notes').size === 60, 30_000, 100);
    // Each note grows three times within a second or two of the last look at it (held
    // back each time), while other notes go at once: some shrink, one is deleted, one
    // is new. Rounds overlap the laptop's cycles and its looks again at held files.
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 60; i++) {
        const file = laptop.p(`notes/n${i}.txt`);
        if (i === 5 && round === 2) continue;
        if (i % 10 === 9) fs.writeFileSync(file, `short ${round}\n`);
        else fs.appendFileSync(file, `round ${round}: ${crypto.randomBytes(200 + i * 10).toString('hex')}\n`);
        if (i % 7 === 0) await new Promise((r) => setTimeout(r, 30 + crypto.randomInt(120)));
      }
      if (round === 1) {
        fs.rmSync(laptop.p('notes/n5.txt'));
        laptop.write('notes/new.txt', 'new');
      }
      await new Promise((r) => setTimeout(r, 300 + crypto.randomInt(700)));
    }
    const want = filesOf(laptop, 'notes');
    assert.equal(want.size, 60);
    await waitFor('every note as the laptop has it, on the desktop', () => {
      assert.deepEqual(filesOf(desktop, 'notes'), want);
      return true;
    }, 30_000, 100);
  });

  it('goes up once it is left alone when a large file is changed in place over and over (a disk image in use)', async () => {
    s = await scenario(databaseKinds()[0]);
    const laptop = await s.addDevice('laptop');
    const desktop = await s.addDevice('desktop');
    laptop.write('disk.img', crypto.randomBytes(8 * 1024 * 1024));
    await laptop.start();
    await desktop.start();
    await waitFor('the image on the desktop', () => fileSha(desktop.p('disk.img')) === fileSha(laptop.p('disk.img')), 30_000, 100);
    await new Promise((r) => setTimeout(r, 2500));
    // 4 KiB written at a random place every 100 ms for 3 s: the size never changes.
    const fd = fs.openSync(laptop.p('disk.img'), 'r+');
    for (let i = 0; i < 30; i++) {
      fs.writeSync(fd, crypto.randomBytes(4096), 0, 4096, crypto.randomInt(2048) * 4096);
      await new Promise((r) => setTimeout(r, 100));
    }
    fs.closeSync(fd);
    const want = fileSha(laptop.p('disk.img'));
    await waitFor('the changed image on the desktop', () => fileSha(desktop.p('disk.img')) === want, 30_000, 100);
    const r = await laptop.run(['versions', 'disk.img', '--json']);
    const versions = JSON.parse(r.stdout) as unknown[];
    assert.ok(versions.length <= 3, `${versions.length} versions`);
  });
});
