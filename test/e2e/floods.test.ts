import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { CloseCode } from '@keepsync/protocol';
import { MAX_CONNECTIONS_PER_ADDRESS, MAX_UNAUTHENTICATED_PER_ADDRESS } from '@keepsync/server';
import { scenario, type Scenario, type TestDevice } from '../helpers/cluster.js';
import { databaseKinds } from '../helpers/databases.js';
import { AdminClient, RawSocket, redeemPairing, syncUrl } from '../helpers/rawDevice.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Connection floods against a real server process (SAFETY.md F5, I9): ten
 * thousand TLS connections, slowloris, header floods, unauthenticated
 * WebSocket upgrades. The attacks come from other loopback addresses
 * (127.0.0.2 and up) than the devices (127.0.0.1), as from another machine.
 * Throughout, two paired devices keep syncing; the server must not crash,
 * its resident memory is sampled (printed, and held to a generous bound);
 * afterwards a new device pairs and syncs. Figures are printed, never timed.
 * KEEPSYNC_FLOOD_CONNECTIONS sets the size of the connection flood (10,000),
 * KEEPSYNC_FLOOD_TLS how many of them also complete a TLS handshake (1,000).
 */

const CONNECTIONS = Number(process.env.KEEPSYNC_FLOOD_CONNECTIONS) || 10_000;
/** TLS handshakes cost the server (and this test) CPU: fewer by default (KEEPSYNC_FLOOD_TLS). */
const TLS_CONNECTIONS = Number(process.env.KEEPSYNC_FLOOD_TLS) || 1_000;
/** The server's memory may grow this much under any flood: far below what unbounded buffering would take. */
const RSS_GROWTH_BOUND_MIB = 400;

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

/** Samples a process's resident memory every 100 ms until stopped; answers the peak, in MiB. */
function sampleRss(pid: number): { stop(): number } {
  let peak = rssMiB(pid);
  const t = setInterval(() => {
    try {
      peak = Math.max(peak, rssMiB(pid));
    } catch {
      // the process is gone: the test sees it
    }
  }, 100);
  return {
    stop() {
      clearInterval(t);
      return peak;
    },
  };
}

/** An attacker's socket: open until the server (or the test) closes it. */
interface Held {
  socket: net.Socket;
  openedAt: number;
  closedAt?: number;
  /** The first bytes the server answered (an HTTP status line, or nothing). */
  answer: string;
}

function hold(socket: net.Socket): Held {
  const h: Held = { socket, openedAt: Date.now(), answer: '' };
  socket.on('error', () => {});
  socket.on('data', (d: Buffer) => {
    if (h.answer.length < 200) h.answer += d.toString('latin1');
  });
  socket.on('close', () => (h.closedAt = Date.now()));
  return h;
}

/** A TLS connection from `localAddress`, resolved once the handshake is done (or the connection is gone). */
function tlsConnect(port: number, localAddress: string): Promise<Held> {
  return new Promise((resolve) => {
    const socket = tls.connect({ socket: net.connect({ host: '127.0.0.1', port, localAddress }), rejectUnauthorized: false });
    const h = hold(socket);
    socket.once('secureConnect', () => resolve(h));
    socket.once('close', () => resolve(h));
  });
}

/** A plain TCP connection (no TLS at all) from `localAddress`. */
function tcpConnect(port: number, localAddress: string): Promise<Held> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    const h = hold(socket);
    socket.once('connect', () => resolve(h));
    socket.once('close', () => resolve(h));
  });
}

/** Runs `fn` over `n` items, `width` at a time. */
async function inBatches<T>(n: number, width: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i += width) out.push(...(await Promise.all(Array.from({ length: Math.min(width, n - i) }, (_, j) => fn(i + j)))));
  return out;
}

