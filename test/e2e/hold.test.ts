import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { forEachDatabase, scenario, type Scenario, type TestDevice } from '../helpers/cluster.js';
import { AdminClient, httpsJson } from '../helpers/rawDevice.js';
import { filesOf, ok, refused } from '../helpers/files.js';

/*
 * Mass deletes held on the server (SAFETY.md E2): a real server process,
 * two real `keepsync` devices and the admin API, on every database. A burst
 * of deletes by one device (>= 100 files, or >= 25% of a folder of 40 files
 * or more) is held: the other device keeps the files until the admin
 * applies the deletes (into the trash, on every device) or undoes them (the
 * deleting device gets the files back).
 */

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

describe('Mass deletes held on the server', function () {
  this.timeout(240_000);

  forEachDatabase((kind) => {
    let s: Scenario;
    let laptop: TestDevice;
    let desktop: TestDevice;
    let admin: AdminClient;
    /** The 150 files of Bulk: 100 in Bulk/a (deleted as a folder), 50 beside it (deleted one by one). */
    let bulk: Map<string, string>;

    const holds = async (): Promise<any[]> => ok(await admin.request('GET', '/holds'));
    const trash = async (): Promise<any[]> => ok(await admin.request('GET', '/folders/Sync/trash'));
    const deleteBulk = (d: TestDevice) => {
      fs.rmSync(d.p('Bulk/a'), { recursive: true });
      for (let i = 0; i < 50; i++) fs.rmSync(d.p(`Bulk/f${i}.txt`));
    };

    before(async () => {
      s = await scenario(kind);
      laptop = await s.addDevice('laptop');
      desktop = await s.addDevice('desktop');
      admin = await AdminClient.login(s.server);
      laptop.write('anchor.txt', 'stays');
      for (let i = 0; i < 100; i++) laptop.write(`Bulk/a/${i % 4}/g${i}.txt`, `bulk a ${i}\n`.repeat(1 + i));
      for (let i = 0; i < 50; i++) laptop.write(`Bulk/f${i}.txt`, `bulk f ${i}\n`.repeat(1 + i));
      await laptop.syncOnce();
      await desktop.syncOnce();
      bulk = filesOf(laptop, 'Bulk');
      assert.equal(bulk.size, 150);
      assert.deepEqual(filesOf(desktop, 'Bulk'), bulk);
    });
    after(async () => s?.cleanup());

    it('has the rule in the settings: 100 files, or 25% of a folder of 40 files or more', async () => {
      assert.deepEqual(ok(await admin.request('GET', '/settings')).deleteHold, { files: 100, percent: 25, minFolderFiles: 40 });
      refused(await admin.request('PUT', '/settings', { deleteHold: { percent: 101 } }), 400, /deleteHold\.percent must be a whole number from 0 to 100/);
      refused(await admin.request('PUT', '/settings', { deleteHold: 'off' }), 400, /0 turns a rule off/);
    });

    it('holds a burst of 150 deletes: the other device keeps the files, the admin sees it, and undo gives them back to the deleting device', async () => {
      deleteBulk(laptop);
      // The deleting device is told, once, in one line.
      const told = (await laptop.syncOnce()).stderr.split('\n').filter((l) => /held|holds/.test(l));
      assert.equal(told.length, 1, told.join('\n'));
      assert.match(told[0], /^the server holds \d+ deletes from this device as a mass delete: other devices keep those files until the admin applies or undoes it on the admin page's Trash tab$/);

      const [hold, ...more] = await holds();
      assert.deepEqual(more, []);
      assert.deepEqual([hold.folder, hold.device, hold.files], ['Sync', 'laptop', 150]);
      assert.ok(hold.paths.includes('Bulk/a') && hold.paths.includes('Bulk/f0.txt'), JSON.stringify(hold.paths));
      assert.equal(ok(await admin.request('GET', '/status')).heldDeletes, 1);
      const activity = JSON.stringify(ok(await admin.request('GET', '/activity')));
      assert.match(activity, /laptop deleted 150 of 151 files at once; the deletes are held/);

      // Held: nothing in the trash, the server's files and the other device's untouched.
      assert.deepEqual(await trash(), []);
      await desktop.syncOnce();
      assert.deepEqual(filesOf(desktop, 'Bulk'), bulk);
      // The deleting device does not push the deletes again, nor gets the files back by itself.
      assert.doesNotMatch((await laptop.syncOnce()).stderr, /holds/);
      assert.deepEqual(filesOf(laptop, 'Bulk'), new Map());
      assert.equal((await holds())[0].files, 150);

      // Deciding needs the admin session (and its CSRF token).
      refused(await httpsJson(`${s.server.url}/api/v1/holds/${hold.id}/undo`, 'POST'), 401, /./);
      refused(await httpsJson(`${s.server.url}/api/v1/holds/${hold.id}/apply`, 'POST'), 401, /./);
      assert.equal((await holds()).length, 1);

      assert.match(ok(await admin.request('POST', `/holds/${hold.id}/undo`)).message, /^undid 150 held deletes/);
      await laptop.syncOnce();
      await desktop.syncOnce();
      assert.deepEqual(filesOf(laptop, 'Bulk'), bulk);
      assert.deepEqual(filesOf(desktop, 'Bulk'), bulk);
      assert.deepEqual(await holds(), []);
      assert.deepEqual(await trash(), []);
      // Undone is decided: it cannot be applied any more.
      refused(await admin.request('POST', `/holds/${hold.id}/apply`), 404, /not waiting for a decision/);
      refused(await admin.request('POST', '/holds/999999/undo'), 404, /not waiting for a decision/);
    });

    it('applies a second burst: the deletes reach the other device and the files are in the trash', async () => {
      deleteBulk(laptop);
      await laptop.syncOnce();
      const [hold] = await holds();
      assert.equal(hold?.files, 150);
      await desktop.syncOnce();
      assert.deepEqual(filesOf(desktop, 'Bulk'), bulk);
      // Written into the held folder after the hold: applying the hold spares it.
      laptop.write('Bulk/a/new.txt', 'written after the delete');
      await laptop.syncOnce();

      assert.match(ok(await admin.request('POST', `/holds/${hold.id}/apply`)).message, /^applied 150 held deletes of laptop/);
      await desktop.syncOnce();
      await laptop.syncOnce();
      const after = new Map([['Bulk/a/new.txt', sha256('written after the delete')]]);
      assert.deepEqual(filesOf(desktop, 'Bulk'), after);
      assert.deepEqual(filesOf(laptop, 'Bulk'), after);
      const items = await trash();
      assert.equal(items.length, 51, JSON.stringify(items.map((i) => i.path)));
      assert.ok(items.every((i) => i.deletedBy === 'laptop'));
      assert.deepEqual(items.find((i) => i.path === 'Bulk/a')?.kind, 'dir');
      assert.equal(items.filter((i) => /^Bulk\/f\d+\.txt$/.test(i.path)).length, 50);
      assert.deepEqual(await holds(), []);
      assert.equal(ok(await admin.request('GET', '/status')).heldDeletes, 0);
    });

    it('holds 25% of a folder of 40 files or more, not a few files, and nothing once the setting turns holding off', async () => {
      for (let i = 0; i < 60; i++) laptop.write(`Pct/p${i}.txt`, `pct ${i}`);
      await laptop.syncOnce();
      await desktop.syncOnce();
      // 5 of 61 files: not a mass delete.
      for (let i = 0; i < 5; i++) fs.rmSync(laptop.p(`Pct/p${i}.txt`));
      await laptop.syncOnce();
      await desktop.syncOnce();
      assert.deepEqual(await holds(), []);
      assert.equal(desktop.exists('Pct/p0.txt'), false);

      // 20 more: with the 5 just before, 25 of 61 files is a burst, held whole.
      for (let i = 5; i < 25; i++) fs.rmSync(laptop.p(`Pct/p${i}.txt`));
      await laptop.syncOnce();
      const [hold] = await holds();
      assert.equal(hold?.files, 25);
      await desktop.syncOnce();
      assert.equal(desktop.read('Pct/p5.txt'), 'pct 5');
      // Undo gives back the whole burst: the 5 already in the trash come back everywhere.
      ok(await admin.request('POST', `/holds/${hold.id}/undo`));
      await laptop.syncOnce();
      await desktop.syncOnce();
      for (const d of [laptop, desktop]) {
        for (let i = 0; i < 60; i++) assert.equal(d.read(`Pct/p${i}.txt`), `pct ${i}`, `${d.name} p${i}`);
      }

      ok(await admin.request('PUT', '/settings', { deleteHold: { files: 0, percent: 0 } }));
      for (let i = 0; i < 60; i++) fs.rmSync(laptop.p(`Pct/p${i}.txt`));
      await laptop.syncOnce();
      await desktop.syncOnce();
      assert.deepEqual(await holds(), []);
      assert.deepEqual(filesOf(desktop, 'Pct'), new Map());
    });
  });
});
