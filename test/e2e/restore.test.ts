import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { forEachDatabase, scenario, tempDir, type Scenario, type TestDevice } from '../helpers/cluster.js';
import { AdminClient, httpsJson, type HttpAnswer } from '../helpers/rawDevice.js';
import { filesOf, ok } from '../helpers/files.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Versions and the trash (SPEC §3, §4, §6; issue 3): a real server process,
 * two real `keepsync` devices and the admin API, on every database. Nothing
 * deleted or overwritten is lost, a folder is one trash item and comes back
 * whole, byte for byte and with its modification times, on every device.
 */

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/** Syncs devices in turn until they agree (each `--once` run settles its side). */
async function settle(...devices: TestDevice[]): Promise<void> {
  for (const d of devices) await d.syncOnce();
  for (const d of devices) await d.syncOnce();
}

/** A refusal: the status and one line saying what went wrong, no stack. */
function refused(r: HttpAnswer, status: number, what: string): void {
  assert.equal(r.status, status, `${what}: answered ${r.status}: ${JSON.stringify(r.body)}`);
  assert.equal(typeof r.body?.error, 'string', `${what}: no {error}: ${JSON.stringify(r.body)}`);
  assert.ok(!r.body.error.includes('\n') && !/\bat .*\.(ts|js):\d+/.test(r.body.error), `${what}: ${r.body.error}`);
}

