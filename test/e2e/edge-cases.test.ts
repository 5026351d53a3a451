import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { forEachDatabase, scenario, sortedTree, type Scenario, type TestDevice } from '../helpers/cluster.js';
import { keepsync } from '../helpers/processes.js';
import { AdminClient } from '../helpers/rawDevice.js';
import { ContentLog, serverTree, sha256 } from '../helpers/serverContent.js';
import { waitFor } from '../helpers/wait.js';

/*
 * File-system edge cases on a device (SAFETY.md D1, D3, D4, A6, E1), with a
 * real server and real `keepsync` processes on every database: a file
 * rewritten while it uploads, a file the client may not read, a disk that
 * fills up during a download, names that differ only in case or Unicode
 * normalization, and a synced folder moved away or swapped for an empty one.
 * Each test checks that the server still holds every content written, and
 * that the devices converge.
 */

/** Syncs devices in turn until they agree (each `--once` run settles its side). */
async function settle(...devices: TestDevice[]): Promise<void> {
  for (const d of devices) await d.syncOnce();
  for (const d of devices) await d.syncOnce();
}

/** Every `.keepsync-*` file left under `dir`. */
function leftovers(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((p) => path.basename(p).startsWith('.keepsync-'));
}

function chunkCount(dataDir: string): number {
  const root = path.join(dataDir, 'chunks');
  if (!fs.existsSync(root)) return 0;
  return fs.readdirSync(root).filter((d) => d.length === 2).reduce((n, d) => n + fs.readdirSync(path.join(root, d)).length, 0);
}

/**
 * What a stalled upload leaves to look at on the server: new chunks waiting
 * in `tmp/` to be made durable and renamed, and syncs of the file system
 * running (the timed-out wait itself tells the device's state and messages).
 */
function uploadDiagnosis(dataDir: string): string {
  const tmp = path.join(dataDir, 'chunks', 'tmp');
  const waiting = fs.existsSync(tmp) ? fs.readdirSync(tmp).length : 0;
  const syncs = execFileSync('ps', ['-eo', 'etimes,args']).toString().split('\n').filter((l) => l.includes('sync --file-system') && !l.includes('while read'));
  return `chunks waiting in tmp/: ${waiting}; syncs running (seconds, command): ${syncs.map((l) => l.trim()).join(' | ') || 'none'}`;
}

/** A command that failed with exit 1 and one line on stderr matching `pattern`. */
function failedWith(r: { code: number | null; stderr: string }, pattern: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `not one line:\n${r.stderr}`);
  assert.match(lines[0], pattern);
}

const NOBODY = 65534;

