import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import type { Duplex } from 'node:stream';
import { MAX_CHUNK_SIZE, MAX_FRAME, decodeServerMessage, encodeMessage, packHashes, unpackManifest, type RelPath, type ServerMessage } from '@keepsync/protocol';
import type { ContentStore } from '@keepsync/server';
import { scenario, type Scenario, type TestDevice } from '../helpers/cluster.js';
import { databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { RawSocket, putOp, redeemPairing } from '../helpers/rawDevice.js';
import { waitFor } from '../helpers/wait.js';
import { InProcessServer } from '../helpers/inProcessServer.js';

/*
 * Slow and greedy devices cannot make the server buffer without bound
 * (SAFETY.md I9; issue: sync over the internet). A real server process, real
 * TLS and real authenticated device connections: one asks for hundreds of
 * MiB of chunks and never reads its socket, one uploads far faster than the
 * server stores, one floods small requests while not reading. The server's
 * resident memory is sampled throughout and must stay within a bound far
 * below what was asked of it, while other devices keep syncing. Figures are
 * printed; the bounds are generous so that no timing can make them flaky.
 * Buffering does not depend on the database: SQLite only.
 */

const MiB = 1024 * 1024;
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest();

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Samples a process's resident memory every 50 ms until stopped; answers the peak, in MiB. */
function sampleRss(pid: number): { stop(): number } {
  let peak = rssKiB(pid);
  const t = setInterval(() => {
    peak = Math.max(peak, rssKiB(pid));
  }, 50);
  return {
    stop() {
      clearInterval(t);
      return Math.max(peak, rssKiB(pid)) / 1024;
    },
  };
}

/** The TCP (TLS) socket under a raw device connection, to stop reading from it as a stalled device would. */
const socketOf = (sock: RawSocket) => (sock.ws as unknown as { _socket: Duplex })._socket;

/** Counts the server's frames on a raw connection instead of keeping them (hundreds of MiB of chunks). */
function countFrames(sock: RawSocket): Map<ServerMessage['type'], number> {
  const counts = new Map<ServerMessage['type'], number>();
  sock.ws.removeAllListeners('message');
  sock.ws.on('message', (data) => {
    const m = decodeServerMessage(data as Buffer);
    counts.set(m.type, (counts.get(m.type) ?? 0) + 1);
    if (m.type === 'error' || m.type === 'changed') sock.received.push(m);
  });
  return counts;
}

/** Waits until `value` stays the same over 2 s (something stalled or finished). */
async function steadyValue(what: string, value: () => number): Promise<void> {
  let last = Number.NaN;
  let still = 0;
  await waitFor(what, () => {
    const now = value();
    still = now === last ? still + 1 : 0;
    last = now;
    return still >= 8;
  }, 120_000, 250);
}

const figures: Record<string, unknown> = {};
after(() => {
  if (Object.keys(figures).length > 0) process.stderr.write(`    backpressure figures: ${JSON.stringify(figures)}\n`);
});

describe('Slow and greedy devices (SQLite only: buffering does not depend on the database)', function () {
  this.timeout(300_000);
  let s: Scenario;
  let steady: TestDevice;
  let other: TestDevice;
  const sockets: RawSocket[] = [];
  const timers: NodeJS.Timeout[] = [];
  const savedTrace = process.env.KEEPSYNC_TRACE;

  beforeEach(async () => {
    // The server traces the chunks it sends and when it stops reading a device.
    process.env.KEEPSYNC_TRACE = '1';
    try {
      s = await scenario(databaseKinds()[0]);
    } finally {
      if (savedTrace === undefined) delete process.env.KEEPSYNC_TRACE;
      else process.env.KEEPSYNC_TRACE = savedTrace;
    }
    steady = await s.addDevice('steady');
    other = await s.addDevice('other');
  });
  afterEach(async () => {
    for (const t of timers.splice(0)) clearInterval(t);
    for (const sock of sockets.splice(0)) sock.terminate();
    await s.cleanup();
  });

  /** The server is alive and other devices keep syncing: a file from one device reaches another. */
  async function othersKeepSyncing(name: string): Promise<void> {
    steady.write(name, `written while ${name}`);
    await steady.syncOnce();
    await other.syncOnce();
    assert.equal(other.read(name), `written while ${name}`);
  }

  /** A raw authenticated connection that says something small every second, as a live device does (the server drops silent ones). */
  async function rawDevice(name: string): Promise<RawSocket> {
    const { token } = await redeemPairing(s.server, name);
    const { sock } = await RawSocket.welcomed(s.server, token);
    sockets.push(sock);
    return sock;
  }
  function keepTalking(sock: RawSocket): void {
    timers.push(setInterval(() => sock.isOpen && sock.send({ type: 'has-chunks', id: 1, hashes: packHashes([]) }), 1000));
  }

  /** The chunks of a file on the server, asked for over a raw connection. */
  async function chunksOf(sock: RawSocket, file: string): Promise<Array<{ hash: string; size: number }>> {
    sock.send({ type: 'list', id: 2, since: 0 });
    const entry = (await sock.next('changes', (m) => m.id === 2)).entries.find((e) => e.path === file)!;
    sock.send({ type: 'get-manifest', id: 3, version: entry.version, base: 0 });
    const answer = await sock.next('manifest', (m) => m.id === 3);
    assert.ok('full' in answer.manifest);
    return unpackManifest(answer.manifest.full);
  }

  it('stops sending to a device that asked for 256 MiB of chunks and does not read, holding little memory, while others sync', async () => {
    const content = randomBytes(64 * MiB);
    steady.write('big.bin', content);
    await steady.syncOnce();
    const sock = await rawDevice('stalled');
    const chunks = await chunksOf(sock, 'big.bin');
    const frames = countFrames(sock);

    const pid = s.server.proc.child.pid!;
    const sentTo = () => s.server.proc.stderr.split('\n').filter((l) => / to stalled$/.test(l)).reduce((n, l) => n + Number(l.split(' ')[3]), 0);
    const rssBefore = rssKiB(pid) / 1024;
    const rss = sampleRss(pid);
    socketOf(sock).pause();
    keepTalking(sock);
    // Four times every chunk of the file, 16 to a request: 256 MiB asked for.
    const ROUNDS = 4;
    let requests = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < chunks.length; i += 16) {
        sock.send({ type: 'get-chunks', id: 100 + requests++, hashes: packHashes(chunks.slice(i, i + 16).map((c) => c.hash)) });
      }
    }
    const asked = ROUNDS * content.length;
    // The requests are all out, and the server has filled what the socket can hold and stopped.
    await waitFor('the requests to reach the server', () => sock.ws.bufferedAmount === 0, 30_000, 50);
    await steadyValue('the server to stop sending', sentTo);
    const sentWhileStalled = sentTo();

    // Changes made meanwhile are not queued one notice each for the stalled device.
    const pusher = await rawDevice('pusher');
    let lastSeq = 0;
    const CHANGES = 50;
    for (let i = 0; i < CHANGES; i++) {
      pusher.send({ type: 'push', id: 10 + i, ops: [{ op: 'mkdir', path: `burst-${i}` as RelPath }] });
      const [r] = (await pusher.next('pushed', (m) => m.id === 10 + i)).results;
      assert.equal(r.status, 'ok', JSON.stringify(r));
      lastSeq = Math.max(lastSeq, (r as { seq: number }).seq);
    }
    await othersKeepSyncing('stalled.txt');
    // Another device downloads the same big file meanwhile, whole.
    await other.syncOnce(120_000);
    assert.ok(other.exists('big.bin') && sha256(fs.readFileSync(other.p('big.bin'))).equals(sha256(content)));
    const peak = rss.stop();
    const grown = peak - rssBefore;

    // Reading again, the device gets everything it asked for: the server waited, it dropped nothing.
    socketOf(sock).resume();
    const wanted = ROUNDS * chunks.length;
    await waitFor(`all ${wanted} chunks (got ${frames.get('chunk-data') ?? 0})`, () => frames.get('chunk-data') === wanted, 180_000, 100);
    assert.ok(sock.isOpen, `the connection closed: ${sock.closeCode} ${sock.closeReason}`);
    assert.deepEqual(sock.received.filter((m) => m.type === 'error'), []);
    await waitFor('a notice of the latest change', () => sock.received.some((m) => m.type === 'changed' && m.seq >= lastSeq), 10_000, 50);
    const notices = sock.received.filter((m) => m.type === 'changed').length;
    assert.ok(notices <= 3, `${notices} change notices for ${CHANGES + 1} changes made while the device was not reading`);

    figures.stalledReader = {
      askedMiB: asked / MiB, requests, sentBeforeStallMiB: +(sentWhileStalled / MiB).toFixed(1), changesMeanwhile: CHANGES + 1, noticesAfter: notices,
      serverRssMiB: { before: Math.round(rssBefore), peak: Math.round(peak), grown: Math.round(grown) },
    };
    process.stderr.write(`      stalled reader: ${JSON.stringify(figures.stalledReader)}\n`);
    // The session's 4 MiB high-water mark plus what the kernel's socket buffers hold.
    assert.ok(sentWhileStalled <= 64 * MiB, `the server sent ${(sentWhileStalled / MiB).toFixed(1)} MiB to a device that read nothing`);
    assert.ok(grown < 128, `server memory grew by ${grown.toFixed(0)} MiB while ${asked / MiB} MiB were asked of it`);
  });

  it('stops reading from a device that uploads faster than chunks are stored, holding little memory, while others sync', async () => {
    const sock = await rawDevice('flooder');
    const frames = countFrames(sock);
    const pid = s.server.proc.child.pid!;
    const rssBefore = rssKiB(pid) / 1024;
    const rss = sampleRss(pid);
    // 32 distinct chunks of the largest size a device makes (16 MiB), all sent at once without waiting for a single chunk-ok.
    const CHUNKS = 32;
    const base = randomBytes(MAX_CHUNK_SIZE);
    for (let i = 0; i < CHUNKS; i++) {
      const data = Buffer.from(base);
      data.writeUInt32BE(i, 0);
      sock.send({ type: 'put-chunk', id: 1000 + i, hash: sha256(data), data });
    }
    keepTalking(sock);
    await othersKeepSyncing('flood.txt');
    await waitFor(`all ${CHUNKS} chunks stored (got ${frames.get('chunk-ok') ?? 0})`, () => frames.get('chunk-ok') === CHUNKS, 180_000, 100);
    const peak = rss.stop();
    const grown = peak - rssBefore;
    assert.deepEqual(sock.received.filter((m) => m.type === 'error'), []);
    // Each time the server stopped reading, it says how many bytes of received frames were waiting.
    const pending = s.server.proc.stderr.split('\n').map((l) => /trace: reading paused for flooder \((\d+) bytes pending\)/.exec(l)).filter((m) => m !== null).map((m) => Number(m[1]));
    const mostPending = Math.max(0, ...pending);
    figures.uploadFlood = {
      sentMiB: (CHUNKS * MAX_CHUNK_SIZE) / MiB, serverPausedReading: pending.length,
      mostPendingMiB: +(mostPending / MiB).toFixed(1), serverRssMiB: { before: Math.round(rssBefore), peak: Math.round(peak), grown: Math.round(grown) },
    };
    process.stderr.write(`      upload flood: ${JSON.stringify(figures.uploadFlood)}\n`);
    assert.ok(pending.length > 0, 'the server never had to stop reading: the flood did not outrun it');
    // The session's 24 MiB inbound mark, passed by at most one frame.
    assert.ok(mostPending <= 24 * MiB + MAX_FRAME + 64 * 1024, `${mostPending} bytes were waiting when the server stopped reading`);
    // 24 MiB of frames waiting, the frame that passed the mark, copies being hashed and written, and the socket buffers.
    assert.ok(grown < 192, `server memory grew by ${grown.toFixed(0)} MiB while ${(CHUNKS * MAX_CHUNK_SIZE) / MiB} MiB were pushed at it`);
  });

  it('stops reading from a device that floods small requests and reads nothing, holding little memory, and drops it as dead', async () => {
    const content = randomBytes(16 * MiB);
    steady.write('medium.bin', content);
    await steady.syncOnce();
    const sock = await rawDevice('chatty');
    const chunks = await chunksOf(sock, 'medium.bin');
    const pid = s.server.proc.child.pid!;
    const rssBefore = rssKiB(pid) / 1024;
    const rss = sampleRss(pid);
    socketOf(sock).pause();
    keepTalking(sock);
    // Chunks enough to fill the socket, then a flood of small requests, each with a small answer.
    for (let round = 0; round < 4; round++) sock.send({ type: 'get-chunks', id: 5 + round, hashes: packHashes(chunks.map((c) => c.hash)) });
    const REQUESTS = 500_000;
    const started = Date.now();
    for (let i = 0; i < REQUESTS; i++) {
      sock.send({ type: 'list', id: 10 + i, since: 2 ** 40 });
      // Room for the frames to go out as they are made.
      if (i % 5_000 === 0) await new Promise((r) => setImmediate(r));
    }
    await othersKeepSyncing('chatty.txt');
    // The server stopped reading the device's requests, so it hears nothing from it any more: to the
    // heartbeat it is a dead peer, cut within two intervals, which frees what it held.
    const code = await sock.waitClosed(45_000);
    const cutAfter = (Date.now() - started) / 1000;
    const peak = rss.stop();
    const grown = peak - rssBefore;
    const paused = s.server.proc.stderr.split('\n').filter((l) => /trace: reading paused for chatty/.test(l)).length;
    figures.smallRequestFlood = {
      requests: REQUESTS, requestsMiB: +((REQUESTS * encodeMessage({ type: 'list', id: 10 + REQUESTS, since: 2 ** 40 }).byteLength) / MiB).toFixed(1),
      serverPausedReading: paused, cutAfterSeconds: Math.round(cutAfter), serverRssMiB: { before: Math.round(rssBefore), peak: Math.round(peak), grown: Math.round(grown) },
    };
    process.stderr.write(`      small-request flood: ${JSON.stringify(figures.smallRequestFlood)}\n`);
    assert.ok(paused > 0, 'the server never stopped reading the flood');
    assert.equal(code, 1006, 'cut off (terminated), not closed by a protocol error');
    assert.ok(grown < 128, `server memory grew by ${grown.toFixed(0)} MiB while ${REQUESTS} requests waited`);
    await othersKeepSyncing('after-chatty.txt');
  });
});