/** A failed command: the exit code and exactly one line on stderr. */
function failed(r: { code: number; stderr: string; stdout: string }, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, `exit ${r.code}: ${r.stdout}${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('Run "keepsync help"'));
  assert.equal(lines.length, 1, `not one line:\n${r.stderr}`);
  assert.match(lines[0], pattern);
}

async function json(d: TestDevice, args: string[]): Promise<any> {
  const r = await d.run([...args, '--json']);
  assert.equal(r.code, 0, `keepsync ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const q = encodeURIComponent;

describe('Versions and trash', function () {
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
      // Deleting a 200-file folder here must reach the other device at once: no holding (hold.test.ts holds).
      ok(await admin.request('PUT', '/settings', { deleteHold: { files: 0, percent: 0 } }));
      // A file no test deletes: emptying the folder would stop the devices (root guard).
      laptop.write('anchor.txt', 'stays');
      await settle(laptop, desktop);
    });
    after(async () => s?.cleanup());
    afterEach(async () => {
      await laptop.stop();
      await desktop.stop();
    });

    const trash = async (): Promise<any[]> => ok(await admin.request('GET', '/folders/Sync/trash'));

    it('keeps a deleted folder of 200 files as one trash item and restores it whole, live, on both devices', async () => {
      // Built beside the folder with old mtimes, then moved in at once.
      const staging = tempDir('staging');
      const want = new Map<string, string>();
      let bytes = 0;
      for (let i = 0; i < 200; i++) {
        const rel = `sub${String(i % 20).padStart(2, '0')}/file${i}.txt`;
        const content = `file ${i} `.repeat(1 + (i % 37) * 13);
        const file = path.join(staging, ...rel.split('/'));
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, content);
        const when = new Date(Date.UTC(2020, 0, 1 + i, 12, 0, 0));
        fs.utimesSync(file, when, when);
        want.set(`Projects/${rel}`, `${sha256(content)} ${when.getTime()}`);
        bytes += Buffer.byteLength(content);
      }
      fs.mkdirSync(path.join(staging, 'empty', 'inner'), { recursive: true });
      await laptop.start();
      await desktop.start();
      fs.renameSync(staging, laptop.p('Projects'));
      await waitFor('200 files on desktop', () => filesOf(desktop, 'Projects', { mtimes: true }).size === 200, 60_000, 100);
      await waitFor('desktop to have every byte and mtime', () => {
        assert.deepEqual(filesOf(desktop, 'Projects', { mtimes: true }), want);
        return true;
      }, 30_000, 100);
      await waitFor('the empty folder on desktop', () => desktop.exists('Projects/empty/inner'), 30_000, 100);
      const listing = ok(await admin.request('GET', `/folders/Sync/files?path=Projects`));
      assert.equal(listing.length, 21);
      assert.ok(listing.every((e: any) => e.kind === 'dir' && /^Projects\/(sub\d\d|empty)$/.test(e.path)), JSON.stringify(listing));

      // A storm of deletes as the watcher sees it.
      fs.rmSync(laptop.p('Projects'), { recursive: true });
      await waitFor('Projects to vanish on desktop', () => !desktop.exists('Projects'), 60_000, 100);

      const items = await trash();
      assert.equal(items.length, 1, JSON.stringify(items));
      assert.deepEqual(
        { path: items[0].path, kind: items[0].kind, size: items[0].size, deletedBy: items[0].deletedBy },
        { path: 'Projects', kind: 'dir', size: bytes, deletedBy: 'laptop' },
      );
      assert.deepEqual(await json(desktop, ['trash']), items);
      assert.deepEqual(ok(await admin.request('GET', '/folders/Sync/files')).filter((e: any) => e.path === 'Projects'), []);

      const r = await desktop.run(['trash', 'restore', 'Projects']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^restored the folder Projects\n$/);
      for (const d of [laptop, desktop]) {
        await waitFor(`every file back on ${d.name}`, () => {
          assert.deepEqual(filesOf(d, 'Projects', { mtimes: true }), want);
          return fs.statSync(d.p('Projects/empty/inner')).isDirectory();
        }, 60_000, 100);
      }
      assert.deepEqual(await trash(), []);
      const plain = await desktop.run(['trash']);
      assert.equal(plain.stdout, 'the trash of folder Sync is empty\n');
    });

    it('puts files deleted just before their folder into the folder\'s one trash item', async () => {
      for (let i = 0; i < 6; i++) laptop.write(`burst/sub${i % 2}/f${i}.txt`, `burst ${i}`);
      await settle(laptop, desktop);
      // The device reports two files first (their folder still there), then the folder.
      fs.rmSync(laptop.p('burst/sub0/f0.txt'));
      fs.rmSync(laptop.p('burst/sub1/f1.txt'));
      await laptop.syncOnce();
      assert.equal((await trash()).length, 2);
      fs.rmSync(laptop.p('burst'), { recursive: true });
      await laptop.syncOnce();
      const items = await trash();
      assert.deepEqual(items.map((i) => [i.path, i.kind, i.size]), [['burst', 'dir', 6 * 'burst 0'.length]]);

      const restored = ok(await admin.request('POST', `/folders/Sync/trash/${items[0].id}/restore`));
      assert.equal(restored.path, 'burst');
      await settle(laptop, desktop);
      for (const d of [laptop, desktop]) {
        for (let i = 0; i < 6; i++) assert.equal(d.read(`burst/sub${i % 2}/f${i}.txt`), `burst ${i}`, `${d.name} f${i}`);
      }
    });

    it('lists the versions of a file edited on two devices and restores any of them everywhere', async () => {
      const contents = [1, 2, 3, 4, 5].map((n) => `notes, edit ${n}\n`.repeat(n * 100));
      for (const [i, c] of contents.entries()) {
        const [writer, reader] = i % 2 === 0 ? [laptop, desktop] : [desktop, laptop];
        writer.write('notes.txt', c);
        await writer.syncOnce();
        await reader.syncOnce();
        assert.equal(reader.read('notes.txt'), c);
      }

      const versions = await json(laptop, ['versions', 'notes.txt']);
      assert.deepEqual(
        versions.map((v: any) => [v.hash, v.size, v.device, v.current]),
        [...contents].reverse().map((c, i) => [sha256(c), c.length, i % 2 === 0 ? 'laptop' : 'desktop', i === 0]),
      );
      assert.deepEqual(ok(await admin.request('GET', `/folders/Sync/versions?path=notes.txt`)), versions);
      const table = await laptop.run(['versions', laptop.p('notes.txt')]);
      assert.equal(table.code, 0, table.stderr);
      assert.equal(table.stdout.trim().split('\n').length, 6);
      assert.match(table.stdout.split('\n')[1], new RegExp(`^${versions[0].id}\\s.*\\bcurrent$`));

      // An old version downloads byte for byte.
      const second = versions[3];
      const folderId = ok(await admin.request('GET', '/folders')).find((f: any) => f.name === 'Sync').id;
      const dl = await admin.requestRaw('GET', `/folders/${folderId}/content?path=notes.txt&version=${second.id}`);
      assert.equal(dl.status, 200);
      assert.ok(dl.body.equals(Buffer.from(contents[1])), 'the download differs from the second version');
      assert.match(String(dl.headers['content-disposition']), /^attachment; filename="?notes\.txt"?$/);
      assert.equal(dl.headers['content-type'], 'application/octet-stream');
      const current = await admin.requestRaw('GET', `/folders/Sync/content?path=notes.txt`);
      assert.ok(current.body.equals(Buffer.from(contents[4])));

      // Restore the second one from a device: current everywhere, the replaced content a version in turn.
      const r = await desktop.run(['restore', 'notes.txt', '--version', String(second.id)]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `restored version ${second.id} of notes.txt\n`);
      await settle(laptop, desktop);
      for (const d of [laptop, desktop]) {
        assert.equal(d.read('notes.txt'), contents[1], d.name);
        // To the millisecond: utimes takes seconds as a float.
        assert.equal(Math.round(fs.statSync(d.p('notes.txt')).mtimeMs), Date.parse(second.modifiedAt), `${d.name} mtime`);
      }
      const after = await json(desktop, ['versions', 'notes.txt']);
      assert.equal(after.length, 6);
      assert.deepEqual([after[0].hash, after[0].current, after[0].device], [sha256(contents[1]), true, 'desktop']);
      assert.deepEqual(after.slice(1).map((v: any) => v.id), versions.map((v: any) => v.id));

      // Without --version: back to the content the restore replaced.
      const undo = await laptop.run(['restore', 'notes.txt']);
      assert.equal(undo.code, 0, undo.stderr);
      await settle(laptop, desktop);
      for (const d of [laptop, desktop]) assert.equal(d.read('notes.txt'), contents[4], d.name);

      // And through the API.
      const first = versions[4];
      const api = ok(await admin.request('POST', '/folders/Sync/restore', { path: 'notes.txt', version: first.id }));
      assert.equal(api.path, 'notes.txt');
      await settle(laptop, desktop);
      for (const d of [laptop, desktop]) assert.equal(d.read('notes.txt'), contents[0], d.name);
      assert.equal((await json(laptop, ['versions', 'notes.txt'])).length, 8);
    });

    it('restores beside the original when its place is taken, overwriting nothing', async () => {
      laptop.write('Taken/a.txt', 'old a');
      laptop.write('Taken/b/c.txt', 'old c');
      laptop.write('single.txt', 'old single');
      await settle(laptop, desktop);
      fs.rmSync(laptop.p('Taken'), { recursive: true });
      fs.rmSync(laptop.p('single.txt'));
      await laptop.syncOnce();
      laptop.write('Taken/new.txt', 'new');
      laptop.write('single.txt', 'new single');
      await settle(laptop, desktop);

      const items = await trash();
      const dir = items.find((i) => i.path === 'Taken');
      const file = items.find((i) => i.path === 'single.txt');
      assert.ok(dir && file, JSON.stringify(items));
      const day = /\(restored \d{4}-\d\d-\d\d\)/.source;
      const rd = ok(await admin.request('POST', `/folders/Sync/trash/${dir.id}/restore`));
      assert.match(rd.path, new RegExp(`^Taken ${day}$`));
      const r = await desktop.run(['trash', 'restore', 'single.txt']);
      assert.equal(r.code, 0, r.stderr);
      const rf = /^restored single\.txt as (.*), beside the single\.txt that is there now\n$/.exec(r.stdout);
      assert.ok(rf, r.stdout);
      assert.match(rf[1], new RegExp(`^single ${day}\\.txt$`));
      await settle(laptop, desktop);
      for (const d of [laptop, desktop]) {
        assert.equal(d.read('Taken/new.txt'), 'new', d.name);
        assert.ok(!d.exists('Taken/a.txt'), `${d.name}: restored into the taken folder`);
        assert.equal(d.read(`${rd.path}/a.txt`), 'old a', d.name);
        assert.equal(d.read(`${rd.path}/b/c.txt`), 'old c', d.name);
        assert.equal(d.read('single.txt'), 'new single', d.name);
        assert.equal(d.read(rf[1]), 'old single', d.name);
      }
      // Restored items have left the trash; a second restore is refused.
      refused(await admin.request('POST', `/folders/Sync/trash/${dir.id}/restore`), 404, 'restoring twice');
    });

    it('purges a trash item for good', async () => {
      const big = randomBytes(6 * 1024 * 1024);
      laptop.write('purge-me/x.bin', big);
      laptop.write('purge-me/y.txt', 'y');
      await settle(laptop, desktop);
      fs.rmSync(laptop.p('purge-me'), { recursive: true });
      await settle(laptop, desktop);
      const item = (await trash()).find((i) => i.path === 'purge-me');
      assert.ok(item);
      // A deleted file still downloads, streamed chunk by chunk.
      const [deleted] = ok(await admin.request('GET', '/folders/Sync/versions?path=purge-me/x.bin'));
      const dl = await admin.requestRaw('GET', `/folders/Sync/content?path=purge-me/x.bin&version=${deleted.id}`);
      assert.equal(dl.status, 200);
      assert.ok(dl.body.equals(big), 'the download differs from the deleted file');
      refused(await admin.request('GET', '/folders/Sync/content?path=purge-me/x.bin'), 404, 'the current content of a deleted file');

      // Without a session, nothing happens.
      refused(await httpsJson(`${s.server.url}/api/v1/folders/Sync/trash/${item.id}`, 'DELETE'), 401, 'purge without a session');
      assert.ok((await trash()).some((i) => i.id === item.id));

      const r = await admin.request('DELETE', `/folders/Sync/trash/${item.id}`);
      assert.equal(r.status, 204, JSON.stringify(r.body));
      assert.ok(!(await trash()).some((i) => i.id === item.id));
      refused(await admin.request('GET', '/folders/Sync/versions?path=purge-me/x.bin'), 404, 'versions of a purged file');
      refused(await admin.request('DELETE', `/folders/Sync/trash/${item.id}`), 404, 'purging twice');
      refused(await admin.request('POST', `/folders/Sync/trash/${item.id}/restore`), 404, 'restoring a purged item');
      failed(await laptop.run(['trash', 'restore', 'purge-me']), 1, /^keepsync: purge-me is not in the trash/);
      await settle(laptop, desktop);
      assert.ok(!laptop.exists('purge-me') && !desktop.exists('purge-me'));
    });

    it('purges only what the purged item alone kept', async () => {
      // twice.txt is deleted twice, and live.txt deleted and written anew.
      laptop.write('twice.txt', 'first life');
      laptop.write('live.txt', 'old life');
      await laptop.syncOnce();
      fs.rmSync(laptop.p('twice.txt'));
      fs.rmSync(laptop.p('live.txt'));
      await laptop.syncOnce();
      laptop.write('twice.txt', 'second life');
      laptop.write('live.txt', 'new life');
      await laptop.syncOnce();
      fs.rmSync(laptop.p('twice.txt'));
      await laptop.syncOnce();
      const items = (await trash()).filter((i) => i.path === 'twice.txt' || i.path === 'live.txt');
      assert.equal(items.length, 3, JSON.stringify(items));
      const [secondDelete, firstDelete] = items.filter((i) => i.path === 'twice.txt');
      const oldLive = items.find((i) => i.path === 'live.txt');

      // The newer item of twice.txt goes; the older one still restores.
      assert.equal((await admin.request('DELETE', `/folders/Sync/trash/${secondDelete.id}`)).status, 204);
      assert.equal((await admin.request('DELETE', `/folders/Sync/trash/${oldLive.id}`)).status, 204);
      ok(await admin.request('POST', `/folders/Sync/trash/${firstDelete.id}/restore`));
      await settle(laptop, desktop);
      for (const d of [laptop, desktop]) {
        assert.equal(d.read('twice.txt'), 'first life', d.name);
        assert.equal(d.read('live.txt'), 'new life', d.name);
      }
      const live = await admin.requestRaw('GET', '/folders/Sync/content?path=live.txt');
      assert.equal(live.body.toString(), 'new life');
      assert.deepEqual(ok(await admin.request('GET', '/folders/Sync/versions?path=live.txt')).map((v: any) => v.hash), [sha256('new life')]);
    });

    it('refuses unknown ids and hostile paths with a clear error and changes nothing', async () => {
      laptop.write('keep/me.txt', 'kept');
      await settle(laptop, desktop);
      const snapshot = async () => ({
        folders: ok(await admin.request('GET', '/folders')),
        root: ok(await admin.request('GET', '/folders/Sync/files')),
        trash: await trash(),
        versions: ok(await admin.request('GET', '/folders/Sync/versions?path=keep/me.txt')),
      });
      const before = await snapshot();
      const treeBefore = [...laptop.tree()];
      const otherVersion = ok(await admin.request('GET', '/folders/Sync/versions?path=notes.txt'))[0].id;

      const hostile = ['../etc/passwd', '/etc/passwd', 'keep/../../x', 'C:\\Windows\\win.ini', 'a\u0000b', '.keepsync-tmp', 'keep//me.txt', './keep'];
      for (const p of hostile) {
        refused(await admin.request('GET', `/folders/Sync/versions?path=${q(p)}`), 400, `versions of ${JSON.stringify(p)}`);
        refused(await admin.request('GET', `/folders/Sync/content?path=${q(p)}`), 400, `content of ${JSON.stringify(p)}`);
        refused(await admin.request('GET', `/folders/Sync/files?path=${q(p)}`), 400, `files of ${JSON.stringify(p)}`);
        refused(await admin.request('POST', '/folders/Sync/restore', { path: p, version: otherVersion }), 400, `restore of ${JSON.stringify(p)}`);
      }
      refused(await admin.request('GET', '/folders/Sync/content?path=%2e%2e%2fsecret'), 400, 'an encoded ..');
      refused(await admin.request('GET', '/folders/Sync/versions?path=a&path=b'), 400, 'two paths');
      refused(await admin.request('POST', '/folders/Sync/restore', { path: ['keep/me.txt'], version: otherVersion }), 400, 'a path that is a list');

      refused(await admin.request('GET', '/folders/Sync/versions?path=nothing-here.txt'), 404, 'versions of an unknown file');
      refused(await admin.request('GET', '/folders/Sync/content?path=keep/me.txt&version=999999'), 404, 'an unknown version');
      refused(await admin.request('GET', `/folders/Sync/content?path=keep/me.txt&version=${otherVersion}`), 404, 'a version of another file');
      refused(await admin.request('GET', '/folders/Sync/content?path=keep/me.txt&version=abc'), 400, 'a version that is no number');
      refused(await admin.request('POST', '/folders/Sync/restore', { path: 'keep/me.txt', version: 999999 }), 404, 'restoring an unknown version');
      refused(await admin.request('POST', '/folders/Sync/restore', { path: 'keep/me.txt', version: otherVersion }), 404, 'restoring another file\'s version');
      refused(await admin.request('POST', '/folders/Sync/restore', { path: 'keep/me.txt', version: -3 }), 400, 'a negative version');
      refused(await admin.request('POST', '/folders/Sync/trash/999999/restore'), 404, 'an unknown trash item');
      refused(await admin.request('DELETE', '/folders/Sync/trash/999999'), 404, 'purging an unknown trash item');
      refused(await admin.request('POST', '/folders/Sync/trash/1e3/restore'), 400, 'a trash id that is no number');
      refused(await admin.request('GET', '/folders/Nope/trash'), 404, 'an unknown folder');
      refused(await admin.request('GET', '/folders/99999/files'), 404, 'an unknown folder id');
      refused(await admin.request('GET', '/folders/Sync/files?path=keep/me.txt'), 400, 'listing a file as a folder');

      failed(await laptop.run(['versions']), 2, /versions needs the file/);
      failed(await laptop.run(['restore', 'keep/me.txt', '--version', 'abc']), 2, /--version must be a whole number/);
      failed(await laptop.run(['restore', '../../../etc/passwd']), 1, /^keepsync: invalid path/);
      failed(await laptop.run(['versions', '/etc/passwd']), 1, /^keepsync: \/etc\/passwd is not inside the synced folder/);
      failed(await laptop.run(['versions', 'nothing-here.txt']), 1, /^keepsync: nothing-here\.txt has no versions on the server/);
      failed(await laptop.run(['restore', 'keep/me.txt', '--version', '999999']), 1, /^keepsync: keep\/me\.txt has no version 999999/);
      failed(await laptop.run(['restore', 'keep/me.txt']), 1, /^keepsync: keep\/me\.txt has no earlier version to restore/);
      failed(await laptop.run(['trash', 'restore', 'nothing-here']), 1, /^keepsync: nothing-here is not in the trash/);

      assert.deepEqual(await snapshot(), before);
      await laptop.syncOnce();
      assert.deepEqual([...laptop.tree()], treeBefore);
      ok(await admin.request('GET', '/status'));
    });
  });
});
