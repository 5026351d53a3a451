import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Chunker, type ChunkedFile } from '@keepsync/protocol';
import { TestDevice, forEachDatabase, scenario, sortedTree, type Scenario } from '../helpers/cluster.js';
import { Proc, keepsync } from '../helpers/processes.js';
import { AdminClient } from '../helpers/rawDevice.js';
import { ContentLog, sha256 } from '../helpers/serverContent.js';
import { ServerIndex, terminateBackends, verifyServer } from '../helpers/serverIndex.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Crashes at exact points (SAFETY.md B1, B2, B3, B8). The product has a few
 * named crash points (packages/protocol/src/crashPoints.ts): a process whose
 * KEEPSYNC_CRASH_AT names one kills itself there with SIGKILL. Real server
 * and `keepsync sync` processes over TLS WebSockets, real folders; every
 * kill is followed by a run without the crash point, after which nothing may
 * be lost, partial, duplicated or left behind.
 */

const KiB = 1024;
const MiB = 1024 * KiB;

function chunksOf(data: Buffer): ChunkedFile {
  const c = new Chunker(data.byteLength);
  c.update(data);
  return c.finish();
}

/** Every `.keepsync-*` file left under `dir`. */
function leftovers(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((p) => path.basename(p).startsWith('.keepsync-'));
}

const isConflictCopy = (p: string) => p.includes('(conflict from ');

/** The device's files (not folders) and their content hashes. */
function filesOn(d: TestDevice): Map<string, string> {
  const out = new Map<string, string>();
  for (const [p, v] of d.tree()) if (v !== '/') out.set(p, sha256(Buffer.from(v, 'base64')));
  return out;
}

/** The server's live files and their content hashes. */
async function serverFiles(index: ServerIndex): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const [p, e] of await index.live()) if (e.kind === 'file') out.set(p, e.hash);
  return out;
}

/** Chunks the server's trace says it received (`trace: put-chunk HASH SIZE stored|received again`), from `from` on. */
function receivedChunks(stderr: string, kind: 'stored' | 'received again', from = 0): string[] {
  return stderr.slice(from).split('\n').filter((l) => l.includes('trace: put-chunk ') && l.endsWith(` ${kind}`))
    .map((l) => l.slice(l.indexOf('trace: put-chunk ')).split(' ')[2]);
}