/** The real content store, with its first `count` puts held back `ms` each: a disk that has fallen far behind. */
function slowFirstPuts(store: ContentStore, count: number, ms: number): ContentStore {
  let slow = count;
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'put') {
        return async (hash: string, data: Uint8Array) => {
          if (slow-- > 0) await new Promise((r) => setTimeout(r, ms));
          return target.put(hash, data);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** A content store whose first `flush` (a push making its chunks durable) takes `ms`. */
function slowFirstFlush(store: ContentStore, ms: number): ContentStore {
  let slow = true;
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'flush') {
        return async () => {
          if (slow) {
            slow = false;
            await new Promise((r) => setTimeout(r, ms));
          }
          return target.flush();
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('A server whose disk falls behind (in process, its content store slowed down; SQLite only)', function () {
  this.timeout(180_000);
  let db: TestDatabase;
  let server: InProcessServer;
  let sock: RawSocket | undefined;

  afterEach(async () => {
    sock?.terminate();
    await server?.cleanup();
    await db?.drop();
  });

  it('keeps a device whose uploads it stopped reading while they are stored, longer than the heartbeat allows silence', async () => {
    // The first two 16 MiB chunks take 25 s each to store: past the 24 MiB mark the server stops
    // reading the device for 25 s, longer than the 10-20 s after which a silent device is cut.
    const HOLD_MS = 25_000;
    db = await databaseKinds()[0].create();
    server = await new InProcessServer(db, { wrapContent: (store) => slowFirstPuts(store, 2, HOLD_MS) }).start();
    const { token } = await redeemPairing(server, 'patient');
    ({ sock } = await RawSocket.welcomed(server, token));
    const frames = countFrames(sock);
    const CHUNKS = 5;
    const base = randomBytes(MAX_CHUNK_SIZE);
    const started = Date.now();
    for (let i = 0; i < CHUNKS; i++) {
      const data = Buffer.from(base);
      data.writeUInt32BE(i, 0);
      sock.send({ type: 'put-chunk', id: 1000 + i, hash: sha256(data), data });
    }
    await waitFor(`all ${CHUNKS} chunks stored (got ${frames.get('chunk-ok') ?? 0})`, () => {
      if (!sock!.isOpen) throw new Error(`the server cut the device: ${sock!.closeCode} ${sock!.closeReason}`);
      return frames.get('chunk-ok') === CHUNKS;
    }, 120_000, 100);
    const seconds = (Date.now() - started) / 1000;
    figures.slowDisk = { chunks: CHUNKS, chunkMiB: MAX_CHUNK_SIZE / MiB, heldSeconds: HOLD_MS / 1000, storedAllAfterSeconds: Math.round(seconds) };
    process.stderr.write(`      slow disk: ${JSON.stringify(figures.slowDisk)}\n`);
    assert.ok(seconds * 1000 >= HOLD_MS, 'the slow puts were held back');
    assert.ok(sock.isOpen);
    assert.deepEqual(sock.received.filter((m) => m.type === 'error'), []);
  });

  it('takes the next files\' chunks while a push waits for its own to be durable', async () => {
    db = await databaseKinds()[0].create();
    server = await new InProcessServer(db, { wrapContent: (store) => slowFirstFlush(store, 3000) }).start();
    const { token } = await redeemPairing(server, 'pipelined');
    ({ sock } = await RawSocket.welcomed(server, token));
    const first = randomBytes(4096);
    const next = randomBytes(4096);
    sock.send({ type: 'put-chunk', id: 1, hash: sha256(first), data: first });
    await sock.next('chunk-ok', (m) => m.id === 1);
    sock.send({ type: 'push', id: 2, ops: [putOp('first.bin', first)] });
    // The next wave's question and upload, sent while the push waits for the disk.
    sock.send({ type: 'has-chunks', id: 3, hashes: packHashes([sha256(next).toString('hex')]) });
    sock.send({ type: 'put-chunk', id: 4, hash: sha256(next), data: next });
    await sock.next('pushed', (m) => m.id === 2, 20_000);
    const order = sock.received.filter((m) => 'id' in m && [2, 3, 4].includes(m.id as number)).map((m) => `${m.type} ${(m as { id: number }).id}`);
    assert.equal(order.length, 3, `three answers: ${order.join(', ')}`);
    assert.equal(order.at(-1), 'pushed 2', `the question and the upload were answered while the push waited, not after it: ${order.join(', ')}`);
    const pushed = await sock.next('pushed', (m) => m.id === 2);
    assert.equal(pushed.results[0].status, 'ok');
  });
});
