import assert from 'node:assert/strict';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { forEachDatabase, scenario, tempDir, type Scenario, type TestDevice } from '../helpers/cluster.js';
import { AdminClient, httpsJson } from '../helpers/rawDevice.js';
import { filesOf, ok, refused } from '../helpers/files.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Restoring a folder to a point in time (SAFETY.md E4): a real server
 * process, two real `keepsync sync` devices and the admin API, on every
 * database. Ransomware rewrites every file of a folder on one device; the
 * folder is restored to a time before, and every file comes back byte for
 * byte on both devices while the encrypted content stays as versions.
 */

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
const q = encodeURIComponent;

/** `YYYY-MM-DD HH:MM:SS` in this machine's time zone, as a person types it. */
function localTime(d: Date): string {
  const two = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/**
 * A moment strictly after everything the server has stored so far and
 * strictly before anything stored from now on: the next whole second
 * (what a person can type), once the clock has passed it.
 */
async function aMomentAgo(): Promise<Date> {
  const at = new Date(Math.floor(Date.now() / 1000) * 1000 + 1000);
  await waitFor('the clock to pass the chosen moment', () => Date.now() > at.getTime() + 5, 5_000, 20);
  return at;
}

describe('Restoring a folder to a point in time', function () {
  this.timeout(240_000);

  forEachDatabase((kind) => {
    let s: Scenario;
    let laptop: TestDevice;
    let desktop: TestDevice;
    let admin: AdminClient;

    before(async () => {
      s = await scenario(kind);
      laptop = await s.addDevice('laptop');
      desktop = await s.addDevice('desktop');
      admin = await AdminClient.login(s.server);
      laptop.write('anchor.txt', 'stays');
      await laptop.syncOnce();
      await desktop.syncOnce();
    });
    after(async () => s?.cleanup());
    afterEach(async () => {
      await laptop.stop();
      await desktop.stop();
    });

    const versionsOf = async (p: string): Promise<any[]> => ok(await admin.request('GET', `/folders/Sync/versions?path=${q(p)}`));

    it('brings back every file of a folder that ransomware rewrote, byte for byte on both devices, keeping the encrypted content as versions', async () => {
      // 50 files in nested folders, with whole-second mtimes, moved in at once.
      const staging = tempDir('docs');
      const original = new Map<string, Buffer>();
      for (let i = 0; i < 50; i++) {
        const rel = `${['', 'letters/', 'scans/2026/'][i % 3]}doc${i}.${i % 4 === 0 ? 'bin' : 'txt'}`;
        const content = i % 4 === 0 ? randomBytes(1 + i * 9_000) : Buffer.from(`document ${i}\n`.repeat(1 + i * 50));
        const file = path.join(staging, ...rel.split('/'));
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, content);
        const when = new Date(Date.UTC(2024, 2, 1 + i, 9, 30, 0));
        fs.utimesSync(file, when, when);
        original.set(`Docs/${rel}`, content);
      }
      await laptop.start();
      await desktop.start();
      fs.renameSync(staging, laptop.p('Docs'));
      const want = filesOf(laptop, 'Docs', { mtimes: true });
      assert.equal(want.size, 50);
      await waitFor('50 files on desktop', () => {
        assert.deepEqual(filesOf(desktop, 'Docs', { mtimes: true }), want);
        return true;
      }, 60_000, 100);
      const before = await aMomentAgo();

      // The ransomware: every file encrypted in place, and a note beside them.
      const key = randomBytes(32);
      const encrypted = new Map<string, string>();
      for (const [rel, content] of original) {
        const iv = randomBytes(16);
        const cipher = createCipheriv('aes-256-cbc', key, iv);
        const locked = Buffer.concat([iv, cipher.update(content), cipher.final()]);
        fs.writeFileSync(laptop.p(rel), locked);
        encrypted.set(rel, sha256(locked));
      }
      laptop.write('Docs/HOW_TO_DECRYPT.txt', 'send bitcoin');
      await waitFor('the encrypted files and the note on desktop', () => {
        const seen = filesOf(desktop, 'Docs', { mtimes: true });
        return seen.has('Docs/HOW_TO_DECRYPT.txt') && [...encrypted].every(([rel, h]) => seen.get(rel)?.startsWith(h));
      }, 60_000, 100);

      // Restored from the infected laptop itself, naming the folder and a local time.
      const r = await laptop.run(['restore', laptop.p('Docs'), '--at', localTime(before)]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `restored Docs to ${before.toISOString()}: 50 files brought back, 1 newer file moved to the trash\n`);

      for (const d of [laptop, desktop]) {
        await waitFor(`every file of before on ${d.name}`, () => {
          assert.deepEqual(filesOf(d, 'Docs', { mtimes: true }), want);
          return true;
        }, 60_000, 100);
      }
      for (const [rel, content] of original) {
        assert.ok(fs.readFileSync(desktop.p(rel)).equals(content), `desktop ${rel}`);
        assert.ok(fs.readFileSync(laptop.p(rel)).equals(content), `laptop ${rel}`);
        // Nothing is lost: the encrypted content is a version, behind the restored one.
        const versions = await versionsOf(rel);
        assert.deepEqual([versions[0].hash, versions[0].current], [sha256(content), true], rel);
        assert.ok(versions.some((v) => v.hash === encrypted.get(rel) && !v.current), `${rel}: encrypted content not kept`);
        assert.equal(versions.at(-1).hash, sha256(content), rel);
      }
      const trash = ok(await admin.request('GET', '/folders/Sync/trash'));
      assert.deepEqual(trash.map((i: any) => [i.path, i.kind, i.deletedBy]), [['Docs/HOW_TO_DECRYPT.txt', 'file', 'laptop']]);
      const activity = ok(await admin.request('GET', '/activity'));
      assert.ok(JSON.stringify(activity).includes(`laptop restored Docs to how it was at ${before.toISOString()}`), JSON.stringify(activity).slice(0, 500));
    });

    it('restores the whole folder through the API: a deleted file comes back, an edited one gets its old content, a moved one its old content at its new place, a newer one goes to the trash', async () => {
      laptop.write('Plans/kept.txt', 'kept');
      laptop.write('Plans/move-me.txt', 'before the move');
      laptop.write('Plans/edited.txt', 'first draft');
      laptop.write('Plans/deep/deleted.txt', 'deleted later');
      await laptop.syncOnce();
      await desktop.syncOnce();
      const before = await aMomentAgo();
      const contents = (d: TestDevice) => new Map([...filesOf(d, '', { mtimes: true })].map(([p, v]) => [p, v.split(' ')[0]]));
      const then = contents(desktop);
      // A file's history follows it when it moves: it is restored where it is now.
      then.set('/Plans/moved.txt', then.get('/Plans/move-me.txt')!);
      then.delete('/Plans/move-me.txt');
      fs.renameSync(laptop.p('Plans/move-me.txt'), laptop.p('Plans/moved.txt'));
      await laptop.syncOnce();
      laptop.write('Plans/moved.txt', 'edited after the move');
      laptop.write('Plans/edited.txt', 'second draft');
      fs.rmSync(laptop.p('Plans/deep'), { recursive: true });
      laptop.write('Plans/new.txt', 'written after');
      await laptop.syncOnce();
      await desktop.syncOnce();
      assert.equal(desktop.exists('Plans/deep/deleted.txt'), false);

      // Not without the admin session.
      refused(await httpsJson(`${s.server.url}/api/v1/folders/Sync/restore`, 'POST', { at: before.toISOString() }), 401, /./);
      assert.equal(desktop.read('Plans/edited.txt'), 'second draft');
      const body = ok(await admin.request('POST', '/folders/Sync/restore', { at: before.toISOString() }));
      assert.equal(body.restored, 3, JSON.stringify(body));
      assert.equal(body.trashed, 1, JSON.stringify(body));
      assert.match(body.message, /^restored the whole folder to .*: 3 files brought back, 1 newer file moved to the trash, \d+ already as then$/);
      await laptop.syncOnce();
      await desktop.syncOnce();
      for (const d of [laptop, desktop]) assert.deepEqual(contents(d), then, d.name);
      assert.equal(desktop.read('Plans/edited.txt'), 'first draft');
      assert.equal(desktop.read('Plans/moved.txt'), 'before the move');
      assert.deepEqual((await versionsOf('Plans/edited.txt')).map((v) => v.hash), ['first draft', 'second draft', 'first draft'].map(sha256));
      // The trash lists what is still gone: the deleted folder came back, the newer file went in.
      const trash = ok(await admin.request('GET', '/folders/Sync/trash'));
      assert.deepEqual(trash.map((i: any) => [i.path, i.deletedBy]).sort(), [['Docs/HOW_TO_DECRYPT.txt', 'laptop'], ['Plans/new.txt', 'admin']]);

      // Restoring to the same moment again changes nothing.
      const again = ok(await admin.request('POST', '/folders/Sync/restore', { path: 'Plans', at: before.getTime() }));
      assert.deepEqual([again.restored, again.trashed], [0, 0]);
    });

    it('refuses a time in the future or before the folder had files, and a path never there, with one line saying what to do', async () => {
      refused(await admin.request('POST', '/folders/Sync/restore', { path: 'Plans', at: new Date(Date.now() + 3_600_000).toISOString() }), 400, /in the future/);
      refused(await admin.request('POST', '/folders/Sync/restore', { path: 'Plans', at: '2001-01-01T00:00:00Z' }), 404, /pick a later time/);
      refused(await admin.request('POST', '/folders/Sync/restore', { path: 'Nowhere', at: Date.now() - 1000 }), 404, /never in Sync/);
      refused(await admin.request('POST', '/folders/Sync/restore', { path: 'Plans', at: 'yesterday' }), 400, /must be a date and time/);
      refused(await admin.request('POST', '/folders/Sync/restore', { path: 'Plans', at: Date.now() - 1000, version: 3 }), 400, /not both/);

      const bad = await laptop.run(['restore', 'Plans', '--at', 'last tuesday']);
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr.split('\n')[0], /^keepsync: --at must be a date and time, like "2026-12-01 14:00"/);
      const early = await laptop.run(['restore', 'Plans', '--at', '2001-01-01 00:00']);
      assert.equal(early.code, 1, early.stderr);
      assert.equal(early.stderr.trim().split('\n').length, 1, early.stderr);
      assert.match(early.stderr, /^keepsync: no file of Plans was on the server at 2001-.*; pick a later time\n$/);
    });
  });
});
