import assert from 'node:assert/strict';
import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import { CloseCode } from '@keepsync/protocol';
import { TestDevice, TestServer, forEachDatabase, scenario, tempDir, type Scenario } from '../helpers/cluster.js';
import { databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { NetNamespace, Relay } from '../helpers/network.js';
import { AdminClient, RawSocket, redeemPairing } from '../helpers/rawDevice.js';
import { ContentLog, serverTree } from '../helpers/serverContent.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Sync over a bad internet (issue: sync over the internet). Devices run in a
 * network namespace behind a 40 Mbit/s link each way (tc tbf) and reach the
 * server on the host through a relay that adds 50 ms each way, cuts the link
 * or drops everything silently. Network behaviour does not depend on the
 * database, so these run on SQLite only.
 */

const MiB = 1024 * 1024;
const MBIT = 40;
const ONE_WAY_MS = 50;
const bytesPerSecond = (MBIT * 1e6) / 8;

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const fileHash = (file: string) => sha256(fs.readFileSync(file));

/** Lines of a process's stderr trace that match `re`. */
const traced = (text: string, re: RegExp) => text.split('\n').filter((l) => re.test(l));

/** Figures measured by these tests, printed at the end. */
const figures: Record<string, unknown> = {};
after(() => {
  if (Object.keys(figures).length > 0) process.stderr.write(`    network figures: ${JSON.stringify(figures)}\n`);
});

describe('Network (SQLite only: behaviour does not depend on the database)', function () {
  this.timeout(300_000);
  let ns: NetNamespace | undefined;
  let relay: Relay;
  let db: TestDatabase;
  let server: TestServer;
  const devices: TestDevice[] = [];
  const savedTrace = process.env.KEEPSYNC_TRACE;

  before(async function () {
    try {
      ns = NetNamespace.create(MBIT);
    } catch (err) {
      process.stderr.write(`    network tests skipped: cannot create a network namespace here (needs root and iproute2): ${String(err).split('\n')[0]}\n`);
      this.skip();
    }
    relay = await Relay.listen(ns!.hostAddress, ONE_WAY_MS);
  });

  beforeEach(async () => {
    // The server traces every chunk it stores, so tests can count the ones received twice.
    process.env.KEEPSYNC_TRACE = '1';
    try {
      db = await databaseKinds()[0].create();
      server = await new TestServer(db, ['--public-url', `https://${ns!.hostAddress}:${relay.port}`]).start();
    } finally {
      if (savedTrace === undefined) delete process.env.KEEPSYNC_TRACE;
      else process.env.KEEPSYNC_TRACE = savedTrace;
    }
    relay.target = Number(new URL(server.url).port);
    relay.restore();
  });

  afterEach(async () => {
    for (const d of devices.splice(0)) await d.cleanup();
    await server?.cleanup();
  });

  after(async () => {
    await relay?.close();
    ns?.remove();
  });

  /** A device on the host, paired through the server's LAN (here: loopback) address. */
  async function lanDevice(name: string): Promise<TestDevice> {
    const d = new TestDevice(name);
    devices.push(d);
    const link = new URL(await server.pairingLink());
    link.host = new URL(server.url).host;
    const r = await d.pair(link.toString());
    assert.equal(r.code, 0, r.stderr);
    return d;
  }

  /** A device inside the namespace, paired through the relay (the server's public address). */
  async function remoteDevice(name: string, env: NodeJS.ProcessEnv = {}): Promise<TestDevice> {
    const d = new TestDevice(name);
    devices.push(d);
    d.prefix = ns!.prefix;
    d.env = env;
    const r = await d.pair(await server.pairingLink());
    assert.equal(r.code, 0, r.stderr);
    return d;
  }

  // Counted per test: each test has its own server.
  const storedLines = () => traced(server.proc.stderr, /trace: put-chunk \S+ \d+ stored/).length;
  const againLines = () => traced(server.proc.stderr, /trace: put-chunk \S+ \d+ received again/).length;

  it('pairs through the public URL and moves a 50 MiB file both ways at 100 ms round trip within 60% of the bandwidth', async () => {
    const up = await remoteDevice('laptop');
    const down = await remoteDevice('desktop');
    const content = randomBytes(50 * MiB);
    up.write('big.bin', content);

    const upFrom = relay.counts.up;
    let t = Date.now();
    await up.syncOnce(120_000);
    const upSeconds = (Date.now() - t) / 1000;
    const downFrom = relay.counts.down;
    t = Date.now();
    await down.syncOnce(120_000);
    const downSeconds = (Date.now() - t) / 1000;

    assert.equal(fileHash(down.p('big.bin')), sha256(content));
    // The link's steady rate during each transfer (process start and hashing left out), and end to end.
    const upShare = relay.steadyRate('up', upFrom, content.length) / bytesPerSecond;
    const downShare = relay.steadyRate('down', downFrom, content.length) / bytesPerSecond;
    const mbit = (seconds: number) => +((content.length * 8) / seconds / 1e6).toFixed(1);
    figures.throughput = {
      bandwidthMbit: MBIT, rttMs: 2 * ONE_WAY_MS, fileMiB: 50,
      upShare: +upShare.toFixed(2), downShare: +downShare.toFixed(2),
      upEndToEndMbit: mbit(upSeconds), downEndToEndMbit: mbit(downSeconds),
    };
    process.stderr.write(`    throughput: ${JSON.stringify(figures.throughput)}\n`);
    assert.ok(upShare >= 0.6, `upload reached ${(upShare * 100).toFixed(0)}% of ${MBIT} Mbit/s`);
    assert.ok(downShare >= 0.6, `download reached ${(downShare * 100).toFixed(0)}% of ${MBIT} Mbit/s`);
  });

  it('resumes an upload cut mid-way without the server receiving chunks again', async () => {
    const d = await remoteDevice('upcut');
    const content = randomBytes(16 * MiB);
    d.write('cut-up.bin', content);
    const upBefore = relay.counts.up;
    await d.start();
    // Cut once about a third of the chunks are stored.
    await waitFor('a third of the upload', () => storedLines() > 80, 60_000, 50);
    relay.cut();
    await new Promise((r) => setTimeout(r, 1500));
    relay.restore();
    const check = await lanDevice('upcut-check');
    await waitFor('the cut upload to complete on the server', async () => {
      await check.syncOnce();
      return check.exists('cut-up.bin');
    }, 120_000, 500);
    assert.equal(fileHash(check.p('cut-up.bin')), sha256(content));
    const again = againLines();
    const extraMiB = (relay.counts.up - upBefore - content.length) / MiB;
    figures.uploadCut = { fileMiB: 16, chunksStored: storedLines(), chunksReceivedTwice: again, extraBytesUpMiB: +extraMiB.toFixed(2) };
    process.stderr.write(`    upload cut: ${JSON.stringify(figures.uploadCut)}\n`);
    assert.match(d.live!.stderr, /reconnecting/, 'the device should have noticed the cut');
    assert.ok(again <= 4, `${again} chunks reached the server twice`);
    await d.stop();
  });

  it('resumes a download cut mid-way, keeping the chunks that arrived, and leaves no temp file', async () => {
    const src = await lanDevice('downsrc');
    const content = randomBytes(16 * MiB);
    src.write('cut-down.bin', content);
    await src.syncOnce();
    const d = await remoteDevice('downcut', { KEEPSYNC_TRACE: '1' });
    await d.start();
    const received = () => traced(d.live!.stderr, /^< chunk-data /).length;
    await waitFor('a third of the download', () => received() > 80, 60_000, 50);
    relay.cut();
    await new Promise((r) => setTimeout(r, 1500));
    relay.restore();
    await waitFor('the download to complete', () => d.exists('cut-down.bin'), 120_000, 200);
    assert.equal(fileHash(d.p('cut-down.bin')), sha256(content));
    const hashes = traced(d.live!.stderr, /^< chunk-data /).map((l) => l.split(' ')[3]);
    const twice = hashes.length - new Set(hashes).size;
    figures.downloadCut = { fileMiB: 16, chunks: new Set(hashes).size, chunksReceivedTwice: twice };
    process.stderr.write(`    download cut: ${JSON.stringify(figures.downloadCut)}\n`);
    assert.match(d.live!.stderr, /reconnecting/, 'the device should have noticed the cut');
    assert.ok(twice <= 4, `${twice} chunks arrived twice`);
    assert.deepEqual(fs.readdirSync(d.dir).filter((n) => n.startsWith('.keepsync-')), []);
    await d.stop();
  });

  it('notices a link that silently drops everything within 30 s on both sides, then reconnects', async () => {
    const d = await remoteDevice('blackholed');
    await d.start();
    const admin = await AdminClient.login(server);
    const online = async () => (await admin.devices()).find((x) => x.name === 'blackholed')?.online;
    assert.equal(await online(), true);
    const state = () => JSON.parse(fs.readFileSync(path.join(d.home, 'state.json'), 'utf8')) as { connected: boolean };
    relay.blackhole = true;
    const t0 = Date.now();
    let serverSeconds = 0;
    let deviceSeconds = 0;
    await waitFor('both sides to notice', async () => {
      if (!serverSeconds && (await online()) === false) serverSeconds = (Date.now() - t0) / 1000;
      if (!deviceSeconds && state().connected === false) deviceSeconds = (Date.now() - t0) / 1000;
      return serverSeconds > 0 && deviceSeconds > 0;
    }, 45_000, 250);
    figures.blackhole = { serverNoticedSeconds: serverSeconds, deviceNoticedSeconds: deviceSeconds };
    process.stderr.write(`    blackhole: ${JSON.stringify(figures.blackhole)}\n`);
    assert.ok(serverSeconds <= 30 && deviceSeconds <= 30, JSON.stringify(figures.blackhole));
    relay.restore();
    await waitFor('the device to reconnect', () => state().connected, 60_000, 250);
    await d.stop();
  });

  it('keeps a device paired on the LAN working through the public URL when the LAN address is out of reach', async () => {
    const d = await lanDevice('roaming');
    const lan = new URL(server.url).origin;
    d.write('from-home.txt', 'home');
    await d.syncOnce();
    // Away: inside the namespace the loopback address reaches nothing; the public URL does.
    d.prefix = ns!.prefix;
    d.write('from-away.txt', 'away');
    await d.syncOnce();
    const pairing = JSON.parse(fs.readFileSync(path.join(d.home, 'pairing.json'), 'utf8')) as { server: string; publicUrl?: string };
    assert.equal(pairing.server, `https://${ns!.hostAddress}:${relay.port}`);
    assert.equal(pairing.publicUrl, lan, 'the LAN address is kept for when the device is back home');
    const check = await lanDevice('roaming-check');
    await check.syncOnce();
    assert.equal(check.read('from-away.txt'), 'away');
  });
});

// ---- certificates and TLS ----

interface Pem {
  cert: string;
  key: string;
}

/** A certificate for localhost and 127.0.0.1: self-signed, or signed by `ca`; a CA itself with `isCa`. */
async function makeCertificate(name: string, opts: { ca?: Pem; isCa?: boolean } = {}): Promise<Pem> {
  const extensions = opts.isCa
    ? [{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true }]
    : [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
      ];
  const pems = await generate([{ name: 'commonName', value: name }], {
    keyType: 'ec', curve: 'P-256', algorithm: 'sha256',
    notBeforeDate: new Date(Date.now() - 3600_000), notAfterDate: new Date(Date.now() + 30 * 86400_000),
    extensions, ...(opts.ca ? { ca: opts.ca } : {}),
  } as never);
  return { cert: pems.cert, key: pems.private };
}

const fingerprintOf = (pem: string) => createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');

/** Replaces the certificate files as a renewal tool would: each written aside, then renamed into place. */
function installCertificate(dir: string, pem: Pem): { certFile: string; keyFile: string } {
  const certFile = path.join(dir, 'fullchain.pem');
  const keyFile = path.join(dir, 'privkey.pem');
  for (const [file, text] of [[keyFile, pem.key], [certFile, pem.cert]]) {
    fs.writeFileSync(`${file}.new`, text, { mode: 0o600 });
    fs.renameSync(`${file}.new`, file);
  }
  return { certFile, keyFile };
}

/** The fingerprint of the certificate a fresh TLS connection to `url` is shown. */
function servedFingerprint(url: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate().fingerprint256.replace(/:/g, '').toLowerCase());
      s.destroy();
    });
    s.on('error', reject);
  });
}