const open = (hs: Held[]) => hs.filter((h) => h.closedAt === undefined).length;
const median = (xs: number[]) => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]);
const upgradeRequest = (host: string) =>
  `GET /api/v1/sync HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;

const figures: Record<string, unknown> = {};
after(() => {
  if (Object.keys(figures).length > 0) process.stderr.write(`    flood figures: ${JSON.stringify(figures)}\n`);
});

describe('Connection floods against a real server (F5, SQLite only: the database is not what floods reach)', function () {
  this.timeout(600_000);
  let s: Scenario;
  let laptop: TestDevice;
  let desktop: TestDevice;
  let pid: number;
  let rssBefore: number;
  let round = 0;
  const attackers: Held[] = [];

  before(async () => {
    s = await scenario(databaseKinds()[0]);
    laptop = await s.addDevice('laptop');
    desktop = await s.addDevice('desktop');
    await laptop.start();
    await desktop.start();
    pid = s.server.proc.child.pid!;
    rssBefore = rssMiB(pid);
  });
  afterEach(() => {
    for (const h of attackers.splice(0)) h.socket.destroy();
  });
  after(async () => {
    await s?.cleanup();
  });

  /** One device writes a file and the other gets it: they keep syncing. */
  async function stillSyncing(): Promise<number> {
    const name = `during-${++round}.txt`;
    const started = Date.now();
    laptop.write(name, `written while under attack, round ${round}`);
    await waitFor(`${name} to reach the desktop`, () => desktop.read(name) === `written while under attack, round ${round}`, 120_000);
    return Date.now() - started;
  }

  /** The server process is alive, and its memory grew within the bound. */
  function survived(peak: number, what: string): void {
    assert.equal(s.server.proc.running, true, `the server died during ${what}: ${s.server.proc.stderr.slice(-2000)}`);
    assert.ok(peak - rssBefore < RSS_GROWTH_BOUND_MIB, `the server's memory grew by ${Math.round(peak - rssBefore)} MiB during ${what}`);
  }

  /** Afterwards, a new device pairs and syncs everything, and the admin page's API answers. */
  async function servesNormally(): Promise<void> {
    const fresh = await s.addDevice(`fresh-${round}`);
    await fresh.syncOnce(120_000);
    assert.equal(fresh.read(`during-${round}.txt`), `written while under attack, round ${round}`);
    const admin = await AdminClient.login(s.server);
    assert.ok((await admin.devices()).some((d) => d.name === 'laptop' && d.online));
  }

  it(`holds ${CONNECTIONS.toLocaleString('en')} connections at once from many addresses, and TLS connections and upgrades, closing every one that says nothing`, async () => {
    const rss = sampleRss(pid);
    let peakOpen = 0;
    const counter = setInterval(() => (peakOpen = Math.max(peakOpen, open(attackers))), 100);
    // Plain TCP, never starting TLS, 250 from each of many addresses (a botnet): cheap to open by the ten thousand.
    // 500 at a time: more overflow the listen backlog, and a connection the kernel dropped there looks open here forever.
    const started = Date.now();
    const tcp = await inBatches(CONNECTIONS, 500, async (i) => {
      const h = await tcpConnect(s.server.port, `127.0.1.${2 + Math.floor(i / 250)}`);
      attackers.push(h);
      return h;
    });
    const tcpOpenedIn = Date.now() - started;
    const tcpOpenAtOnce = open(tcp);
    // Full TLS handshakes, a third of them then asking for a WebSocket without ever saying hello.
    const tlsStarted = Date.now();
    const tlsHeld = await inBatches(TLS_CONNECTIONS, 100, async (i) => {
      const h = await tlsConnect(s.server.port, `127.0.2.${2 + Math.floor(i / 200)}`);
      attackers.push(h);
      if (i % 3 === 0 && h.closedAt === undefined) h.socket.write(upgradeRequest('127.0.0.1'));
      return h;
    });
    const tlsOpenedIn = Date.now() - tlsStarted;
    const syncMs = await stillSyncing();
    await waitFor('the server to close every flooding connection', () => open(attackers) === 0, 60_000, 500);
    clearInterval(counter);
    const peak = rss.stop();
    const lifetimes = (hs: Held[]) => ({ median: median(hs.map((h) => h.closedAt! - h.openedAt)), longest: Math.max(...hs.map((h) => h.closedAt! - h.openedAt)) });
    Object.assign(figures, {
      connections: {
        tcp: CONNECTIONS, tcpOpenedInMs: tcpOpenedIn, tcpOpenAtOnce, tcpLifetimeMs: lifetimes(tcp),
        tls: TLS_CONNECTIONS, tlsOpenedInMs: tlsOpenedIn, tlsLifetimeMs: lifetimes(tlsHeld), peakOpenAtOnce: peakOpen,
        deviceSyncWhileHeldMs: syncMs, serverRssMiB: { before: Math.round(rssBefore), peak: Math.round(peak), after: Math.round(rssMiB(pid)) },
      },
    });
    console.log(`      ${JSON.stringify(figures.connections)}`);
    survived(peak, 'the connection flood');
    await servesNormally();
  });

  it(`holds at most ${MAX_CONNECTIONS_PER_ADDRESS} connections from one address, closing more at once`, async () => {
    const rss = sampleRss(pid);
    const n = 4 * MAX_CONNECTIONS_PER_ADDRESS;
    const held = await inBatches(n, 200, async () => {
      const h = await tcpConnect(s.server.port, '127.0.0.2');
      attackers.push(h);
      return h;
    });
    // A connection refused at once closes within moments; give them those moments.
    await waitFor('the server to close the connections over the limit', () => open(held) <= MAX_CONNECTIONS_PER_ADDRESS, 5_000, 100);
    const atOnce = open(held);
    const syncMs = await stillSyncing();
    const peak = rss.stop();
    Object.assign(figures, { oneAddress: { tried: n, heldAtOnce: atOnce, deviceSyncMs: syncMs, serverRssPeakMiB: Math.round(peak) } });
    console.log(`      ${JSON.stringify(figures.oneAddress)}`);
    assert.ok(atOnce > 0 && atOnce <= MAX_CONNECTIONS_PER_ADDRESS, `${atOnce} held at once`);
    survived(peak, 'the flood from one address');
  });

  it('closes slowloris connections (headers a byte at a time, and TLS handshakes a byte at a time)', async () => {
    const rss = sampleRss(pid);
    const started = Date.now();
    const n = 500;
    // Half complete TLS and then send a request's headers a byte every 2 s; half never finish the TLS handshake.
    const headers = await inBatches(n / 2, 100, async () => tlsConnect(s.server.port, '127.0.0.3'));
    const raw = await inBatches(n / 2, 100, async () => tcpConnect(s.server.port, '127.0.3.3'));
    attackers.push(...headers, ...raw);
    const request = Buffer.from(`GET /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\n${'X-Slow: a\r\n'.repeat(1000)}\r\n`);
    // A TLS ClientHello's first bytes: a record header announcing 512 bytes that never come whole.
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, ...Buffer.alloc(64, 7)]);
    let offset = 0;
    const drip = setInterval(() => {
      for (const h of headers) if (h.closedAt === undefined) h.socket.write(request.subarray(offset, offset + 1));
      for (const h of raw) if (h.closedAt === undefined && offset < hello.length) h.socket.write(hello.subarray(offset, offset + 1));
      offset++;
    }, 2000);
    try {
      const syncMs = await stillSyncing();
      await waitFor('the server to close every slowloris connection', () => open(attackers) === 0, 60_000, 500);
      const peak = rss.stop();
      const life = (hs: Held[]) => ({ median: median(hs.map((h) => h.closedAt! - h.openedAt)), longest: Math.max(...hs.map((h) => h.closedAt! - h.openedAt)) });
      Object.assign(figures, {
        slowloris: {
          connections: n, headersLifetimeMs: life(headers), tlsHandshakeLifetimeMs: life(raw), allClosedInMs: Date.now() - started,
          deviceSyncWhileHeldMs: syncMs, serverRssPeakMiB: Math.round(peak),
        },
      });
      console.log(`      ${JSON.stringify(figures.slowloris)}`);
      survived(peak, 'slowloris');
      // Nothing half-sent was answered as if whole.
      for (const h of headers) assert.doesNotMatch(h.answer, /^HTTP\/1\.1 2/, h.answer);
    } finally {
      clearInterval(drip);
    }
    await servesNormally();
  });

  it('answers huge and countless headers with 431 and closes, without growing', async () => {
    const rss = sampleRss(pid);
    const kinds = {
      'one 1 MiB header': `GET /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(1024 * 1024)}\r\n\r\n`,
      '20,000 headers': `GET /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\n${'X-A: b\r\n'.repeat(20_000)}\r\n`,
      'an upgrade with 64 KiB of cookies': `GET /api/v1/sync HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: ${'c=d; '.repeat(13_000)}\r\n\r\n`,
    };
    const statuses: Record<string, Record<string, number>> = {};
    for (const [what, request] of Object.entries(kinds)) {
      const held = await inBatches(200, 50, async () => {
        const h = await tlsConnect(s.server.port, '127.0.0.4');
        attackers.push(h);
        h.socket.write(request);
        return h;
      });
      await waitFor(`the server to close every connection sending ${what}`, () => open(held) === 0, 120_000, 250);
      statuses[what] = {};
      for (const h of held) {
        const status = /^HTTP\/1\.1 (\d+)/.exec(h.answer)?.[1] ?? 'closed without an answer';
        statuses[what][status] = (statuses[what][status] ?? 0) + 1;
      }
      assert.ok(held.every((h) => !/^HTTP\/1\.1 [23]/.test(h.answer)), `${what}: ${JSON.stringify(statuses[what])}`);
    }
    const syncMs = await stillSyncing();
    const peak = rss.stop();
    Object.assign(figures, { headers: { statuses, deviceSyncMs: syncMs, serverRssPeakMiB: Math.round(peak) } });
    console.log(`      ${JSON.stringify(figures.headers)}`);
    survived(peak, 'the header flood');
    await servesNormally();
  });

  it('lets a device in during a flood of unauthenticated upgrades and bad tokens from one address, and closes them by the hello deadline', async () => {
    const rss = sampleRss(pid);
    const real = await redeemPairing(s.server, 'real');
    // Upgrades that never say hello, from one address, far more than the server takes.
    const silent = await inBatches(1000, 100, async () => {
      const sock = new RawSocket(syncUrl(s.server), {}, { localAddress: '127.0.0.5' });
      await sock.opened.catch(() => {});
      return sock;
    });
    const accepted = silent.filter((x) => x.isOpen);
    const refusedStatuses = [...new Set(silent.map((x) => x.refusedStatus).filter((x) => x !== undefined))];
    // While they are held, a device that was not connected comes in (from its own address).
    assert.ok(accepted.some((x) => x.isOpen), 'the silent upgrades were closed before a device tried');
    const { sock: device, welcome } = await RawSocket.welcomed(s.server, real.token);
    assert.equal(welcome.deviceName, 'real');
    device.terminate();
    // Hellos with tokens that do not exist, from other addresses.
    const badTokens = await inBatches(500, 100, async (i) => {
      const sock = new RawSocket(syncUrl(s.server), {}, { localAddress: `127.0.0.${6 + (i % 10)}` });
      try {
        await sock.opened;
        sock.hello(i.toString(16).padStart(64, '0'));
        return await sock.waitClosed(30_000);
      } catch {
        return sock.refusedStatus ?? -1;
      }
    });
    const syncMs = await stillSyncing();
    const started = Date.now();
    await waitFor('the server to close every upgrade that said nothing', () => silent.every((x) => !x.isOpen), 60_000, 250);
    const peak = rss.stop();
    const codes: Record<string, number> = {};
    for (const c of badTokens) codes[c] = (codes[c] ?? 0) + 1;
    Object.assign(figures, {
      upgrades: {
        silentTried: silent.length, silentAccepted: accepted.length, refusedWith: refusedStatuses,
        silentCloseCodes: [...new Set(accepted.map((x) => x.closeCode))], closedWithinMsAfterFlood: Date.now() - started,
        badTokenCloseCodes: codes, deviceSyncMs: syncMs, serverRssPeakMiB: Math.round(peak),
      },
    });
    console.log(`      ${JSON.stringify(figures.upgrades)}`);
    assert.ok(accepted.length > 0 && accepted.length <= MAX_UNAUTHENTICATED_PER_ADDRESS, `accepted ${accepted.length} of ${silent.length}`);
    assert.ok(accepted.every((x) => x.received.length === 0), 'a connection without hello was sent data');
    assert.ok(accepted.every((x) => x.closeCode === CloseCode.HANDSHAKE_TIMEOUT), `closed with ${JSON.stringify(figures.upgrades)}`);
    assert.ok(badTokens.every((c) => c === CloseCode.TOKEN_INVALID || c === 503), JSON.stringify(codes));
    survived(peak, 'the upgrade flood');
    await servesNormally();
  });
});
