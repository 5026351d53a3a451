import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { TestDevice, forEachDatabase, sortedTree } from '../helpers/cluster.js';
import type { TestDatabase } from '../helpers/databases.js';
import { InProcessServer } from '../helpers/inProcessServer.js';
import { AdminClient } from '../helpers/rawDevice.js';
import { ContentLog, serverTree, sha256 } from '../helpers/serverContent.js';
import { waitFor } from '../helpers/wait.js';

/*
 * A device offline for months while the others delete and the server purges
 * (SAFETY.md C3): tombstones outlive the absence, so what was deleted while
 * it was away is deleted on it too, and nothing it changed meanwhile is lost,
 * even when the server no longer holds the version its edit was made on.
 */

const DAY = 24 * 60 * 60 * 1000;

/** Pairs a device with the in-process server. */
async function paired(server: InProcessServer, devices: TestDevice[], name: string): Promise<TestDevice> {
  const d = new TestDevice(name);
  devices.push(d);
  const r = await d.pair(await server.pairingLink());
  assert.equal(r.code, 0, r.stderr);
  return d;
}

/** `content` with `patch` written over it at `at`: an edit of part of a large file (the device sends its chunk list as a delta). */
function patched(content: Buffer, at: number, patch: Buffer): Buffer {
  const out = Buffer.from(content);
  patch.copy(out, at);
  return out;
}

describe('A device offline for months (C3)', function () {
  this.timeout(180_000);

  forEachDatabase((kind) => {
    let db: TestDatabase;
    let server: InProcessServer;
    const devices: TestDevice[] = [];

    beforeEach(async () => {
      db = await kind.create();
      server = await new InProcessServer(db).start();
    });
    afterEach(async () => {
      for (const d of devices.splice(0)) await d.cleanup();
      await server.cleanup();
      await db.drop();
    });

    it('comes back to find the others\' deletes applied and keeps every change it made, after the trash was purged and collected', async () => {
      // Pairing codes expire by the server's clock: pair before moving it.
      const laptop = await paired(server, devices, 'laptop');
      const desktop = await paired(server, devices, 'desktop');
      let admin = await AdminClient.login(server);
      const log = new ContentLog();
      const big = randomBytes(1_500_000);
      const first: Record<string, string | Buffer> = {
        'keep.txt': 'nobody touches this',
        'notes.txt': 'notes v1',
        'gone.txt': 'deleted on the desktop',
        'old/x.txt': 'old x',
        'old/deep/y.txt': 'old y',
        'shared/s.txt': 'shared s',
        'docs/report.bin': big,
        'docs/small.txt': 'small, edited on the laptop, deleted on the desktop',
      };
      for (const [p, c] of Object.entries(first)) laptop.write(p, c);
      await laptop.syncOnce();
      await desktop.syncOnce();
      await laptop.start();

      // The laptop goes away (its process stopped), holding changes it never sent.
      await laptop.stop('SIGKILL');
      const edits: Record<string, string | Buffer> = {
        'notes.txt': 'notes v2, written offline',
        'docs/report.bin': patched(big, 700_000, Buffer.from('a paragraph rewritten on the laptop while offline')),
        'docs/small.txt': 'small, edited on the laptop while offline',
        'new.txt': 'a new file made offline',
        'new/deep/file.bin': randomBytes(200_000),
        'shared/added.txt': 'added offline to a folder the desktop deletes',
      };
      for (const [p, c] of Object.entries(edits)) laptop.write(p, log.add(p, c));

      // Meanwhile the desktop deletes files and folders, some of which the laptop changed.
      for (const p of ['gone.txt', 'old', 'shared', 'docs']) fs.rmSync(desktop.p(p), { recursive: true });
      await desktop.syncOnce();
      assert.deepEqual(sortedTree(await serverTree(admin)), sortedTree(new Map([['keep.txt', sha256('nobody touches this')], ['notes.txt', sha256('notes v1')]])));

      // Months pass: the trash is purged, earlier versions expire, their chunks are collected.
      await server.ageChunks(2 * DAY);
      server.offsetMs = 120 * DAY;
      const report = await server.maintain();
      admin = await AdminClient.login(server); // the session from months ago has expired
      assert.ok(report.retention.trashItems >= 4, JSON.stringify(report));
      assert.ok(report.collection.removed > 0, JSON.stringify(report));
      const trash = await admin.request('GET', '/folders/Sync/trash');
      assert.equal(trash.status, 200, JSON.stringify(trash.body));
      assert.deepEqual(Array.isArray(trash.body) ? trash.body : trash.body.items, [], 'the trash is empty');

      // The laptop comes back.
      await laptop.start();
      const expected = new Map<string, string>([
        ['keep.txt', sha256('nobody touches this')],
        ['notes.txt', sha256(edits['notes.txt'])],
        ['docs', '/'],
        ['docs/report.bin', sha256(edits['docs/report.bin'])],
        ['docs/small.txt', sha256(edits['docs/small.txt'])],
        ['new.txt', sha256(edits['new.txt'])],
        ['new', '/'],
        ['new/deep', '/'],
        ['new/deep/file.bin', sha256(edits['new/deep/file.bin'])],
        ['shared', '/'],
        ['shared/added.txt', sha256(edits['shared/added.txt'])],
      ]);
      const hashes = (d: TestDevice) => new Map([...d.tree()].map(([p, v]) => [p, v === '/' ? '/' : sha256(Buffer.from(v, 'base64'))]));
      let last = '';
      await waitFor('the laptop to send what it changed and take the deletes', async () => {
        const [server, local] = [await serverTree(admin), hashes(laptop)];
        last = JSON.stringify({ server: sortedTree(server), laptop: sortedTree(local) });
        return JSON.stringify(sortedTree(server)) === JSON.stringify(sortedTree(expected)) && JSON.stringify(sortedTree(local)) === JSON.stringify(sortedTree(expected));
      }, 60_000, 100).catch((err: Error) => {
        throw new Error(`${err.message}\n${last}\nlaptop: ${laptop.live?.stderr.slice(-3000)}`);
      });
      // The edit of report.bin was sent as a change against a version purged since: refused once, then sent whole.
      const refusals = (laptop.live?.stderr ?? '').split('\n').filter((l) => /unknown version/.test(l));
      assert.ok(refusals.length <= 1, refusals.join('\n'));
      await laptop.stop();
      await desktop.syncOnce();
      assert.deepEqual(sortedTree(hashes(desktop)), sortedTree(expected));
      assert.ok(fs.readFileSync(desktop.p('docs/report.bin')).equals(edits['docs/report.bin'] as Buffer));
      // Everything the laptop wrote while offline is on the server (what the desktop deleted was purged on purpose).
      await log.assertNothingLost(admin);
      const verify = await server.verify();
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    });
  });
});