/** Answers whether a TLS handshake with these options succeeds. */
function handshake(port: number, opts: tls.ConnectionOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/**
 * A TLS-terminating reverse proxy like the README's nginx example: HTTPS and
 * WebSocket upgrades forwarded to the plain-HTTP server, with X-Forwarded-For.
 */
async function reverseProxy(pem: Pem, forwardedFor: string) {
  const p = { target: 0 };
  const forwarded = { 'x-forwarded-for': forwardedFor, 'x-forwarded-proto': 'https' };
  const server = https.createServer({ cert: pem.cert, key: pem.key }, (req, res) => {
    const up = http.request({ host: '127.0.0.1', port: p.target, method: req.method, path: req.url, headers: { ...req.headers, ...forwarded } }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  const sockets = new Set<net.Socket>();
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const up = net.connect(p.target, '127.0.0.1', () => {
      const headers = Object.entries({ ...req.headers, ...forwarded }).map(([k, v]) => `${k}: ${String(v)}`);
      up.write(`${req.method} ${req.url} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`);
      up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    for (const s of [up, socket]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        up.destroy();
        socket.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    p,
    url: `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('TLS (SQLite only: behaviour does not depend on the database)', function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let dir: string;
  const cleanups: Array<() => Promise<void> | void> = [];
  /** Keeps something for afterEach to clean up. */
  const later = <T extends { cleanup(): Promise<void> }>(x: T): T => {
    cleanups.push(() => x.cleanup());
    return x;
  };

  beforeEach(async () => {
    db = await databaseKinds()[0].create();
    dir = tempDir('certs');
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function pairedDevice(server: TestServer, name: string, env: NodeJS.ProcessEnv = {}): Promise<TestDevice> {
    const d = later(new TestDevice(name));
    d.env = env;
    const r = await d.pair(await server.pairingLink());
    assert.equal(r.code, 0, r.stderr);
    return d;
  }

  it('serves --cert/--key and picks up renewed files without a restart and without dropping devices', async () => {
    const first = await makeCertificate('keepsync test 1');
    const { certFile, keyFile } = installCertificate(dir, first);
    const server = later(await new TestServer(db, ['--cert', certFile, '--key', keyFile]).start());
    assert.equal(server.fingerprint, fingerprintOf(first.cert));
    const laptop = await pairedDevice(server, 'laptop');
    await laptop.start();

    const renewed = await makeCertificate('keepsync test 2');
    installCertificate(dir, renewed);
    await waitFor('the server to load the renewed certificate', () => server.proc.stderr.includes(`certificate reloaded: sha256/${fingerprintOf(renewed.cert)}`), 20_000, 100);
    assert.equal(await servedFingerprint(server.url), fingerprintOf(renewed.cert));

    // The laptop's connection, made before the renewal, carries on.
    laptop.write('after-renewal.txt', 'still here');
    const desktop = await pairedDevice(server, 'desktop');
    await waitFor('the laptop\'s file to reach the server', async () => {
      await desktop.syncOnce();
      return desktop.read('after-renewal.txt') === 'still here';
    }, 30_000, 300);
    assert.doesNotMatch(laptop.live!.stderr, /interrupted|reconnecting|retrying/);
    await laptop.stop();
  });

  it('refuses a changed self-signed certificate on a paired device, with one line that says how to re-pin', async () => {
    const { certFile, keyFile } = installCertificate(dir, await makeCertificate('keepsync test 1'));
    const server = later(await new TestServer(db, ['--cert', certFile, '--key', keyFile]).start());
    const laptop = await pairedDevice(server, 'laptop');
    laptop.write('a.txt', 'a');
    await laptop.syncOnce();
    const replaced = await makeCertificate('keepsync test 2');
    installCertificate(dir, replaced);
    await waitFor('the server to load the other certificate', () => server.proc.stderr.includes(`certificate reloaded: sha256/${fingerprintOf(replaced.cert)}`), 20_000, 100);
    laptop.write('b.txt', 'b');
    const r = await laptop.run(['sync', '--once', '--quiet']);
    assert.equal(r.code, 1);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /certificate changed/);
    assert.match(lines[0], new RegExp(`now sha256/${fingerprintOf(replaced.cert)}`));
    assert.match(lines[0], /keepsync unpair.*keepsync pair/);
    // Re-pinning as the message says brings the device back, its files intact.
    assert.equal((await laptop.run(['unpair'])).code, 0);
    assert.equal((await laptop.pair(await server.pairingLink())).code, 0);
    await laptop.syncOnce();
    assert.equal(laptop.read('b.txt'), 'b');
  });

  it('keeps a device that trusts a publicly valid certificate working when it is renewed with a new key', async () => {
    const ca = await makeCertificate('keepsync test CA', { isCa: true });
    const caFile = path.join(dir, 'ca.pem');
    fs.writeFileSync(caFile, ca.cert);
    const { certFile, keyFile } = installCertificate(dir, await makeCertificate('localhost', { ca }));
    const server = later(await new TestServer(db, ['--cert', certFile, '--key', keyFile]).start());
    const laptop = await pairedDevice(server, 'laptop', { NODE_EXTRA_CA_CERTS: caFile });
    laptop.write('before.txt', '1');
    await laptop.syncOnce();
    const renewed = await makeCertificate('localhost', { ca });
    installCertificate(dir, renewed);
    await waitFor('the server to load the renewed certificate', () => server.proc.stderr.includes(`certificate reloaded: sha256/${fingerprintOf(renewed.cert)}`), 20_000, 100);
    laptop.write('after.txt', '2');
    await laptop.syncOnce();
    const other = await pairedDevice(server, 'other', { NODE_EXTRA_CA_CERTS: caFile });
    await other.syncOnce();
    assert.equal(other.read('after.txt'), '2');
  });

  it('refuses TLS 1.1 and older, accepts TLS 1.2 and 1.3', async () => {
    const server = later(await new TestServer(db).start());
    const port = Number(new URL(server.url).port);
    const old = { minVersion: 'TLSv1' as const, maxVersion: 'TLSv1.1' as const, ciphers: 'DEFAULT@SECLEVEL=0' };
    // The same client settings do get through to a server that allows TLS 1.1: the refusal is the server's.
    const pem = { cert: fs.readFileSync(path.join(server.certsDir, 'server.crt')), key: fs.readFileSync(path.join(server.certsDir, 'server.key')) };
    const control = tls.createServer({ ...pem, minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' });
    await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', () => resolve()));
    cleanups.push(() => new Promise<void>((resolve) => control.close(() => resolve())));
    assert.equal(await handshake((control.address() as net.AddressInfo).port, old), true, 'this machine\'s OpenSSL cannot speak TLS 1.1 at all');
    assert.equal(await handshake(port, old), false);
    assert.equal(await handshake(port, { maxVersion: 'TLSv1.2' }), true);
    assert.equal(await handshake(port, { minVersion: 'TLSv1.3' }), true);

    // Devices refuse an old server just the same: nothing gets past the handshake.
    const oldServer = tls.createServer({ ...pem, maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }, (s) => s.destroy());
    let secured = 0;
    oldServer.on('secureConnection', () => secured++);
    await new Promise<void>((resolve) => oldServer.listen(0, '127.0.0.1', () => resolve()));
    cleanups.push(() => new Promise<void>((resolve) => oldServer.close(() => resolve())));
    const device = later(new TestDevice('cautious'));
    const link = `https://127.0.0.1:${(oldServer.address() as net.AddressInfo).port}/pair?code=abc&fp=${server.fingerprint}`;
    const r = await device.pair(link);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot reach the server/);
    assert.equal(secured, 0);
  });

  it('speaks plain HTTP only with --insecure-http, behind a TLS-terminating reverse proxy it trusts for the address', async () => {
    const ca = await makeCertificate('keepsync test CA', { isCa: true });
    const caFile = path.join(dir, 'ca.pem');
    fs.writeFileSync(caFile, ca.cert);
    const proxy = await reverseProxy(await makeCertificate('localhost', { ca }), '203.0.113.9');
    cleanups.push(() => proxy.close());
    const server = later(await new TestServer(db, ['--insecure-http', '--public-url', proxy.url]).start());
    assert.match(server.url, /^http:\/\//);
    proxy.p.target = Number(new URL(server.url).port);

    const link = await server.pairingLink();
    assert.ok(link.startsWith(`${proxy.url}/pair?code=`), link);
    assert.doesNotMatch(link, /fp=/, 'no fingerprint to pin: devices trust the proxy\'s public certificate');
    const laptop = await pairedDevice(server, 'laptop', { NODE_EXTRA_CA_CERTS: caFile });
    laptop.write('via-proxy.txt', 'hello');
    await laptop.syncOnce();
    const desktop = await pairedDevice(server, 'desktop', { NODE_EXTRA_CA_CERTS: caFile });
    await desktop.syncOnce();
    assert.equal(desktop.read('via-proxy.txt'), 'hello');

    // The proxy's X-Forwarded-For is the device's address, because the option says a proxy is there.
    const admin = await AdminClient.login({ url: proxy.url, adminPassword: server.adminPassword } as TestServer);
    const devices = (await admin.request('GET', '/devices')).body as Array<{ name: string; address: string | null }>;
    assert.equal(devices.find((x) => x.name === 'laptop')?.address, '203.0.113.9');

    // Without a trusted certificate a pinless link is refused before anything is sent.
    const stranger = later(new TestDevice('stranger'));
    const r = await stranger.pair(await server.pairingLink());
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not publicly valid/);
    // A plain-http link would expose the token: refused.
    const plain = await stranger.pair(`${server.url}/pair?code=abc`);
    assert.equal(plain.code, 1);
    assert.match(plain.stderr, /plain http/);
  });
});

describe('Transfer limits and trust (SQLite only: behaviour does not depend on the database)', function () {
  this.timeout(120_000);
  let s: Scenario;
  const sockets: RawSocket[] = [];

  beforeEach(async () => {
    s = await scenario(databaseKinds()[0]);
  });
  afterEach(async () => {
    for (const sock of sockets.splice(0)) sock.terminate();
    await s.cleanup();
  });

  it('keeps at most 4 connections per device, replacing the oldest', async () => {
    const { token } = await redeemPairing(s.server, 'many');
    for (let i = 0; i < 5; i++) sockets.push((await RawSocket.welcomed(s.server, token)).sock);
    assert.equal(await sockets[0].waitClosed(), CloseCode.REPLACED);
    assert.deepEqual(sockets.slice(1).map((x) => x.isOpen), [true, true, true, true]);
  });

  it('ignores X-Forwarded-For unless it runs behind a proxy (--insecure-http)', async () => {
    const { token } = await redeemPairing(s.server, 'direct');
    const sock = await RawSocket.open(s.server, { 'X-Forwarded-For': '203.0.113.77' });
    sockets.push(sock);
    sock.hello(token);
    await sock.next('welcome');
    const admin = await AdminClient.login(s.server);
    const devices = (await admin.request('GET', '/devices')).body as Array<{ name: string; address: string | null }>;
    assert.equal(devices.find((x) => x.name === 'direct')?.address, '127.0.0.1');
  });

  it('holds a device to --max-upload and --max-download', async () => {
    const up = await s.addDevice('slow-up');
    const down = await s.addDevice('slow-down');
    const content = randomBytes(4 * MiB);
    up.write('limited.bin', content);
    // A full bucket lets one second's worth through at once; the other 3 MiB take 3 s at 1 MiB/s.
    let t = Date.now();
    assert.equal((await up.run(['sync', '--once', '--quiet', '--max-upload', '1M'])).code, 0);
    const upSeconds = (Date.now() - t) / 1000;
    t = Date.now();
    assert.equal((await down.run(['sync', '--once', '--quiet', '--max-download', '1M'])).code, 0);
    const downSeconds = (Date.now() - t) / 1000;
    assert.equal(fileHash(down.p('limited.bin')), sha256(content));
    figures.rateLimit = { limitMiBps: 1, fileMiB: 4, upSeconds, downSeconds };
    process.stderr.write(`    rate limits: ${JSON.stringify(figures.rateLimit)}\n`);
    assert.ok(upSeconds >= 2.5 && downSeconds >= 2.5, JSON.stringify(figures.rateLimit));
    assert.ok(upSeconds < 15 && downSeconds < 15, JSON.stringify(figures.rateLimit));
    const bad = await up.run(['sync', '--once', '--max-upload', 'fast']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--max-upload must be bytes per second/);
  });
});

describe('Jitter and reordering between devices (C2)', function () {
  this.timeout(180_000);

  forEachDatabase((kind) => {
    let s: Scenario;
    const relays: Relay[] = [];
    afterEach(async () => {
      for (const r of relays.splice(0)) await r.close();
      await s?.cleanup();
    });

    /** A device reaching the server through its own relay on loopback: 10 ms plus up to `jitterMs` per piece, each way. */
    async function jitteryDevice(name: string, jitterMs: number, seed: number): Promise<TestDevice> {
      const relay = await Relay.listen('127.0.0.1', 10, { jitterMs, seed });
      relay.target = s.server.port;
      relays.push(relay);
      const d = new TestDevice(name);
      s.devices.push(d);
      const link = new URL(await s.server.pairingLink());
      link.host = `127.0.0.1:${relay.port}`;
      const r = await d.pair(link.toString());
      assert.equal(r.code, 0, r.stderr);
      return d;
    }

    /** The device's folder as path → sha256 ('/' for folders), as serverTree reports the server's. */
    const hashes = (d: TestDevice) => new Map([...d.tree()].map(([p, v]) => [p, v === '/' ? '/' : sha256(Buffer.from(v, 'base64'))]));

    async function converged(admin: AdminClient, devices: TestDevice[], what: string): Promise<Map<string, string>> {
      let last = '';
      return waitFor(what, async () => {
        const sorted = (t: Map<string, string>) => [...t].sort(([x], [y]) => (x < y ? -1 : 1));
        const server = sorted(await serverTree(admin));
        const trees = devices.map((d) => sorted(hashes(d)));
        last = JSON.stringify({ server, devices: Object.fromEntries(devices.map((d, i) => [d.name, trees[i]])) });
        return trees.every((t) => JSON.stringify(t) === JSON.stringify(server)) ? new Map(server) : undefined;
      }, 60_000, 100).catch((err: Error) => {
        throw new Error(`${err.message}\n${last}\n${devices.map((d) => `${d.name}: ${d.live?.stderr.slice(-2000)}`).join('\n')}`);
      });
    }

    it('lets an edit made later but reaching the server first win, the earlier one a conflict copy everywhere', async () => {
      s = await scenario(kind);
      const admin = await AdminClient.login(s.server);
      const log = new ContentLog();
      const laptop = await jitteryDevice('laptop', 30, 11);
      const desktop = await jitteryDevice('desktop', 30, 12);
      laptop.write('doc.txt', log.add('doc.txt', 'doc v0'));
      await laptop.syncOnce();
      await desktop.syncOnce();
      laptop.env = { KEEPSYNC_TRACE: '1' };
      await laptop.start();
      await desktop.start();

      // The laptop's edit is made first, but its link holds it back...
      const [laptopLink] = relays;
      laptopLink.holdUp = true;
      const lists = () => laptop.live!.stderr.split('\n').filter((l) => l.startsWith('> list ')).length;
      const before = lists();
      laptop.write('doc.txt', log.add('doc.txt', 'made first, on the laptop'));
      await waitFor('the laptop to start a cycle for its edit', () => lists() > before && laptopLink.heldUp > 0);
      // ...while the desktop's, made later, goes through.
      desktop.write('doc.txt', log.add('doc.txt', 'made second, on the desktop'));
      await waitFor('the desktop\'s edit on the server', async () => (await serverTree(admin)).get('doc.txt') === sha256(Buffer.from('made second, on the desktop')));
      laptopLink.release();

      const tree = await converged(admin, [laptop, desktop], 'both devices to settle');
      assert.equal(tree.get('doc.txt'), sha256(Buffer.from('made second, on the desktop')));
      const copies = [...tree.keys()].filter((p) => p !== 'doc.txt');
      assert.equal(copies.length, 1, copies.join(', '));
      assert.match(copies[0], /^doc \(conflict from laptop \d{4}-\d{2}-\d{2} \d{6}\)\.txt$/);
      assert.equal(tree.get(copies[0]), sha256(Buffer.from('made first, on the laptop')));
      await laptop.stop();
      await desktop.stop();
      await log.assertNothingLost(admin);
    });

    it('converges with one winner and every other concurrent edit kept as a conflict copy, losing nothing', async () => {
      const seed = Number(process.env.KEEPSYNC_JITTER_SEED ?? 1);
      s = await scenario(kind);
      const admin = await AdminClient.login(s.server);
      const log = new ContentLog();
      // Different jitter on each link: what one device did first may reach the server last.
      const devices = [await jitteryDevice('laptop', 150, seed), await jitteryDevice('desktop', 40, seed + 1), await jitteryDevice('phone', 90, seed + 2)];
      const [laptop, desktop, phone] = devices;
      laptop.write('shared.txt', log.add('shared.txt', 'shared v0'));
      laptop.write('race.txt', log.add('race.txt', 'race v0'));
      laptop.write('album/p0.txt', log.add('album/p0.txt', 'p0'));
      for (const d of devices) await d.syncOnce();
      for (const d of devices) await d.start();
      await converged(admin, devices, 'the first state everywhere');

      let conflictCopies = 0;
      for (let round = 1; round <= 4; round++) {
        // The same file edited on every device at once, each also adding its own file.
        for (const d of devices) {
          d.write('shared.txt', log.add('shared.txt', `shared, round ${round}, from ${d.name}`));
          d.write(`${d.name}/r${round}.txt`, log.add(`${d.name}/r${round}.txt`, `${d.name} round ${round}`));
        }
        if (round === 2) {
          // An edit racing a delete: the edit wins.
          fs.rmSync(laptop.p('race.txt'));
          desktop.write('race.txt', log.add('race.txt', 'race edited while deleted elsewhere'));
        }
        if (round === 3) {
          // A folder renamed while another device adds to it.
          fs.renameSync(phone.p('album'), phone.p('album-2024'));
          laptop.write('album/p1.txt', log.add('album/p1.txt', 'added while renamed elsewhere'));
        }
        const tree = await converged(admin, devices, `round ${round} to settle`);
        // One current content; every other edit of this round is a conflict copy beside it.
        const copies = [...tree.keys()].filter((p) => p.startsWith('shared') && p !== 'shared.txt');
        for (const p of copies) assert.match(p, /^shared \(conflict from (laptop|desktop|phone) \d{4}-\d{2}-\d{2} \d{6}(?: \d+)?\)\.txt$/);
        conflictCopies = copies.length;
        const contents = new Set([...tree].filter(([p]) => p === 'shared.txt' || copies.includes(p)).map(([, h]) => h));
        for (const d of devices) {
          const h = sha256(Buffer.from(`shared, round ${round}, from ${d.name}`));
          const versions: Array<{ hash: string }> = (await admin.request('GET', '/folders/Sync/versions?path=shared.txt')).body;
          assert.ok(contents.has(h) || versions.some((v) => v.hash === h), `round ${round}: ${d.name}'s edit is neither current, a version, nor a conflict copy`);
        }
      }
      const tree = await converged(admin, devices, 'the end');
      assert.equal(tree.get('race.txt'), sha256(Buffer.from('race edited while deleted elsewhere')));
      assert.ok(tree.has('album-2024/p0.txt') || tree.has('album/p0.txt'));
      assert.ok([...tree.keys()].some((p) => p.endsWith('/p1.txt')), 'the file added to a renamed folder is gone');
      for (const d of devices) await d.stop();
      // Modification times agree too (I2).
      const mtimes = (d: TestDevice) => [...tree].filter(([, h]) => h !== '/').map(([p]) => `${p} ${Math.round(fs.statSync(d.p(p)).mtimeMs)}`);
      for (const d of devices.slice(1)) assert.deepEqual(mtimes(d), mtimes(laptop), `${d.name}'s modification times differ from the laptop's`);
      figures.c2ConflictCopies = conflictCopies;
      for (const d of devices) assert.deepEqual((fs.readdirSync(d.dir, { recursive: true }) as string[]).filter((p) => path.basename(p).startsWith('.keepsync-')), []);
      await log.assertNothingLost(admin);
      assert.ok(relays.every((r) => r.counts.connections >= 1));
    });
  });
});
