import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { chunkBuffer, packHashes, packManifest, sha256Hex, unpackHashes, type ChunkedFile, type Op } from '@keepsync/protocol';
import { openDatabase } from '@keepsync/server';
import { TestDevice, TestServer, forEachDatabase, sortedTree } from '../helpers/cluster.js';
import { InProcessServer } from '../helpers/inProcessServer.js';
import type { DatabaseKind } from '../helpers/databases.js';
import { keepsync } from '../helpers/processes.js';
import { AdminClient, RawSocket, redeemPairing } from '../helpers/rawDevice.js';
import { waitFor } from '../helpers/wait.js';

const DAY = 24 * 60 * 60 * 1000;

interface Env {
  server: InProcessServer;
  devices: TestDevice[];
  addDevice(name: string): Promise<TestDevice>;
  admin(): Promise<AdminClient>;
  status(): Promise<Record<string, number>>;
  setRetention(change: object): Promise<void>;
  cleanup(): Promise<void>;
}

async function environment(kind: DatabaseKind): Promise<Env> {
  const db = await kind.create();
  const server = await new InProcessServer(db).start();
  const devices: TestDevice[] = [];
  const admin = () => AdminClient.login(server);
  return {
    server, devices, admin,
    async addDevice(name) {
      const d = new TestDevice(name);
      devices.push(d);
      const r = await d.pair(await server.pairingLink());
      if (r.code !== 0) throw new Error(`pairing ${name} failed: ${r.stderr}`);
      return d;
    },
    async status() {
      const r = await (await admin()).request('GET', '/status');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.storage;
    },
    async setRetention(change) {
      const r = await (await admin()).request('PUT', '/settings', change);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    },
    async cleanup() {
      for (const d of devices) await d.cleanup();
      await server.cleanup();
      await db.drop();
    },
  };
}

/** A device connection driven by hand, for the protocol steps a test must time. */
async function rawDevice(server: TestServer, name: string): Promise<{ sock: RawSocket; request: (msg: Record<string, unknown>, answer: string) => Promise<any> }> {
  const { token } = await redeemPairing(server, name);
  const { sock } = await RawSocket.welcomed(server, token);
  let nextId = 100;
  /** Sends a request; answers the reply of type `answer`, or the error, with its id. */
  const request = async (msg: Record<string, unknown>, answer: string) => {
    const id = nextId++;
    sock.send({ ...msg, id });
    return waitFor(`${answer} for ${String(msg.type)} (got ${sock.describe()})`, () => {
      if (sock.closeCode !== undefined) throw new Error(`closed with ${sock.closeCode}`);
      return sock.received.find((m: any) => m.id === id && (m.type === answer || m.type === 'error'));
    });
  };
  return { sock, request };
}

function putOp(p: string, content: Buffer, chunks: ChunkedFile['chunks']): Op {
  return {
    op: 'put', path: p, base: 0, size: content.length, hash: sha256Hex(content), mtime: Date.now(), exec: false,
    manifest: { full: packManifest(chunks.map((c) => ({ hash: c.hash, size: c.size }))) },
  } as Op;
}