describe('Crashes at exact points (SAFETY.md B1, B2, B3, B4, B8)', function () {
  this.timeout(120_000);

  forEachDatabase((kind) => {
    // Where a device is killed (B1, B2, B8), the server's database plays no part: those run on
    // SQLite only. Where the server is killed (B3), they run on every database.
    const deviceKills = (title: string, fn: () => void) => (kind.name === 'sqlite' ? describe(title, fn) : undefined);
    let s: Scenario;
    let index: ServerIndex;
    let log: ContentLog;
    const procs: Proc[] = [];
    const savedTrace = process.env.KEEPSYNC_TRACE;

    beforeEach(async () => {
      // The server traces every chunk it receives, so tests can tell which arrived before a kill and which twice.
      process.env.KEEPSYNC_TRACE = '1';
      try {
        s = await scenario(kind);
      } finally {
        if (savedTrace === undefined) delete process.env.KEEPSYNC_TRACE;
        else process.env.KEEPSYNC_TRACE = savedTrace;
      }
      s.server.env = { KEEPSYNC_TRACE: '1' };
      index = await ServerIndex.open(s.server);
      log = new ContentLog();
    });
    afterEach(async () => {
      for (const p of procs.splice(0)) await p.stop('SIGKILL');
      await index.close();
      await s.cleanup();
    });

    /** Runs `keepsync sync --once` on `d` with KEEPSYNC_CRASH_AT=`point` and waits until it killed itself there. */
    async function killedAt(d: TestDevice, point: string): Promise<Proc> {
      const p = new Proc(['sync', '--once', '--quiet', '--home', d.home], { ...d.env, KEEPSYNC_CRASH_AT: point });
      procs.push(p);
      await waitFor(`${d.name} to reach ${point}`, () => !p.running, 60_000);
      assert.equal(p.child.signalCode, 'SIGKILL', `${d.name} never reached ${point}: exited ${p.child.exitCode}\n${p.stderr}`);
      return p;
    }

    /**
     * Restarts the server with KEEPSYNC_CRASH_AT=`point`, runs `trigger`
     * (a device's sync) until the server killed itself there, and starts it
     * again on the same port without the crash point.
     */
    async function serverKilledAt(point: string, trigger: () => Promise<unknown>): Promise<void> {
      s.server.env = { KEEPSYNC_TRACE: '1', KEEPSYNC_CRASH_AT: point };
      await s.server.restart();
      s.server.env = { KEEPSYNC_TRACE: '1' };
      const triggered = trigger();
      await waitFor(`the server to reach ${point}`, () => !s.server.proc.running, 60_000);
      assert.equal(s.server.proc.child.signalCode, 'SIGKILL', `the server never reached ${point}: exited ${s.server.proc.child.exitCode}\n${s.server.proc.stderr}`);
      await triggered;
      await s.server.start();
    }

    /** The server's store is sound, as verifyServer and `keepsync server verify` see it (I6). */
    async function assertServerSound(): Promise<void> {
      assert.deepEqual(await verifyServer(s.server, index), []);
      const r = await keepsync(['server', 'verify', '--data', s.server.dataDir, ...(s.db.url ? ['--database-url', s.db.url] : [])]);
      assert.equal(r.code, 0, `keepsync server verify: ${r.stdout}${r.stderr}`);
    }

    /** Pairs a new device through a pairing the admin API makes (the server is running: no `server pair` process). */
    async function addDevice(name: string): Promise<TestDevice> {
      const admin = await AdminClient.login(s.server);
      const r = await admin.request('POST', '/pairings', { name });
      assert.equal(r.status, 201, `POST /pairings answered ${r.status}`);
      const d = new TestDevice(name);
      s.devices.push(d);
      const paired = await d.pair(r.body.link);
      assert.equal(paired.code, 0, `pairing ${name}: ${paired.stderr}`);
      return d;
    }

    async function assertNothingLost(): Promise<void> {
      await log.assertNothingLost(await AdminClient.login(s.server));
    }

    /** No conflict copy on the server or on any of `devices` (a crash is not a conflict). */
    async function assertNoConflictCopies(...devices: TestDevice[]): Promise<void> {
      assert.deepEqual([...(await index.live()).keys()].filter(isConflictCopy), [], 'conflict copies on the server');
      for (const d of devices) assert.deepEqual([...d.tree().keys()].filter(isConflictCopy), [], `conflict copies on ${d.name}`);
    }

    deviceKills('B1: a device killed at each chunk boundary of an upload', () => {
      /**
       * One round: `content` is written to `rel`, the device is killed at
       * `point`, then synced again. Answers the chunks stored before the kill.
       */
      async function uploadKilledAt(up: TestDevice, rel: string, content: Buffer, point: string): Promise<{ before: string[] }> {
        const { hash, chunks } = chunksOf(content);
        const mine = new Set(chunks.map((c) => c.hash));
        up.write(rel, log.add(rel, content));
        const from = s.server.proc.stderr.length;
        await killedAt(up, point);
        const before = receivedChunks(s.server.proc.stderr, 'stored', from);
        assert.ok(before.every((h) => mine.has(h)), `${point}: the server stored chunks of something else`);
        const committed = point === 'client:after-push';
        // Never a partial version: the file is on the server whole (the push went through) or not at all.
        assert.deepEqual(await index.versionsOf(rel), committed ? [hash] : [], `${point}: versions of ${rel} after the kill`);
        assert.equal((await index.live()).get(rel)?.hash, committed ? hash : undefined, `${point}: the current entry of ${rel} after the kill`);
        assert.deepEqual(await verifyServer(s.server, index), [], `${point}: the server after the kill`);

        await up.syncOnce();
        assert.equal((await index.live()).get(rel)?.hash, hash, `${point}: ${rel} after the restart`);
        assert.deepEqual(await index.versionsOf(rel), [hash], `${point}: versions of ${rel} after the restart`);
        const stored = receivedChunks(s.server.proc.stderr, 'stored', from);
        // The run after the kill asks what is missing: every chunk reached the server once, none twice.
        assert.deepEqual(receivedChunks(s.server.proc.stderr, 'received again', from), [], `${point}: chunks received twice`);
        assert.deepEqual([...stored].sort(), [...mine].sort(), `${point}: chunks stored over both runs`);
        return { before };
      }

      it('resumes from every chunk boundary and before and after the push: never a partial version, no chunk received twice, the file whole', async () => {
        const up = await addDevice('uploader');
        const check = await addDevice('check');
        // A file of about six chunks of 16-256 KiB, sent after it was hashed (files under 8 MiB).
        let boundaries = 0;
        for (let k = 1; ; k++) {
          const content = randomBytes(384 * KiB);
          const n = chunksOf(content).chunks.length;
          if (k > n) break;
          const { before } = await uploadKilledAt(up, `small/${k}.bin`, content, `client:chunk-acked:${k}`);
          assert.ok(before.length >= k, `killed after chunk ${k} of ${n} was stored, but the server stored ${before.length}`);
          boundaries++;
        }
        assert.ok(boundaries >= 3, `only ${boundaries} chunk boundaries were tried`);
        for (const point of ['client:before-push', 'client:after-push']) {
          const content = randomBytes(384 * KiB);
          const { before } = await uploadKilledAt(up, `small/${point.slice(7)}.bin`, content, point);
          assert.equal(before.length, chunksOf(content).chunks.length, `${point}: every chunk was stored before the kill`);
        }
        // A large file is uploaded while it is hashed (EagerUpload): killed after its first, a middle and its last chunk.
        for (const where of ['first', 'middle', 'last']) {
          const content = randomBytes(9 * MiB);
          const n = chunksOf(content).chunks.length;
          const k = where === 'first' ? 1 : where === 'middle' ? Math.ceil(n / 2) : n;
          const { before } = await uploadKilledAt(up, `large/${where}.bin`, content, `client:chunk-acked:${k}`);
          assert.ok(before.length >= k, `killed after chunk ${k} of ${n} was stored, but the server stored ${before.length}`);
        }

        await check.syncOnce();
        assert.deepEqual(sortedTree(check.tree()), sortedTree(up.tree()));
        assert.deepEqual(leftovers(up.dir), []);
        await assertNoConflictCopies(up, check);
        await assertServerSound();
        await assertNothingLost();
      });
    });

    deviceKills('B2: a device killed just before and just after a download is renamed into place', () => {
      it('leaves no partial file, no temporary file and no conflict copy, and ends byte-identical', async () => {
        const sender = await addDevice('sender');
        const receiver = await addDevice('receiver');
        let current = randomBytes(384 * KiB);
        sender.write('dl/update.bin', log.add('dl/update.bin', current));
        await sender.syncOnce();
        await receiver.syncOnce();
        const points: Array<[string, number]> = [['client:before-rename', 1], ['client:before-rename', 2], ['client:after-rename', 1], ['client:after-rename', 2]];
        for (const [round, [point, count]] of points.entries()) {
          // Two downloads at once: a new file, and a new version of a file the receiver holds.
          const fresh = randomBytes(384 * KiB);
          const next = randomBytes(384 * KiB);
          const newPath = `dl/new-${round}.bin`;
          sender.write(newPath, log.add(newPath, fresh));
          sender.write('dl/update.bin', log.add('dl/update.bin', next));
          await sender.syncOnce();
          await killedAt(receiver, `${point}:${count}`);

          // At the kill, each final path holds a whole content, old or new. The file a download replaces
          // is set aside just before (to catch a save made meanwhile): killed right then, its place is
          // empty and the old content, which the server holds, lies in a `.keepsync-aside-` file.
          const onDisk = (rel: string) => (receiver.exists(rel) ? sha256(fs.readFileSync(receiver.p(rel))) : 'absent');
          const asides = leftovers(receiver.dir).filter((p) => path.basename(p).startsWith('.keepsync-aside-'));
          assert.ok([sha256(fresh), 'absent'].includes(onDisk(newPath)), `${point}:${count}: ${newPath} is partial`);
          const update = onDisk('dl/update.bin');
          assert.ok([sha256(next), sha256(current)].includes(update) || (update === 'absent' && asides.length === 1), `${point}:${count}: dl/update.bin is ${update}`);
          for (const a of asides) assert.equal(sha256(fs.readFileSync(path.join(receiver.dir, a))), sha256(current), `${point}:${count}: ${a} holds the old content`);
          // The two downloads run side by side: the kill at the k-th point came after k-1 renames
          // at least (after-rename: k), and before any rename that reaches the point later.
          const renamed = Number(onDisk(newPath) === sha256(fresh)) + Number(update === sha256(next));
          if (point === 'client:after-rename') assert.ok(renamed >= count, `${point}:${count}: ${renamed} files renamed into place before the kill`);
          else assert.ok(renamed <= count - 1, `${point}:${count}: ${renamed} files renamed into place before the kill`);
          // At most one temporary file per download. A download not in place need not have one yet: the
          // downloads share one thread, and with every chunk already arrived (a loaded machine) the first
          // can run whole, up to the kill, before the second has opened its file. The restart below
          // checks that none is left over.
          const temps = leftovers(receiver.dir).length - asides.length;
          assert.ok(temps <= 2, `${point}:${count}: ${temps} temporary files for two downloads`);

          await receiver.syncOnce();
          assert.ok(fs.readFileSync(receiver.p(newPath)).equals(fresh), `${point}:${count}: ${newPath} after the restart`);
          assert.ok(fs.readFileSync(receiver.p('dl/update.bin')).equals(next), `${point}:${count}: dl/update.bin after the restart`);
          for (const rel of [newPath, 'dl/update.bin']) {
            const skew = Math.abs(fs.statSync(receiver.p(rel)).mtimeMs - fs.statSync(sender.p(rel)).mtimeMs);
            assert.ok(skew <= 1, `${point}:${count}: the mtime of ${rel} is ${skew} ms off`);
          }
          assert.deepEqual(leftovers(receiver.dir), [], `${point}:${count}: temporary files left`);
          await assertNoConflictCopies(receiver);
          // The receiver sent nothing back: no new version of what it downloaded.
          assert.equal((await index.versionsOf(newPath)).length, 1, `${point}:${count}: versions of ${newPath}`);
          assert.equal((await index.versionsOf('dl/update.bin')).length, round + 2, `${point}:${count}: versions of dl/update.bin`);
          current = next;
        }
        await sender.syncOnce();
        assert.deepEqual(sortedTree(receiver.tree()), sortedTree(sender.tree()));
        await assertServerSound();
        await assertNothingLost();
      });
    });

    describe('B3: the server killed between chunk write, index commit and broadcast', () => {
      it('converges on every device after each point: nothing lost, no missing chunk, each operation applied once', async () => {
        const laptop = await addDevice('laptop');
        const desktop = await addDevice('desktop');
        const points = ['server:chunk-stored:3', 'server:before-commit', 'server:after-commit', 'server:after-broadcast'];
        for (const i of points.keys()) {
          laptop.write(`edit/${i}.txt`, log.add(`edit/${i}.txt`, `round ${i}, first version`));
          laptop.write(`move/${i}-old.txt`, log.add(`move/${i}-old.txt`, `round ${i}, moved`));
          laptop.write(`delete/${i}.txt`, log.add(`delete/${i}.txt`, `round ${i}, deleted`));
        }
        await laptop.syncOnce();
        await desktop.start();
        await waitFor('the desktop to have the laptop\'s files', () => desktop.read('delete/3.txt') !== undefined, 30_000);

        for (const [i, point] of points.entries()) {
          // One push of every kind of op: a new file of several chunks, an edit, a move, a delete, a new folder.
          const big = randomBytes(384 * KiB);
          laptop.write(`new/${i}.bin`, log.add(`new/${i}.bin`, big));
          laptop.write(`edit/${i}.txt`, log.add(`edit/${i}.txt`, `round ${i}, second version`));
          fs.renameSync(laptop.p(`move/${i}-old.txt`), laptop.p(`move/${i}-new.txt`));
          fs.rmSync(laptop.p(`delete/${i}.txt`));
          fs.mkdirSync(laptop.p(`dirs/${i}`), { recursive: true });
          await serverKilledAt(point, () => laptop.run(['sync', '--once', '--quiet']));

          await laptop.syncOnce();
          await waitFor(`the desktop to converge after ${point}`, () => JSON.stringify(sortedTree(desktop.tree())) === JSON.stringify(sortedTree(laptop.tree())), 60_000);
          assert.equal(desktop.read(`edit/${i}.txt`), `round ${i}, second version`);
          assert.ok(fs.readFileSync(desktop.p(`new/${i}.bin`)).equals(big));
          // Each op applied exactly once.
          assert.deepEqual(await index.versionsOf(`new/${i}.bin`), [sha256(big)], `${point}: versions of new/${i}.bin`);
          assert.deepEqual(await index.versionsOf(`edit/${i}.txt`), [sha256(`round ${i}, first version`), sha256(`round ${i}, second version`)], `${point}: versions of edit/${i}.txt`);
          assert.deepEqual(await index.versionsOf(`move/${i}-new.txt`), [sha256(`round ${i}, moved`)], `${point}: versions of the moved file`);
          const live = await index.live();
          assert.equal(live.has(`move/${i}-old.txt`), false, `${point}: the moved file is still at its old place`);
          assert.equal(live.get(`dirs/${i}`)?.kind, 'dir', `${point}: the new folder`);
          assert.deepEqual((await index.trashPaths()).filter((p) => p === `delete/${i}.txt`), [`delete/${i}.txt`], `${point}: trash items of the deleted file`);
          await assertNoConflictCopies(laptop, desktop);
          assert.deepEqual(await verifyServer(s.server, index), [], `${point}: the server after the restart`);
        }
        assert.deepEqual(await index.trashPaths(), points.map((_, i) => `delete/${i}.txt`));
        assert.deepEqual(leftovers(laptop.dir), []);
        assert.deepEqual(leftovers(desktop.dir), []);
        await assertServerSound();
        await assertNothingLost();
      });
    });

    (kind.name === 'postgres' ? describe : describe.skip)('B4: every connection to the database dropped (a database restart), again and again', () => {
      it('lets devices\' changes through, without an error shown, while every connection is dropped again and again', async () => {
        const laptop = await addDevice('laptop');
        const desktop = await addDevice('desktop');
        await laptop.start();
        await desktop.start();
        // Dropped while the laptop's many small pushes and the desktop's pulls are under way.
        for (let round = 0; round < 4; round++) {
          for (let f = 0; f < 40; f++) laptop.write(`r${round}/f${f}.txt`, log.add(`r${round}/f${f}.txt`, `round ${round} file ${f}`));
          for (let k = 0; k < 5; k++) {
            await terminateBackends(s.db.url!);
            await new Promise((resolve) => setTimeout(resolve, 30));
          }
        }
        await waitFor('every file on the desktop', () => [0, 1, 2, 3].every((r) => desktop.exists(`r${r}/f39.txt`) && desktop.exists(`r${r}/f0.txt`)), 60_000);
        await laptop.stop();
        await desktop.stop();
        const said = `${laptop.live?.stderr ?? ''}${desktop.live?.stderr ?? ''}`;
        assert.doesNotMatch(said, /failed to handle this request/, 'a device was told of a failure');
        await laptop.syncOnce();
        await desktop.syncOnce();
        assert.deepEqual(sortedTree(desktop.tree()), sortedTree(laptop.tree()));
        await log.assertNothingLost(await AdminClient.login(s.server));
      });
    });

    describe('B3: a server stopped with SIGTERM while a device is connected (as between the crash rounds)', () => {
      it('finishes what closing the devices\' connections writes before it closes the database', async () => {
        const laptop = await addDevice('laptop');
        await laptop.start();
        const stopping = Date.now();
        await s.server.stop();
        // The device's last-seen time, written when its connection closed, made it to the database.
        const seen = await index.lastSeen('laptop');
        assert.ok(seen !== undefined && seen >= stopping, `last seen ${seen}, stopped at ${stopping}`);
        await s.server.start();
        await laptop.stop();
      });
    });

    deviceKills('B8: a device killed in the middle of a bulk move or an ignore-rule change', () => {
      it('moves a folder and many files once, whichever device is killed where: nothing lost, nothing twice', async () => {
        const mover = await addDevice('mover');
        const other = await addDevice('other');
        const N = 30;
        for (let f = 0; f < N; f++) {
          mover.write(`album/p${f}.jpg`, log.add(`album/p${f}.jpg`, `photo ${f}`));
          mover.write(`inbox/m${f}.txt`, log.add(`inbox/m${f}.txt`, `mail ${f}`));
        }
        await mover.syncOnce();
        await other.syncOnce();
        const contents = [...(await serverFiles(index)).values()].sort();
        const rounds = [
          { album: ['album', 'album-2024'], inbox: ['inbox', 'sorted'], moverAt: 'client:before-push', otherAt: 'client:after-move:1' },
          { album: ['album-2024', 'photos/album-2024'], inbox: ['sorted', 'archive'], moverAt: 'client:after-push', otherAt: `client:after-move:${N / 2}` },
        ];
        for (const r of rounds) {
          // A folder renamed (one move), and every file of another moved one by one into a new folder (N moves).
          fs.mkdirSync(path.dirname(mover.p(r.album[1])), { recursive: true });
          fs.renameSync(mover.p(r.album[0]), mover.p(r.album[1]));
          fs.mkdirSync(mover.p(r.inbox[1]), { recursive: true });
          for (let f = 0; f < N; f++) fs.renameSync(mover.p(`${r.inbox[0]}/m${f}.txt`), mover.p(`${r.inbox[1]}/m${f}.txt`));
          await killedAt(mover, r.moverAt);
          await mover.syncOnce();
          await killedAt(other, r.otherAt);
          await other.syncOnce();
          await mover.syncOnce();

          const where = `${r.moverAt} / ${r.otherAt}`;
          const files = await serverFiles(index);
          assert.deepEqual([...files.values()].sort(), contents, `${where}: every content once on the server`);
          for (let f = 0; f < N; f++) {
            assert.equal(files.get(`${r.album[1]}/p${f}.jpg`), sha256(`photo ${f}`), `${where}: ${r.album[1]}/p${f}.jpg`);
            assert.equal(files.get(`${r.inbox[1]}/m${f}.txt`), sha256(`mail ${f}`), `${where}: ${r.inbox[1]}/m${f}.txt`);
            // Moved, not uploaded again: the one version each file ever had.
            assert.equal((await index.versionsOf(`${r.inbox[1]}/m${f}.txt`)).length, 1, `${where}: versions of ${r.inbox[1]}/m${f}.txt`);
          }
          assert.deepEqual(sortedTree(other.tree()), sortedTree(mover.tree()), `${where}: the devices differ`);
          assert.deepEqual([...filesOn(other).values()].sort(), contents, `${where}: every content once on the other device`);
        }
        // Nothing was deleted: a move is never a delete and an upload.
        assert.deepEqual(await index.trashPaths(), []);
        await assertNoConflictCopies(mover, other);
        assert.deepEqual(leftovers(other.dir), []);
        await assertServerSound();
        await assertNothingLost();
      });

      it('never deletes files a new .keepsyncignore rule covers, from the server or another device, killed or not', async () => {
        const laptop = await addDevice('laptop');
        const desktop = await addDevice('desktop');
        const ignorable = ['logs/a.log', 'logs/deep/b.log', 'debug.log', 'build/out.bin', 'build/sub/x.o'];
        for (const rel of [...ignorable, 'notes.txt']) laptop.write(rel, log.add(rel, `${rel} v1`));
        await laptop.syncOnce();
        await desktop.syncOnce();
        const before = await serverFiles(index);

        // A rule covering files that are synced, added with other changes; the device killed before and after its push.
        laptop.write('.keepsyncignore', log.add('.keepsyncignore', '*.log\n'));
        laptop.write('notes.txt', log.add('notes.txt', 'notes v2'));
        await killedAt(laptop, 'client:before-push');
        await laptop.syncOnce();
        laptop.write('.keepsyncignore', log.add('.keepsyncignore', '*.log\nbuild/\n'));
        await killedAt(laptop, 'client:after-push');
        await laptop.syncOnce();
        await desktop.syncOnce();

        const after = await serverFiles(index);
        for (const rel of ignorable) assert.equal(after.get(rel), before.get(rel), `${rel} on the server`);
        assert.deepEqual(await index.trashPaths(), [], 'nothing went to the trash');
        for (const d of [laptop, desktop]) {
          for (const rel of ignorable) assert.equal(d.read(rel), `${rel} v1`, `${rel} on ${d.name}`);
          assert.equal(d.read('notes.txt'), 'notes v2');
          assert.equal(d.read('.keepsyncignore'), '*.log\nbuild/\n');
        }

        // While ignored, changes to those files stay on the device; the server's copy is not touched.
        laptop.write('logs/a.log', log.add('logs/a.log', 'logs/a.log v2, while ignored'));
        laptop.write('logs/c.log', 'a new log, ignored');
        await laptop.syncOnce();
        assert.equal((await serverFiles(index)).get('logs/a.log'), before.get('logs/a.log'));
        assert.equal((await index.live()).has('logs/c.log'), false);

        // The rule taken back while the device runs: what was ignored syncs at once (not at the next periodic
        // scan), the edit made meanwhile included, without a conflict.
        await laptop.start();
        await waitFor('the laptop\'s first cycle to end', () => JSON.parse(fs.readFileSync(path.join(laptop.home, 'state.json'), 'utf8')).lastSyncAt);
        laptop.write('.keepsyncignore', log.add('.keepsyncignore', 'build/\n'));
        log.add('logs/c.log', 'a new log, ignored');
        await waitFor('the files the rule no longer covers to reach the server', async () => {
          const files = await serverFiles(index);
          return files.get('logs/c.log') === sha256('a new log, ignored') && files.get('logs/a.log') === sha256('logs/a.log v2, while ignored');
        }, 30_000);
        // And a rule added while it runs deletes nothing either (the ignore file and any delete would go in one push).
        laptop.write('.keepsyncignore', log.add('.keepsyncignore', 'build/\n*.txt\n'));
        await waitFor('the new rule to reach the server', async () => (await serverFiles(index)).get('.keepsyncignore') === sha256('build/\n*.txt\n'), 30_000);
        await laptop.stop();
        assert.equal((await serverFiles(index)).get('notes.txt'), sha256('notes v2'));
        await laptop.syncOnce();
        await desktop.syncOnce();
        assert.equal(desktop.read('logs/a.log'), 'logs/a.log v2, while ignored');
        assert.equal(desktop.read('logs/c.log'), 'a new log, ignored');
        assert.equal(desktop.read('build/out.bin'), 'build/out.bin v1');
        assert.deepEqual(await index.trashPaths(), []);
        await assertNoConflictCopies(laptop, desktop);
        assert.deepEqual(sortedTree(desktop.tree()), sortedTree(laptop.tree()));
        await assertServerSound();
        await assertNothingLost();
      });
    });
  });
});