describe('File-system edge cases on a device', function () {
  this.timeout(180_000);

  forEachDatabase((kind) => {
    let s: Scenario;
    let admin: AdminClient;
    let log: ContentLog;
    let laptop: TestDevice;
    let desktop: TestDevice;
    const mounts: string[] = [];

    beforeEach(async () => {
      s = await scenario(kind);
      admin = await AdminClient.login(s.server);
      log = new ContentLog();
      laptop = await s.addDevice('laptop');
      desktop = await s.addDevice('desktop');
    });
    afterEach(async () => {
      await laptop.stop('SIGKILL');
      await desktop.stop('SIGKILL');
      for (const m of mounts.splice(0)) execFileSync('umount', ['-l', m]);
      await s.cleanup();
    });

    it('never lets a file rewritten during its upload reach the server torn, and converges to the latest content (D1)', async () => {
      const size = 32 * 1024 * 1024;
      const v1 = randomBytes(size);
      const v2 = randomBytes(size);
      await laptop.start();
      fs.writeFileSync(laptop.p('big.bin'), v1);
      await waitFor('the upload to start', () => chunkCount(s.server.dataDir) >= 2, 60_000, 5).catch((err: Error) => {
        throw new Error(`${err.message}; ${uploadDiagnosis(s.server.dataDir)}`);
      });
      // Rewritten in place with the same size while its chunks are on their way.
      const fd = fs.openSync(laptop.p('big.bin'), 'r+');
      fs.writeSync(fd, log.add('big.bin', v2) as Buffer, 0, size, 0);
      fs.closeSync(fd);
      await waitFor('the latest content on the server', async () => (await serverTree(admin)).get('big.bin') === sha256(v2), 90_000, 250);
      await laptop.stop();

      const versions: Array<{ hash: string }> = (await admin.request('GET', '/folders/Sync/versions?path=big.bin')).body;
      for (const v of versions) assert.ok([sha256(v1), sha256(v2)].includes(v.hash), `a version that was never a whole file: ${v.hash}`);
      await desktop.syncOnce();
      assert.equal(sha256(fs.readFileSync(desktop.p('big.bin'))), sha256(v2));
      assert.equal(sha256(fs.readFileSync(laptop.p('big.bin'))), sha256(v2));
      assert.deepEqual([...leftovers(laptop.dir), ...leftovers(desktop.dir)], []);
      await log.assertNothingLost(admin);
    });

    it('sends an edit that keeps size, modification time and inode, of a file it uploaded and of one it downloaded (D1)', async () => {
      /** Rewrites a file in place with other bytes of the same size and puts its modification time back. */
      const sneakyEdit = (file: string, content: string) => {
        const before = fs.statSync(file);
        const fd = fs.openSync(file, 'r+');
        fs.writeSync(fd, content, 0);
        fs.closeSync(fd);
        fs.utimesSync(file, before.atimeMs / 1000, before.mtimeMs / 1000);
        const after = fs.statSync(file);
        assert.deepEqual([after.size, after.mtimeMs, after.ino], [before.size, before.mtimeMs, before.ino], 'the edit keeps what a stat compares');
      };
      laptop.write('mine.txt', log.add('mine.txt', 'AAAA first'));
      desktop.write('theirs.txt', log.add('theirs.txt', 'CCCC first'));
      // Whole seconds, so that the edit below can put them back exactly.
      fs.utimesSync(laptop.p('mine.txt'), 1_700_000_000, 1_700_000_000);
      fs.utimesSync(desktop.p('theirs.txt'), 1_700_000_000, 1_700_000_000);
      await settle(laptop, desktop);
      assert.equal(laptop.read('theirs.txt'), 'CCCC first');

      sneakyEdit(laptop.p('mine.txt'), log.add('mine.txt', 'BBBB first') as string);
      sneakyEdit(laptop.p('theirs.txt'), log.add('theirs.txt', 'DDDD first') as string);
      await settle(laptop, desktop);
      assert.equal(desktop.read('mine.txt'), 'BBBB first');
      assert.equal(desktop.read('theirs.txt'), 'DDDD first');
      const tree = await serverTree(admin);
      assert.equal(tree.get('mine.txt'), sha256('BBBB first'));
      assert.equal(tree.get('theirs.txt'), sha256('DDDD first'));
      await log.assertNothingLost(admin);
    });

    it('skips a file it cannot read, never treating it as deleted, and syncs it once it can (D4)', async function () {
      // Tests run as root, which reads any file: the device runs as an ordinary user instead.
      try {
        execFileSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, '-e', '0']);
      } catch {
        this.skip();
      }
      const asUser = async (args: string[]) => keepsync([...args, '--home', laptop.home], { uid: NOBODY, gid: NOBODY });
      const syncAsUser = async () => {
        const r = await asUser(['sync', '--once', '--quiet']);
        assert.equal(r.code, 0, r.stderr);
        return r;
      };
      laptop.write('open.txt', log.add('open.txt', 'readable'));
      laptop.write('secret.txt', log.add('secret.txt', 'secret v1'));
      laptop.write('private/inside.txt', log.add('private/inside.txt', 'in a folder that becomes unreadable'));
      execFileSync('chown', ['-R', `${NOBODY}:${NOBODY}`, laptop.root]);
      await syncAsUser();
      await desktop.syncOnce();
      assert.equal(desktop.read('secret.txt'), 'secret v1');

      // Edited, then made unreadable for its owner; meanwhile the desktop edits it too.
      laptop.write('secret.txt', log.add('secret.txt', 'secret v2, unreadable'));
      fs.chmodSync(laptop.p('secret.txt'), 0o000);
      laptop.write('open.txt', log.add('open.txt', 'readable v2'));
      execFileSync('chown', ['-R', `${NOBODY}:${NOBODY}`, laptop.dir]);
      fs.chmodSync(laptop.p('private'), 0o000);
      desktop.write('secret.txt', log.add('secret.txt', 'desktop edit'));
      await desktop.syncOnce();
      const r = await syncAsUser();
      assert.match(r.stderr, /cannot read secret\.txt/);

      let tree = await serverTree(admin);
      assert.equal(tree.get('open.txt'), sha256('readable v2'));
      assert.equal(tree.get('secret.txt'), sha256('desktop edit'), 'the unreadable file was deleted or overwritten on the server');
      assert.equal(tree.get('private/inside.txt'), sha256('in a folder that becomes unreadable'), 'a file in an unreadable folder was deleted');
      assert.deepEqual((await admin.request('GET', '/folders/Sync/trash')).body, []);
      fs.chmodSync(laptop.p('secret.txt'), 0o600);
      fs.chmodSync(laptop.p('private'), 0o700);
      assert.equal(laptop.read('secret.txt'), 'secret v2, unreadable', 'the unreadable file was overwritten');

      // Readable again: it goes up, and neither edit is lost.
      await syncAsUser();
      await syncAsUser();
      await desktop.syncOnce();
      tree = await serverTree(admin);
      assert.equal(tree.get('secret.txt'), sha256('desktop edit'));
      assert.ok([...tree.values()].includes(sha256('secret v2, unreadable')), `the laptop's edit is not on the server: ${[...tree.keys()].join(', ')}`);
      assert.deepEqual(sortedTree(desktop.tree()), sortedTree(laptop.tree()));

      // Live: a folder becomes unreadable while the device runs and the server changes inside it.
      await laptop.start({ uid: NOBODY, gid: NOBODY });
      fs.chmodSync(laptop.p('private'), 0o000);
      const since = Date.now();
      desktop.write('private/inside.txt', log.add('private/inside.txt', 'edited while the laptop could not look'));
      desktop.write('private/new.txt', log.add('private/new.txt', 'new while the laptop could not look'));
      await desktop.syncOnce();
      await waitFor('the laptop to go through the change', () => {
        const st = JSON.parse(fs.readFileSync(path.join(laptop.home, 'state.json'), 'utf8'));
        return st.connected && st.lastSyncAt && Date.parse(st.lastSyncAt) > since + 200;
      });
      tree = await serverTree(admin);
      assert.equal(tree.get('private/inside.txt'), sha256('edited while the laptop could not look'));
      assert.equal(tree.get('private/new.txt'), sha256('new while the laptop could not look'));
      assert.deepEqual((await admin.request('GET', '/folders/Sync/trash')).body, []);
      fs.chmodSync(laptop.p('private'), 0o700);
      fs.utimesSync(laptop.p('private'), new Date(), new Date());
      await waitFor('the laptop to catch up', () => laptop.read('private/new.txt') === 'new while the laptop could not look', 30_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${laptop.live?.stderr}`);
      });
      assert.equal(laptop.read('private/inside.txt'), 'edited while the laptop could not look');
      await laptop.stop();
      assert.deepEqual(leftovers(laptop.dir), []);
      await log.assertNothingLost(admin);
    });

    it('leaves no partial file when the disk fills up during a download and finishes once there is room (D3)', async () => {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', desktop.dir]);
      mounts.push(desktop.dir);
      desktop.write('.keepsyncignore', log.add('.keepsyncignore', 'filler.bin\n'));
      desktop.write('filler.bin', randomBytes(10 * 1024 * 1024));
      await desktop.syncOnce();
      laptop.write('small.txt', log.add('small.txt', 'small'));
      // Written at the same time as the big file: some of them meet the disk full, and still fit once its temporary file is gone.
      const smalls = Array.from({ length: 30 }, (_, i) => `smalls/s${i}.bin`);
      for (const p of smalls) laptop.write(p, log.add(p, randomBytes(64 * 1024)));
      laptop.write('big/big.bin', log.add('big/big.bin', randomBytes(8 * 1024 * 1024)));
      await laptop.syncOnce();

      const r = await desktop.run(['sync', '--once', '--quiet']);
      failedWith(r, /no space left/i);
      assert.deepEqual(leftovers(desktop.dir), []);
      assert.equal(desktop.read('small.txt'), 'small');
      for (const p of smalls) assert.equal(desktop.exists(p), true, `${p} was not written though it fits`);
      assert.equal(desktop.exists('big/big.bin'), false);

      // Live, the failure is reported and retried, leaving nothing behind; with room again it completes.
      await desktop.start();
      await waitFor('the live client to report the full disk', () => /no space left/.test(desktop.live!.stderr), 30_000);
      assert.equal(desktop.live!.running, true, desktop.live!.stderr);
      assert.deepEqual(leftovers(desktop.dir), []);
      fs.rmSync(desktop.p('filler.bin'));
      await waitFor('the big file to arrive', () => desktop.exists('big/big.bin'), 60_000);
      await desktop.stop();
      assert.equal(sha256(fs.readFileSync(desktop.p('big/big.bin'))), sha256(fs.readFileSync(laptop.p('big/big.bin'))));
      assert.deepEqual(leftovers(desktop.dir), []);
      await settle(laptop, desktop);
      assert.deepEqual(sortedTree(desktop.tree()), sortedTree(laptop.tree()));
      await log.assertNothingLost(admin);
    });

    it('keeps names that differ only in case or Unicode normalization apart, losing neither (A6)', async () => {
      const nfd = 'cafe\u0301.txt';
      const nfc = 'caf\u00e9.txt';
      laptop.write('Report.txt', log.add('Report.txt', 'upper'));
      laptop.write('report.txt', log.add('report.txt', 'lower'));
      laptop.write(nfd, log.add(nfc, 'written under an NFD name'));
      await settle(laptop, desktop);
      assert.equal(desktop.read('Report.txt'), 'upper');
      assert.equal(desktop.read('report.txt'), 'lower');
      assert.equal(desktop.read(nfc), 'written under an NFD name', JSON.stringify([...desktop.tree().keys(), ...laptop.tree().keys()].map((k) => escape(k))));

      // The desktop grows a second name for the same wire path; the laptop edits the first.
      desktop.write(nfd, 'a twin under the NFD name');
      laptop.write(nfd, log.add(nfc, 'edited on the laptop'));
      await laptop.syncOnce();
      const r = await desktop.run(['sync', '--once'], 30_000);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /differ only in Unicode normalization/);
      await laptop.syncOnce();
      assert.equal(desktop.read(nfc), 'edited on the laptop');
      assert.equal(desktop.read(nfd), 'a twin under the NFD name');
      assert.equal(laptop.read(nfd), 'edited on the laptop');
      assert.equal((await serverTree(admin)).get(nfc), sha256('edited on the laptop'));
      await log.assertNothingLost(admin);
    });

    it('stops without deleting anything when the synced folder is moved away or replaced, running or not (E1)', async () => {
      laptop.write('a.txt', log.add('a.txt', 'a'));
      laptop.write('b/c.txt', log.add('b/c.txt', 'c'));
      await settle(laptop, desktop);
      const before = await serverTree(admin);
      const aside = `${laptop.dir}-aside`;
      const stopped = async (what: string) => {
        const code = await Promise.race([laptop.live!.exited, new Promise((r) => setTimeout(() => r('still running'), 30_000))]);
        assert.equal(code, 1, `${what}: the client did not stop`);
        failedWith({ code: 1, stderr: laptop.live!.stderr }, /is empty or missing; not propagating deletions/);
        laptop.live = undefined;
        assert.deepEqual(sortedTree(await serverTree(admin)), sortedTree(before), what);
        assert.deepEqual((await admin.request('GET', '/folders/Sync/trash')).body, [], what);
      };

      await laptop.start();
      fs.renameSync(laptop.dir, aside);
      await stopped('moved away while running');

      fs.renameSync(aside, laptop.dir);
      await laptop.start();
      fs.renameSync(laptop.dir, aside);
      fs.mkdirSync(laptop.dir);
      await stopped('replaced by an empty folder while running');

      fs.rmSync(laptop.dir, { recursive: true });
      failedWith(await laptop.run(['sync', '--once', '--quiet']), /is empty or missing; not propagating deletions/);
      fs.mkdirSync(laptop.dir);
      failedWith(await laptop.run(['sync', '--once', '--quiet']), /is empty or missing; not propagating deletions/);
      assert.deepEqual(sortedTree(await serverTree(admin)), sortedTree(before));

      // The real folder back in place: sync resumes with nothing lost.
      fs.rmSync(laptop.dir, { recursive: true });
      fs.renameSync(aside, laptop.dir);
      laptop.write('a.txt', log.add('a.txt', 'a v2'));
      await settle(laptop, desktop);
      assert.equal(desktop.read('a.txt'), 'a v2');
      assert.equal(desktop.read('b/c.txt'), 'c');
      await log.assertNothingLost(admin);
    });
  });
});