describe('Retention and chunk collection', function () {
  this.timeout(180_000);

  forEachDatabase((kind) => {
    let env: Env;
    beforeEach(async () => {
      env = await environment(kind);
    });
    afterEach(async () => env.cleanup());

    it('keeps at most N versions per file, then none older than D days, and frees their bytes on disk', async () => {
      const { server } = env;
      // Pairing codes expire by the server's clock: pair before moving it.
      const [laptop, desktop] = [await env.addDevice('laptop'), await env.addDevice('desktop')];
      const raw = await rawDevice(server, 'inspector');
      const SIZE = 200_000;
      const contents = Array.from({ length: 5 }, () => randomBytes(SIZE));
      for (const c of contents) {
        laptop.write('report.bin', c);
        await laptop.syncOnce();
      }
      laptop.write('other.bin', randomBytes(50_000));
      await laptop.syncOnce();

      // Random contents share no chunk: the store holds every byte once.
      const before = await env.status();
      assert.equal(server.diskBytes(), 5 * SIZE + 50_000);
      assert.deepEqual(
        { current: before.currentBytes, versions: before.versions, versionBytes: before.versionBytes, disk: before.diskBytes },
        { current: SIZE + 50_000, versions: 4, versionBytes: 4 * SIZE, disk: 5 * SIZE + 50_000 },
      );

      // Lowering the setting applies it at once; the chunks, used a moment ago, stay for the grace period.
      await env.setRetention({ versions: { keep: 2 } });
      await server.maintain();
      const lowered = await env.status();
      assert.deepEqual({ versions: lowered.versions, versionBytes: lowered.versionBytes }, { versions: 1, versionBytes: SIZE });
      assert.equal(server.diskBytes(), 5 * SIZE + 50_000);

      await server.ageChunks(2 * DAY);
      const second = await server.maintain();
      assert.equal(second.collection.freedBytes, 3 * SIZE);
      const after = await env.status();
      assert.equal(server.diskBytes(), 2 * SIZE + 50_000);
      assert.deepEqual(
        { versions: after.versions, versionBytes: after.versionBytes, disk: after.diskBytes },
        { versions: 1, versionBytes: SIZE, disk: 2 * SIZE + 50_000 },
      );

      const listed = await raw.request({ type: 'versions', path: 'report.bin' }, 'versions-list');
      assert.deepEqual(listed.versions.map((v: any) => [v.hash, v.current]), [[sha256Hex(contents[4]), true], [sha256Hex(contents[3]), false]]);

      // Ten days on, with versions kept at most five days: the earlier version goes, the current one stays.
      server.offsetMs = 10 * DAY;
      await env.setRetention({ versions: { maxAgeDays: 5 } });
      await server.maintain();
      const now = await raw.request({ type: 'versions', path: 'report.bin' }, 'versions-list');
      assert.deepEqual(now.versions.map((v: any) => v.hash), [sha256Hex(contents[4])]);
      raw.sock.terminate();

      await desktop.syncOnce();
      assert.ok(fs.readFileSync(desktop.p('report.bin')).equals(contents[4]));
      assert.deepEqual(sortedTree(desktop.tree()), sortedTree(laptop.tree()));
      const verify = await server.verify();
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    });

    it('purges trash items older than the trash retention and frees their content', async () => {
      const { server } = env;
      const [laptop, desktop] = [await env.addDevice('laptop'), await env.addDevice('desktop')];
      const raw = await rawDevice(server, 'inspector');
      const files = { 'docs/a.bin': randomBytes(30_000), 'docs/sub/b.bin': randomBytes(40_000), 'solo.bin': randomBytes(50_000) };
      for (const [p, c] of Object.entries(files)) laptop.write(p, c);
      const kept = randomBytes(20_000);
      laptop.write('keep.bin', kept);
      await laptop.syncOnce();
      fs.rmSync(laptop.p('docs'), { recursive: true });
      fs.rmSync(laptop.p('solo.bin'));
      await laptop.syncOnce();

      const trashed = await env.status();
      assert.deepEqual({ items: trashed.trashItems, bytes: trashed.trashBytes }, { items: 2, bytes: 120_000 });
      await server.ageChunks(2 * DAY);

      // 29 days later the trash (30 days by default) is still whole.
      server.offsetMs = 29 * DAY;
      const early = await server.maintain();
      assert.deepEqual([early.retention.trashItems, early.collection.removed], [0, 0]);
      assert.equal((await env.status()).trashItems, 2);

      server.offsetMs = 31 * DAY;
      const late = await server.maintain();
      assert.equal(late.retention.trashItems, 2);
      assert.equal(late.retention.versions, 3);
      assert.equal(late.collection.freedBytes, 120_000);
      assert.equal(server.diskBytes(), 20_000);
      const after = await env.status();
      assert.deepEqual(
        { items: after.trashItems, trash: after.trashBytes, disk: after.diskBytes, current: after.currentBytes },
        { items: 0, trash: 0, disk: 20_000, current: 20_000 },
      );
      assert.deepEqual((await raw.request({ type: 'trash' }, 'trash-list')).items, []);
      raw.sock.terminate();

      await desktop.syncOnce();
      assert.deepEqual([...desktop.tree().keys()], ['keep.bin']);
      assert.ok(fs.readFileSync(desktop.p('keep.bin')).equals(kept));
      const verify = await server.verify();
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    });

    it('never removes a current version, nor one a trash item holds, even when keeping one version', async () => {
      const { server } = env;
      const laptop = await env.addDevice('laptop');
      const raw = await rawDevice(server, 'inspector');
      const [m1, m2, m3] = [randomBytes(30_000), randomBytes(30_000), randomBytes(30_000)];
      // memo.bin is deleted (the trash holds m1), then written anew twice at the same path.
      laptop.write('memo.bin', m1);
      await laptop.syncOnce();
      fs.rmSync(laptop.p('memo.bin'));
      await laptop.syncOnce();
      for (const c of [m2, m3]) {
        laptop.write('memo.bin', c);
        await laptop.syncOnce();
      }
      await env.setRetention({ versions: { keep: 1 } });
      await server.ageChunks(2 * DAY);
      await server.maintain();
      const listed = await raw.request({ type: 'versions', path: 'memo.bin' }, 'versions-list');
      assert.deepEqual(listed.versions.map((v: any) => v.hash), [sha256Hex(m3), sha256Hex(m1)]);
      assert.equal(fs.existsSync(server.chunkFile(sha256Hex(m2))), false);

      // The trash item still comes back whole, beside the new file.
      const restored = await raw.request({ type: 'trash-restore', path: 'memo.bin' }, 'done');
      assert.equal(restored.type, 'done', JSON.stringify(restored));
      raw.sock.terminate();
      await laptop.syncOnce();
      const names = [...laptop.tree().keys()].sort();
      assert.equal(names.length, 2, names.join(', '));
      assert.ok(fs.readFileSync(laptop.p('memo.bin')).equals(m3));
      assert.ok(fs.readFileSync(laptop.p(names.find((n) => n !== 'memo.bin')!)).equals(m1));
      const verify = await server.verify();
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    });

    it('loses nothing when collection races an upload whose push is pending and a restore', async () => {
      const { server } = env;
      const laptop = await env.addDevice('laptop');
      const docs = Array.from({ length: 3 }, () => randomBytes(100_000));
      for (const c of docs) {
        laptop.write('doc.bin', c);
        await laptop.syncOnce();
      }
      const device = await rawDevice(server, 'uploader');
      const versions = (await device.request({ type: 'versions', path: 'doc.bin' }, 'versions-list')).versions;
      const firstVersion = versions[versions.length - 1].id;

      // Chunks uploaded long ago and never pushed: garbage, unless a device names them again.
      const [reused, garbage, fresh] = [randomBytes(70_000), randomBytes(70_000), randomBytes(90_000)];
      const chunked = new Map<Buffer, ChunkedFile['chunks']>([reused, garbage, fresh].map((b) => [b, chunkBuffer(b).chunks]));
      const upload = async (content: Buffer) => {
        for (const c of chunked.get(content)!) {
          const data = content.subarray(c.offset, c.offset + c.size);
          const ok = await device.request({ type: 'put-chunk', hash: Buffer.from(c.hash, 'hex'), data }, 'chunk-ok');
          assert.equal(ok.type, 'chunk-ok', JSON.stringify(ok));
        }
      };
      await upload(reused);
      await upload(garbage);
      await server.ageChunks(2 * DAY);

      // The device learns that `reused` is on the server and uploads `fresh`; its push comes later.
      const asked = await device.request({ type: 'has-chunks', hashes: packHashes(chunked.get(reused)!.map((c) => c.hash)) }, 'missing');
      assert.deepEqual(unpackHashes(asked.hashes), []);
      await upload(fresh);

      // All at once: collection, the push, a retention change that drops doc.bin's first version, and its restore.
      const admin = await env.admin();
      const [gc, pushed, , restored] = await Promise.all([
        server.maintain(),
        device.request({ type: 'push', ops: [putOp('revived.bin', reused, chunked.get(reused)!), putOp('fresh.bin', fresh, chunked.get(fresh)!)] }, 'pushed'),
        admin.request('PUT', '/settings', { versions: { keep: 2 } }),
        device.request({ type: 'restore', path: 'doc.bin', version: firstVersion }, 'done'),
      ]);
      await server.maintain();
      assert.deepEqual(pushed.results.map((r: any) => r.status), ['ok', 'ok'], JSON.stringify(pushed));
      assert.ok(gc.collection.removed >= chunked.get(garbage)!.length, JSON.stringify(gc));
      for (const c of chunked.get(garbage)!) assert.ok(!fs.existsSync(server.chunkFile(c.hash)), 'garbage chunk still on disk');
      for (const c of [...chunked.get(reused)!, ...chunked.get(fresh)!]) assert.ok(fs.existsSync(server.chunkFile(c.hash)), 'a pushed chunk was collected');
      // Either the restore came first (and doc.bin is its first content again) or retention did (and nothing changed).
      const expectedDoc = restored.type === 'done' ? docs[0] : docs[2];
      if (restored.type !== 'done') assert.match(restored.code, /NOT_FOUND|VERSION_UNKNOWN/);

      // A push naming a chunk that was collected meanwhile is refused whole, then succeeds once re-uploaded.
      const refused = await device.request({ type: 'push', ops: [putOp('late.bin', garbage, chunked.get(garbage)!)] }, 'pushed');
      assert.equal(refused.type, 'error');
      assert.equal(refused.code, 'CHUNK_MISSING');
      await upload(garbage);
      const accepted = await device.request({ type: 'push', ops: [putOp('late.bin', garbage, chunked.get(garbage)!)] }, 'pushed');
      assert.deepEqual(accepted.results.map((r: any) => r.status), ['ok']);
      device.sock.terminate();

      const desktop = await env.addDevice('desktop');
      await desktop.syncOnce();
      await laptop.syncOnce();
      for (const d of [desktop, laptop]) {
        assert.ok(fs.readFileSync(d.p('revived.bin')).equals(reused), `${d.name}: revived.bin`);
        assert.ok(fs.readFileSync(d.p('fresh.bin')).equals(fresh), `${d.name}: fresh.bin`);
        assert.ok(fs.readFileSync(d.p('late.bin')).equals(garbage), `${d.name}: late.bin`);
        assert.ok(fs.readFileSync(d.p('doc.bin')).equals(expectedDoc), `${d.name}: doc.bin`);
      }
      const verify = await server.verify();
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    });

    it('survives the server being killed in the middle of a collection', async () => {
      // A real server process this time, killed with SIGKILL while its start-up collection sweeps.
      const db = await kind.create();
      const server = new TestServer(db);
      const laptop = new TestDevice('laptop');
      const desktop = new TestDevice('desktop');
      try {
        await server.start();
        assert.equal((await laptop.pair(await server.pairingLink())).code, 0);
        for (let i = 0; i < 20; i++) laptop.write(`photos/p${i}.bin`, randomBytes(20_000 + i));
        await laptop.syncOnce();
        await server.stop();

        const chunksDir = path.join(server.dataDir, 'chunks');
        const listChunks = () => fs.readdirSync(chunksDir).filter((d) => d.length === 2).flatMap((d) => fs.readdirSync(path.join(chunksDir, d)));
        const referenced = new Set(listChunks());
        const then = new Date(Date.now() - 2 * DAY);
        for (let i = 0; i < 3000; i++) {
          const data = randomBytes(64);
          const hash = sha256Hex(data);
          fs.mkdirSync(path.join(chunksDir, hash.slice(0, 2)), { recursive: true });
          fs.writeFileSync(path.join(chunksDir, hash.slice(0, 2), hash), data);
        }
        for (const d of fs.readdirSync(chunksDir).filter((x) => x.length === 2)) {
          for (const f of fs.readdirSync(path.join(chunksDir, d))) fs.utimesSync(path.join(chunksDir, d, f), then, then);
        }
        const total = listChunks().length;

        await server.start();
        await waitFor('the collection to start removing garbage', () => listChunks().length < total, 30_000, 1);
        await server.stop('SIGKILL');
        await server.start();
        await waitFor('the collection to finish after the restart', () => listChunks().length === referenced.size, 60_000);
        assert.deepEqual(new Set(listChunks()), referenced);

        // The restarted server listens on a new port: a new device reads everything back from it.
        assert.equal((await desktop.pair(await server.pairingLink())).code, 0);
        await desktop.syncOnce();
        assert.deepEqual(sortedTree(desktop.tree()), sortedTree(laptop.tree()));
        const verify = await keepsync(['server', 'verify', '--data', server.dataDir, ...(db.url ? ['--database-url', db.url] : [])]);
        assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      } finally {
        await laptop.cleanup();
        await desktop.cleanup();
        await server.cleanup();
        await db.drop();
      }
    });

    it('server verify reports a corrupt and a missing chunk with the files they belong to', async () => {
      const { server } = env;
      const laptop = await env.addDevice('laptop');
      const texts = { 'a.txt': 'alpha '.repeat(100), 'notes/b.txt': 'bravo '.repeat(100), 'c.txt': 'charlie '.repeat(100) };
      for (const [p, t] of Object.entries(texts)) laptop.write(p, t);
      await laptop.syncOnce();

      const healthy = await server.verify();
      assert.equal(healthy.code, 0, healthy.stderr);
      assert.match(healthy.stdout, /^ok: 3 chunks \(\d+ bytes\) of 3 versions in 1 folders are present and intact\n$/);

      // Small files are one chunk each, named by the SHA-256 of the whole file.
      const [ha, hb] = [sha256Hex(Buffer.from(texts['a.txt'])), sha256Hex(Buffer.from(texts['notes/b.txt']))];
      const corrupt = Buffer.from(texts['a.txt']);
      corrupt[10] ^= 0xff;
      fs.writeFileSync(server.chunkFile(ha), corrupt);
      fs.rmSync(server.chunkFile(hb));

      const broken = await server.verify();
      assert.equal(broken.code, 1);
      const lines = broken.stdout.trim().split('\n').sort();
      assert.equal(lines.length, 2, broken.stdout);
      assert.match(lines[0], new RegExp(`^corrupt chunk ${ha}: needed by Sync/a\\.txt \\(current version \\d+\\)$`));
      assert.match(lines[1], new RegExp(`^missing chunk ${hb}: needed by Sync/notes/b\\.txt \\(current version \\d+\\)$`));
      assert.match(broken.stderr, /^keepsync: verify found 2 of 3 chunks missing or corrupt, affecting 2 versions of 2 files; restore .* from a backup.*\n$/);
      assert.doesNotMatch(broken.stderr + broken.stdout, /\s+at /, 'no stack trace');

      // An index damaged by hand: the folder row of notes/ is gone while its file remains.
      const db = await openDatabase({ dataDir: server.dataDir, databaseUrl: server.db.url });
      try {
        assert.equal(await db('entries').where({ path: 'notes', kind: 'dir' }).delete(), 1);
      } finally {
        await db.destroy();
      }
      const orphaned = await server.verify();
      assert.equal(orphaned.code, 1);
      assert.match(orphaned.stdout, /^entry without a parent folder: Sync\/notes\/b\.txt$/m);
      assert.match(orphaned.stderr, /and 1 index problem;/);
    });
  });
});
