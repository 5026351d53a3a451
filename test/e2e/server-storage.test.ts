import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { TestDevice, TestServer, forEachDatabase, sortedTree, type Scenario, scenario } from '../helpers/cluster.js';
import type { TestDatabase } from '../helpers/databases.js';
import { Proc } from '../helpers/processes.js';
import { AdminClient } from '../helpers/rawDevice.js';
import { ContentLog, serverTree, sha256 } from '../helpers/serverContent.js';
import { waitFor } from '../helpers/wait.js';

/*
 * The server's own storage missing or read-only (SAFETY.md E3). A server
 * whose database refers to content its store no longer holds (a data
 * directory restored without its chunks, a disk not mounted) refuses to
 * start rather than serve an index it cannot back; a read-only store keeps
 * serving downloads while uploads fail with a clear error, and devices keep
 * their files and send them once the store can be written again.
 */

/** A command that failed with exit 1 and one line on stderr matching `pattern`. */
function failedWith(code: number | null, stderr: string, pattern: RegExp): void {
  assert.equal(code, 1, stderr);
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `not one line:\n${stderr}`);
  assert.match(lines[0], pattern);
}

async function startFails(server: TestServer): Promise<string> {
  const p = new Proc(server.args);
  const code = await p.exited;
  failedWith(code, p.stderr, /^keepsync: the content store .*chunks is missing or empty, but the database refers to \d+ chunks; mount the disk that holds it or restore it from a backup/);
  return p.stderr;
}

describe('The server\'s own storage missing or read-only (E3)', function () {
  this.timeout(120_000);

  forEachDatabase((kind) => {
    it('refuses to start when its content store is missing or empty, and devices keep their files', async () => {
      const s: Scenario = await scenario(kind);
      try {
        const log = new ContentLog();
        const laptop = await s.addDevice('laptop');
        const desktop = await s.addDevice('desktop');
        laptop.write('a.txt', log.add('a.txt', 'a'));
        laptop.write('docs/b.txt', log.add('docs/b.txt', 'b'));
        await laptop.syncOnce();
        await desktop.syncOnce();
        const before = sortedTree(desktop.tree());
        await s.server.stop();

        const chunks = path.join(s.server.dataDir, 'chunks');
        const aside = path.join(s.server.root, 'chunks-aside');
        fs.renameSync(chunks, aside);
        await startFails(s.server);
        assert.equal(fs.existsSync(chunks), false, 'the server made a new, empty store');
        fs.mkdirSync(chunks); // an empty mount point
        await startFails(s.server);

        // Devices cannot reach it: they say so and keep everything.
        const r = await desktop.run(['sync', '--once', '--quiet']);
        assert.equal(r.code, 1, r.stderr);
        assert.deepEqual(sortedTree(desktop.tree()), before);

        fs.rmdirSync(chunks);
        fs.renameSync(aside, chunks);
        await s.server.start();
        desktop.write('c.txt', log.add('c.txt', 'c'));
        await desktop.syncOnce();
        await laptop.syncOnce();
        assert.deepEqual(sortedTree(laptop.tree()), sortedTree(desktop.tree()));
        const admin = await AdminClient.login(s.server);
        assert.equal((await serverTree(admin)).get('a.txt'), sha256('a'));
        await log.assertNothingLost(admin);
      } finally {
        await s.cleanup();
      }
    });

    describe('on a store that becomes read-only', () => {
      let db: TestDatabase;
      let server: TestServer;
      const devices: TestDevice[] = [];
      let chunks = '';

      beforeEach(async function () {
        db = await kind.create();
        server = new TestServer(db);
        chunks = path.join(server.dataDir, 'chunks');
        fs.mkdirSync(chunks, { recursive: true });
        try {
          execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', chunks], { stdio: 'pipe' });
          execFileSync('mount', ['-o', 'remount,ro', chunks], { stdio: 'pipe' });
          execFileSync('mount', ['-o', 'remount,rw', chunks], { stdio: 'pipe' });
        } catch (err) {
          console.log(`      (skipped: cannot mount a tmpfs and make it read-only here: ${String(err).split('\n')[0]})`);
          chunks = '';
          await server.cleanup();
          await db.drop();
          this.skip();
        }
        await server.start();
      });
      afterEach(async () => {
        for (const d of devices.splice(0)) await d.cleanup();
        if (chunks) {
          await server.stop();
          execFileSync('umount', ['-l', chunks]);
          await server.cleanup();
          await db.drop();
        }
      });

      async function device(name: string): Promise<TestDevice> {
        const d = new TestDevice(name);
        devices.push(d);
        const r = await d.pair(await server.pairingLink());
        assert.equal(r.code, 0, r.stderr);
        return d;
      }

      it('refuses uploads with a clear error, keeps serving downloads, and takes them once writable again', async () => {
        const admin = await AdminClient.login(server);
        const log = new ContentLog();
        const laptop = await device('laptop');
        const desktop = await device('desktop');
        laptop.write('a.txt', log.add('a.txt', 'before the disk went read-only'));
        await laptop.syncOnce();

        execFileSync('mount', ['-o', 'remount,ro', chunks]);
        laptop.write('b.txt', log.add('b.txt', 'written while the store is read-only'));
        laptop.write('a.txt', log.add('a.txt', 'a edited while the store is read-only'));
        laptop.write('empty-dir/.keep', '');
        const r = await laptop.run(['sync', '--once', '--quiet']);
        failedWith(r.code, r.stderr, /^keepsync: the server's content store .* is read-only; nothing new can be stored until its admin fixes it/);
        assert.equal(laptop.read('b.txt'), 'written while the store is read-only');
        assert.equal(laptop.read('a.txt'), 'a edited while the store is read-only');
        assert.equal((await serverTree(admin)).get('a.txt'), sha256('before the disk went read-only'));
        assert.equal((await serverTree(admin)).has('b.txt'), false);

        // Downloads still work, and a restart on the read-only store serves with a warning.
        await desktop.syncOnce();
        assert.equal(desktop.read('a.txt'), 'before the disk went read-only');
        await server.restart();
        assert.match(server.proc.stderr, /warning: the server's content store .* is read-only/);
        await desktop.syncOnce();

        // Live: the device reports, waits, and sends everything once the store is writable.
        await laptop.start();
        await waitFor('the laptop to report the read-only store', () => /content store .* is read-only.*; retrying in/.test(laptop.live!.stderr), 30_000);
        assert.equal(laptop.live!.running, true, laptop.live!.stderr);
        execFileSync('mount', ['-o', 'remount,rw', chunks]);
        const admin2 = await AdminClient.login(server);
        await waitFor('the laptop\'s changes on the server', async () => (await serverTree(admin2)).get('b.txt') === sha256('written while the store is read-only'), 60_000);
        await waitFor('the laptop\'s edit on the server', async () => (await serverTree(admin2)).get('a.txt') === sha256('a edited while the store is read-only'), 30_000);
        await laptop.stop();
        await desktop.syncOnce();
        assert.equal(desktop.read('a.txt'), 'a edited while the store is read-only');
        await log.assertNothingLost(admin2);
        const verify = await new Proc(['server', 'verify', '--data', server.dataDir, ...(db.url ? ['--database-url', db.url] : [])]).exited;
        assert.equal(verify, 0);
      });
    });
  });
});
