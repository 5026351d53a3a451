#!/usr/bin/env node
// Keepsync benchmark: real `keepsync` processes over loopback TLS.
// Prints ONE JSON document on stdout; progress goes to stderr.
// Usage: node test/bench/run.mjs [--quick] [--only NAME[,NAME]] [--keep]
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'packages/cli/dist/main.js');
const KiB = 1024;
const MiB = 1024 * KiB;

// ---------------------------------------------------------------- arguments
const ALL = ['initialSync10k', 'largeFile512MiB', 'editLatency', 'insert1MiB', 'network'];
const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const keep = argv.includes('--keep');
const quietDisk = argv.includes('--quiet-disk');
let only = ALL;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--only' || a.startsWith('--only=')) {
    const v = a === '--only' ? argv[++i] : a.slice('--only='.length);
    only = String(v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    const bad = only.filter((n) => !ALL.includes(n));
    if (bad.length || !only.length) usage(`unknown benchmark ${bad.join(',') || '(none)'}; choose from ${ALL.join(', ')}`);
  } else if (a === '--help' || a === '-h') usage();
  else if (a !== '--quick' && a !== '--keep' && a !== '--quiet-disk') usage(`unknown option ${a}`);
}
function usage(msg) {
  if (msg) process.stderr.write(`bench: ${msg}\n`);
  process.stderr.write(`usage: node test/bench/run.mjs [--quick] [--only ${ALL.join(',')}] [--keep] [--quiet-disk]\n`);
  process.exit(2);
}

const SIZES = quick
  ? { files: 1000, fileSize: 4 * KiB, folders: 100, large: 64 * MiB, insertFile: 32 * MiB, insert: 1 * MiB, trials: 5 }
  : { files: 10_000, fileSize: 4 * KiB, folders: 100, large: 512 * MiB, insertFile: 256 * MiB, insert: 1 * MiB, trials: 20 };
const SYNC_TIMEOUT_MS = quick ? 5 * 60_000 : 15 * 60_000;

const TARGETS = {
  editLatencyP50Ms: 100,
  initialSync10kSeconds: 5,
  largeFile512MiBSeconds: 3.5,
  insert1MiBBytes: 1.2 * MiB,
  peakRssMB: 150,
};

const log = (...a) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${a.join(' ')}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const round = (n, d = 3) => (n == null || Number.isNaN(n) ? null : Math.round(n * 10 ** d) / 10 ** d);

// ---------------------------------------------------------------- process bookkeeping
/** Every child we started, so that failure or Ctrl-C still kills them. */
const children = new Set();
const tempRoots = new Set();

function killAll(signal = 'SIGKILL') {
  for (const c of children) {
    try {
      if (c.exitCode === null && c.signalCode === null) c.kill(signal);
    } catch { /* gone */ }
  }
}
function removeTempRootsSync() {
  if (keep) return;
  for (const d of tempRoots) {
    try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
  }
}
process.on('exit', () => { killAll(); removeTempRootsSync(); });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    log(`got ${sig}, cleaning up`);
    killAll();
    removeTempRootsSync();
    process.exit(130);
  });
}

const QUIET_DISK_MICROS = 150;
const QUIET_DISK_WAIT_MS = 6 * 60_000;

/** The file-creation cost before a figure; with --quiet-disk, first waits (up to 6 min) until it is low. */
async function diskBeforeFigure(name) {
  const deadline = Date.now() + QUIET_DISK_WAIT_MS;
  for (;;) {
    const micros = await fileCreateMicros();
    if (!quietDisk || micros <= QUIET_DISK_MICROS || Date.now() > deadline) return micros;
    log(`${name}: a new file costs ${micros} µs on this disk (files removed lately); waiting for it to settle`);
    await sleep(20_000);
  }
}

/**
 * Node flags for every keepsync process: those on the first line of the CLI, as running
 * `keepsync` gives them; CPU profiles; any given in KEEPSYNC_BENCH_NODE_ARGS (say `--trace-gc`).
 */
const NODE_ARGS = [
  ...shebangFlags(CLI),
  ...(process.env.KEEPSYNC_BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.KEEPSYNC_BENCH_PROFILE}`] : []),
  ...(process.env.KEEPSYNC_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean),
];

/** The Node flags in the `#!/usr/bin/env -S node FLAGS` line of `file`. */
function shebangFlags(file) {
  const first = fs.readFileSync(file, 'utf8').split('\n', 1)[0];
  const m = /^#!\S*env -S node (.*)$/.exec(first);
  return m ? m[1].split(' ').filter(Boolean) : [];
}

/** A `keepsync …` child process with collected (bounded) output. */
class Proc {
  constructor(args, name) {
    this.name = name;
    this.args = args;
    this.stdout = '';
    this.stderr = '';
    this.started = performance.now();
    this.child = spawn(process.execPath, [...NODE_ARGS, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
    children.add(this.child);
    const cap = (s, d) => (s.length > 200_000 ? s.slice(-100_000) + d : s + d);
    this.child.stdout.on('data', (d) => (this.stdout = cap(this.stdout, String(d))));
    this.child.stderr.on('data', (d) => (this.stderr = cap(this.stderr, String(d))));
    this.exited = new Promise((resolve) => {
      this.child.on('error', (err) => { this.stderr += String(err); resolve(-1); });
      this.child.on('exit', (code, signal) => {
        this.ended = performance.now();
        children.delete(this.child);
        // KEEPSYNC_BENCH_LOGS=DIR keeps what each process printed (with KEEPSYNC_TRACE=1, each phase's time).
        if (process.env.KEEPSYNC_BENCH_LOGS) fs.appendFileSync(path.join(process.env.KEEPSYNC_BENCH_LOGS, `${this.name}.log`), `$ keepsync ${this.args.join(' ')}\n${this.stdout}${this.stderr}`);
        resolve(code ?? (signal ? `signal ${signal}` : -1));
      });
    });
  }
  get pid() { return this.child.pid; }
  get running() { return this.child.exitCode === null && this.child.signalCode === null; }
  async stop(signal = 'SIGTERM', graceMs = 10_000) {
    if (this.running) this.child.kill(signal);
    const t = setTimeout(() => { if (this.running) this.child.kill('SIGKILL'); }, graceMs);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }
}

/** Runs `keepsync ARGS` to completion; throws on non-zero exit or timeout. */
async function run(args, name, { timeoutMs = 60_000, onStart } = {}) {
  const p = new Proc(args, name);
  if (onStart) onStart(p);
  const timer = setTimeout(() => { log(`${name}: timeout after ${timeoutMs} ms, killing`); p.child.kill('SIGKILL'); }, timeoutMs);
  const code = await p.exited;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${name}: keepsync ${args.join(' ')} exited ${code}\n${p.stderr.slice(-4000)}`);
  return { ...p, seconds: (p.ended - p.started) / 1000 };
}

// ---------------------------------------------------------------- memory sampling
/** Samples VmHWM/VmRSS of the given processes every `everyMs`; `stop()` gives peaks in MB. */
function rssSampler(everyMs = 50) {
  const tracked = new Map(); // label -> { pid, hwmKiB, rssKiB, samples }
  const sampleOne = (t) => {
    let txt;
    try {
      txt = fs.readFileSync(`/proc/${t.pid}/status`, 'utf8');
      const cpu = cpuTicks(t.pid);
      if (cpu != null) { if (t.cpu0 == null) t.cpu0 = cpu; t.cpu1 = cpu; }
    } catch { return; }
    const hwm = /VmHWM:\s+(\d+)\s+kB/.exec(txt);
    const rss = /VmRSS:\s+(\d+)\s+kB/.exec(txt);
    if (hwm) t.hwmKiB = Math.max(t.hwmKiB, Number(hwm[1]));
    if (rss) t.rssKiB = Math.max(t.rssKiB, Number(rss[1]));
    t.samples++;
  };
  const tick = () => { for (const t of tracked.values()) sampleOne(t); };
  const timer = setInterval(tick, everyMs);
  return {
    track(label, pid) {
      if (!pid) return;
      const t = { pid, hwmKiB: 0, rssKiB: 0, samples: 0 };
      tracked.set(label, t);
      sampleOne(t);
    },
    /** Take one last sample of `label` (call right before it exits, if possible). */
    sample(label) { const t = tracked.get(label); if (t) sampleOne(t); },
    stop() {
      clearInterval(timer);
      tick();
      const out = {};
      for (const [label, t] of tracked) {
        out[label] = {
          peakMB: round(Math.max(t.hwmKiB, t.rssKiB) / 1024, 1), peakSampledRssMB: round(t.rssKiB / 1024, 1),
          cpuSeconds: t.cpu0 == null ? null : round((t.cpu1.total - t.cpu0.total) / CLK_TCK, 2),
          kernelCpuSeconds: t.cpu0 == null ? null : round((t.cpu1.kernel - t.cpu0.kernel) / CLK_TCK, 2),
          pageFaults: t.cpu0 == null ? null : t.cpu1.faults - t.cpu0.faults,
          samples: t.samples,
        };
      }
      return out;
    },
  };
}

/** The sampled processes' figures, each as { server, deviceA, deviceB }. */
function processFigures(stats) {
  const each = (key) => ({ server: stats.server?.[key] ?? null, deviceA: stats.deviceA?.[key] ?? null, deviceB: stats.deviceB?.[key] ?? null });
  return { peakRssMB: each('peakMB'), cpuSeconds: each('cpuSeconds'), kernelCpuSeconds: each('kernelCpuSeconds'), pageFaults: each('pageFaults') };
}

const CLK_TCK = 100; // Linux USER_HZ
/** CPU used so far by a process in clock ticks (utime+stime, and stime alone) and its minor page faults, from /proc/PID/stat. */
function cpuTicks(pid) {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' '); // fields from #3 (state) on
    return { total: Number(f[11]) + Number(f[12]), kernel: Number(f[12]), faults: Number(f[7]) }; // #14 utime, #15 stime, #10 minflt
  } catch { return null; }
}

// ---------------------------------------------------------------- TCP relay (byte counting)
/** A TCP relay on 127.0.0.1:0 to `port`, counting bytes each way. */
async function startRelay(targetPort) {
  const counts = { up: 0, down: 0, connections: 0 };
  const sockets = new Set();
  const server = net.createServer((client) => {
    counts.connections++;
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on('data', (d) => { counts.up += d.length; });
    upstream.on('data', (d) => { counts.down += d.length; });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  });
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
  return {
    port: server.address().port,
    counts,
    reset() { counts.up = 0; counts.down = 0; counts.connections = 0; },
    snapshot() { return { ...counts }; },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(() => r()));
    },
  };
}

// ---------------------------------------------------------------- setup: server + devices
async function makeTempRoot(name) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `keepsync-bench-${name}-`));
  tempRoots.add(dir);
  return dir;
}

async function startServer(root) {
  const data = path.join(root, 'server', 'data');
  const certs = path.join(root, 'server', 'certs');
  await fsp.mkdir(data, { recursive: true });
  const proc = new Proc(['server', '--data', data, '--certs', certs, '--host', '127.0.0.1', '--port', '0'], 'server');
  const deadline = Date.now() + 30_000;
  while (!/certificate fingerprint: sha256\/[0-9a-f]{64}/.test(proc.stdout)) {
    if (!proc.running) throw new Error(`server exited before it was ready: ${proc.stderr.slice(-2000)}`);
    if (Date.now() > deadline) throw new Error(`server not ready in 30 s: ${proc.stdout}\n${proc.stderr}`);
    await sleep(20);
  }
  const url = /listening on (https?:\/\/\S+)/.exec(proc.stdout)[1];
  const port = Number(new URL(url).port);
  const fingerprint = /sha256\/([0-9a-f]{64})/.exec(proc.stdout)[1];
  return { proc, data, certs, url, port, fingerprint };
}

async function pairingLink(server, relayPort) {
  const r = await run(['server', 'pair', '--data', server.data], 'server pair');
  const link = r.stdout.trim().split('\n').pop().trim();
  if (!relayPort) return link;
  const u = new URL(link);
  u.hostname = '127.0.0.1';
  u.port = String(relayPort);
  return u.toString();
}

class Device {
  constructor(root, name) {
    this.name = name;
    this.home = path.join(root, name, 'home');
    this.dir = path.join(root, name, 'folder');
    fs.mkdirSync(this.dir, { recursive: true });
  }
  async pair(link) {
    await run(['pair', link, '--dir', this.dir, '--home', this.home, '--name', this.name], `pair ${this.name}`);
  }
  syncOnce(opts = {}) {
    return run(['sync', '--once', '--quiet', '--home', this.home], `${this.name} sync --once`, { timeoutMs: SYNC_TIMEOUT_MS, ...opts });
  }
  async startLive() {
    this.live = new Proc(['sync', '--quiet', '--home', this.home], `${this.name} sync`);
    const stateFile = path.join(this.home, 'state.json');
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (!this.live.running) throw new Error(`${this.name} live sync exited: ${this.live.stderr.slice(-2000)}`);
      try {
        const s = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
        if (s.connected === true && s.pid === this.live.pid) break;
      } catch { /* not yet */ }
      if (Date.now() > deadline) throw new Error(`${this.name} did not connect in 60 s: ${this.live.stderr.slice(-2000)}`);
      await sleep(20);
    }
    return this.live;
  }
  p(rel) { return path.join(this.dir, ...rel.split('/')); }
}

/** A fresh temp root with a server and devices; `fn` runs inside, cleanup always. */
async function withSetup(name, { devices = ['A', 'B'], relay = false } = {}, fn) {
  const root = await makeTempRoot(name);
  const ctx = { root, devices: {}, relays: {} };
  try {
    ctx.server = await startServer(root);
    log(`${name}: server ${ctx.server.url} (pid ${ctx.server.proc.pid}) in ${root}`);
    for (const d of devices) {
      ctx.devices[d] = new Device(root, d);
      if (relay) ctx.relays[d] = await startRelay(ctx.server.port);
    }
    return await fn(ctx);
  } catch (err) {
    if (ctx.server) {
      log(`${name}: server ${ctx.server.proc.running ? 'still running' : `exited ${ctx.server.proc.child.exitCode ?? ctx.server.proc.child.signalCode}`}; its last output:`);
      process.stderr.write(`${(ctx.server.proc.stdout + ctx.server.proc.stderr).slice(-3000)}\n`);
      if (err && typeof err === 'object') err.serverLog = (ctx.server.proc.stderr || ctx.server.proc.stdout).slice(-1500);
    }
    for (const [n, r] of Object.entries(ctx.relays)) log(`${name}: relay ${n} counts ${JSON.stringify(r.snapshot())}`);
    throw err;
  } finally {
    for (const d of Object.values(ctx.devices)) if (d.live) await d.live.stop('SIGTERM', 5000);
    for (const r of Object.values(ctx.relays)) await r.close().catch(() => {});
    if (ctx.server) await ctx.server.proc.stop('SIGTERM', 10_000);
    // Removed at the end of the run, not here: on a file system without a journal, ext4
    // skips inodes freed in the last minutes when it makes a file, so removing this
    // figure's thousands of files would slow every file the next figure makes.
    if (keep) log(`kept ${root}`);
  }
}

/** Pairs each device (through its relay when there is one). */
async function pairAll(ctx) {
  for (const [n, d] of Object.entries(ctx.devices)) await d.pair(await pairingLink(ctx.server, ctx.relays[n]?.port));
}

// ---------------------------------------------------------------- data helpers
async function writeRandomFile(file, size, block = 8 * MiB) {
  const fh = await fsp.open(file, 'w');
  const h = crypto.createHash('sha256');
  try {
    for (let off = 0; off < size; off += block) {
      const buf = crypto.randomBytes(Math.min(block, size - off));
      h.update(buf);
      await fh.write(buf, 0, buf.length);
    }
  } finally { await fh.close(); }
  return h.digest('hex');
}

async function hashFile(file) {
  const h = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 8 * MiB })) h.update(chunk);
  return h.digest('hex');
}

/** Files under dir (relative path -> size), skipping `.keepsync-*` transients. */
function listFiles(dir) {
  const out = new Map();
  const walk = (d, rel) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith('.keepsync-')) continue;
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(path.join(d, e.name), r);
      else if (e.isFile()) out.set(r, fs.statSync(path.join(d, e.name)).size);
    }
  };
  walk(dir, '');
  return out;
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const rank = Math.ceil((p / 100) * sorted.length); // nearest-rank
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

// ---------------------------------------------------------------- 1. initial sync of many small files
/** Writes the small-file tree on `A`: answers each file's sha256 and the folders. */
function writeSmallFiles(A) {
  const { files, fileSize, folders } = SIZES;
  log(`initialSync10k: writing ${files} files of ${fileSize} B in ${folders} nested folders`);
  // ~100 folders: 10 top-level dirs each with 9 subdirs (10 + 90 = 100), files spread over all.
  const dirs = [];
  for (let i = 0; i < 10; i++) {
    dirs.push(`d${i}`);
    for (let j = 0; j < Math.round(folders / 10) - 1; j++) dirs.push(`d${i}/s${j}`);
  }
  for (const d of dirs) fs.mkdirSync(A.p(d), { recursive: true });
  const digests = new Map();
  const pool = crypto.randomBytes(files * fileSize);
  for (let i = 0; i < files; i++) {
    const rel = `${dirs[i % dirs.length]}/f${String(i).padStart(5, '0')}.bin`;
    const buf = pool.subarray(i * fileSize, (i + 1) * fileSize);
    fs.writeFileSync(A.p(rel), buf);
    digests.set(rel, crypto.createHash('sha256').update(buf).digest('hex'));
  }
  return { digests, dirs };
}

/** Whether `B` holds exactly these files with these digests (outside any timed region). */
function holdsAll(B, digests) {
  const got = listFiles(B.dir);
  let bad = 0;
  for (const [rel, digest] of digests) {
    try {
      if (crypto.createHash('sha256').update(fs.readFileSync(B.p(rel))).digest('hex') !== digest) bad++;
    } catch { bad++; }
  }
  if (bad > 0 || got.size !== digests.size) log(`initialSync10k: VERIFY FAILED: B has ${got.size} files, ${bad} missing or different`);
  return bad === 0 && got.size === digests.size;
}

async function benchInitialSync() {
  const { files, fileSize } = SIZES;
  const sequential = await withSetup('initial', {}, async (ctx) => {
    const { A, B } = ctx.devices;
    const { digests, dirs } = writeSmallFiles(A);
    await pairAll(ctx);

    log('initialSync10k: A sync --once');
    const mem = rssSampler(50);
    mem.track('server', ctx.server.proc.pid);
    const t0 = performance.now();
    const a = await A.syncOnce({ onStart: (p) => mem.track('deviceA', p.pid) });
    const tA = performance.now();
    log(`initialSync10k: A took ${a.seconds.toFixed(2)} s; B sync --once`);
    const b = await B.syncOnce({ onStart: (p) => mem.track('deviceB', p.pid) });
    const t1 = performance.now();
    log(`initialSync10k: B took ${b.seconds.toFixed(2)} s`);
    const stats = mem.stop();

    // Fixed cost of a sync --once with nothing to do (process start, connect, compare).
    const idle = await A.syncOnce();
    return {
      files,
      fileBytes: fileSize,
      folders: dirs.length,
      totalMiB: round((files * fileSize) / MiB, 1),
      seconds: round((t1 - t0) / 1000),
      aSeconds: round((tA - t0) / 1000),
      bSeconds: round((t1 - tA) / 1000),
      filesPerSecond: round(files / ((t1 - t0) / 1000), 0),
      idleSyncOnceSeconds: round(idle.seconds),
      ...processFigures(stats),
      verified: holdsAll(B, digests),
    };
  });
  // As a user meets it: B is running when A makes its first sync, and fetches
  // files as A's waves of them reach the server.
  const live = await withSetup('initial-live', {}, async (ctx) => {
    const { A, B } = ctx.devices;
    const { digests } = writeSmallFiles(A);
    await pairAll(ctx);
    const mem = rssSampler(50);
    mem.track('server', ctx.server.proc.pid);
    await B.startLive();
    mem.track('deviceB', B.live.pid);
    log('initialSync10k (live B): A sync --once');
    const t0 = performance.now();
    let tA;
    const a = A.syncOnce({ onStart: (p) => mem.track('deviceA', p.pid) }).then(() => { tA = performance.now(); });
    const deadline = t0 + SYNC_TIMEOUT_MS;
    let t1;
    for (;;) {
      if (listFiles(B.dir).size >= files) { t1 = performance.now(); break; }
      if (performance.now() > deadline) throw new Error(`initialSync10k (live B): B did not get every file in ${SYNC_TIMEOUT_MS / 1000} s`);
      if (!B.live.running) throw new Error(`initialSync10k (live B): B's sync exited: ${B.live.stderr.slice(-1000)}`);
      await sleep(100);
    }
    await a;
    const stats = mem.stop();
    log(`initialSync10k (live B): B had every file after ${((t1 - t0) / 1000).toFixed(2)} s (A's sync --once took ${((tA - t0) / 1000).toFixed(2)} s)`);
    return {
      seconds: round((t1 - t0) / 1000),
      aSeconds: round((tA - t0) / 1000),
      ...processFigures(stats),
      pollMs: 100,
      verified: holdsAll(B, digests),
    };
  });
  return { ...sequential, liveB: live };
}

// ---------------------------------------------------------------- 2. one large file
async function benchLargeFile() {
  const size = SIZES.large;
  return withSetup('large', {}, async (ctx) => {
    const { A, B } = ctx.devices;
    log(`largeFile512MiB: writing ${size / MiB} MiB random file`);
    const digest = await writeRandomFile(A.p('big.bin'), size);
    await pairAll(ctx);
    // Let the server settle, then sample from a clean point.
    const mem = rssSampler(50);
    mem.track('server', ctx.server.proc.pid);
    const serverBaseline = readRssMB(ctx.server.proc.pid);

    log('largeFile512MiB: A sync --once');
    const t0 = performance.now();
    const a = await A.syncOnce({ onStart: (p) => mem.track('deviceA', p.pid) });
    const tA = performance.now();
    log(`largeFile512MiB: A took ${a.seconds.toFixed(2)} s; B sync --once`);
    const b = await B.syncOnce({ onStart: (p) => mem.track('deviceB', p.pid) });
    const t1 = performance.now();
    log(`largeFile512MiB: B took ${b.seconds.toFixed(2)} s`);
    const peaks = mem.stop();

    const got = fs.existsSync(B.p('big.bin')) ? await hashFile(B.p('big.bin')) : null;
    const verified = got === digest;
    if (!verified) log('largeFile512MiB: VERIFY FAILED: B copy differs or is missing');
    const storeBytes = dirBytes(path.join(ctx.server.data, 'chunks'));
    const seconds = (t1 - t0) / 1000;
    return {
      bytes: size,
      MiB: size / MiB,
      seconds: round(seconds),
      aSeconds: round((tA - t0) / 1000),
      bSeconds: round((t1 - tA) / 1000),
      MiBps: round(size / MiB / seconds, 1),
      ...processFigures(peaks),
      serverRssBeforeMB: serverBaseline,
      rssDetail: peaks,
      serverChunkStore: storeBytes,
      verified,
    };
  });
}

function readRssMB(pid) {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? round(Number(m[1]) / 1024, 1) : null;
  } catch { return null; }
}

function dirBytes(dir) {
  let bytes = 0;
  let files = 0;
  const walk = (d) => {
    let entries;
    try { entries = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) { files++; bytes += fs.statSync(p).size; }
    }
  };
  walk(dir);
  return { files, MiB: round(bytes / MiB, 1) };
}

// ---------------------------------------------------------------- 3. live edit latency
async function benchEditLatency() {
  const trials = SIZES.trials;
  return withSetup('latency', {}, async (ctx) => {
    const { A, B } = ctx.devices;
    await pairAll(ctx);
    const rel = 'notes/edit.txt';
    fs.mkdirSync(path.dirname(A.p(rel)), { recursive: true });
    let content = crypto.randomBytes(KiB);
    fs.writeFileSync(A.p(rel), content);
    await A.syncOnce();
    await B.syncOnce();
    if (!safeRead(B.p(rel))?.equals(content)) throw new Error('editLatency: initial file did not reach B');
    log('editLatency: starting live sync on A and B');
    await A.startLive();
    await B.startLive();
    await sleep(1000); // let both finish their start-up scan
    const samples = [];
    const timeouts = [];
    for (let i = 0; i < trials; i++) {
      content = crypto.randomBytes(KiB);
      const t0 = performance.now();
      fs.writeFileSync(A.p(rel), content);
      const deadline = t0 + 10_000;
      let ok = false;
      while (performance.now() < deadline) {
        const got = safeRead(B.p(rel));
        if (got && got.equals(content)) { ok = true; break; }
        await sleep(2);
      }
      const ms = performance.now() - t0;
      if (ok) samples.push(round(ms, 1));
      else timeouts.push(i);
      log(`editLatency: trial ${i + 1}/${trials}: ${ok ? `${ms.toFixed(1)} ms` : 'TIMEOUT (10 s)'}`);
      if (!A.live.running || !B.live.running) throw new Error(`editLatency: a live sync exited: A ${A.live.stderr.slice(-1000)} B ${B.live.stderr.slice(-1000)}`);
      await sleep(300); // let the echo of this change settle before the next one
    }
    const sorted = [...samples].sort((x, y) => x - y);
    return {
      trials,
      fileBytes: KiB,
      pollMs: 2,
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      minMs: sorted[0] ?? null,
      maxMs: sorted[sorted.length - 1] ?? null,
      meanMs: sorted.length ? round(sorted.reduce((s, x) => s + x, 0) / sorted.length, 1) : null,
      timeouts: timeouts.length,
      samplesMs: samples,
    };
  });
}

function safeRead(file) {
  try { return fs.readFileSync(file); } catch { return undefined; }
}

// ---------------------------------------------------------------- 4. insert in the middle of a large file
async function benchInsert() {
  const size = SIZES.insertFile;
  const ins = SIZES.insert;
  return withSetup('insert', { relay: true }, async (ctx) => {
    const { A, B } = ctx.devices;
    log(`insert1MiB: writing ${size / MiB} MiB random file`);
    await writeRandomFile(A.p('big.bin'), size);
    await pairAll(ctx);
    log('insert1MiB: initial sync of the file to the server and B (through the relays)');
    const init = {};
    ctx.relays.A.reset();
    await A.syncOnce();
    init.aUploadBytes = ctx.relays.A.counts.up;
    ctx.relays.B.reset();
    await B.syncOnce();
    init.bDownloadBytes = ctx.relays.B.counts.down;
    log(`insert1MiB: initial: A up ${(init.aUploadBytes / MiB).toFixed(1)} MiB, B down ${(init.bDownloadBytes / MiB).toFixed(1)} MiB`);

    // A no-op sync baseline: connection + TLS + handshake cost with nothing to do.
    ctx.relays.A.reset();
    await A.syncOnce();
    const idleA = ctx.relays.A.snapshot();

    // Insert `ins` random bytes in the middle (rewrite in place, as an editor would save it).
    const old = await fsp.readFile(A.p('big.bin'));
    const mid = Math.floor(size / 2) + 12_345; // not on a neat boundary
    const next = Buffer.concat([old.subarray(0, mid), crypto.randomBytes(ins), old.subarray(mid)]);
    const digest = crypto.createHash('sha256').update(next).digest('hex');
    await fsp.writeFile(A.p('big.bin'), next);

    ctx.relays.A.reset();
    const a = await A.syncOnce();
    const aBytes = ctx.relays.A.snapshot();
    ctx.relays.B.reset();
    const b = await B.syncOnce();
    const bBytes = ctx.relays.B.snapshot();
    const got = fs.existsSync(B.p('big.bin')) ? await hashFile(B.p('big.bin')) : null;
    const verified = got === digest;
    if (!verified) log('insert1MiB: VERIFY FAILED: B copy differs or is missing');
    log(`insert1MiB: A up ${aBytes.up} B, B down ${bBytes.down} B`);
    return {
      fileBytes: size,
      insertBytes: ins,
      insertOffset: mid,
      uploadBytes: aBytes.up,
      uploadKiB: round(aBytes.up / KiB, 1),
      downloadBytes: bBytes.down,
      downloadKiB: round(bBytes.down / KiB, 1),
      aSync: { seconds: round(a.seconds), upBytes: aBytes.up, downBytes: aBytes.down, connections: aBytes.connections },
      bSync: { seconds: round(b.seconds), upBytes: bBytes.up, downBytes: bBytes.down, connections: bBytes.connections },
      idleSyncA: { upBytes: idleA.up, downBytes: idleA.down, connections: idleA.connections },
      initialSync: { aUploadMiB: round(init.aUploadBytes / MiB, 2), bDownloadMiB: round(init.bDownloadBytes / MiB, 2) },
      verified,
    };
  });
}

// ---------------------------------------------------------------- 5. over a bad network
/**
 * The figures of test/e2e/network.test.ts: a device in a network namespace
 * behind 40 Mbit/s each way (tc tbf) and a relay adding 50 ms each way;
 * steady throughput against the bandwidth, chunks sent twice after a cut
 * link, how long a blackholed link goes unnoticed, rate limits. Needs root
 * (ip netns); otherwise the figure says why it was skipped. Also those of
 * test/e2e/resume.test.ts (transfers of a killed device process) and
 * test/e2e/backpressure.test.ts (server memory under slow and flooding
 * devices), which need no namespace.
 */
async function benchNetwork() {
  const mocha = path.join(ROOT, 'node_modules/mocha/bin/mocha.js');
  const env = { ...process.env };
  delete env.KEEPSYNC_TEST_DATABASE_URL;
  const files = ['test/e2e/network.test.ts', 'test/e2e/resume.test.ts', 'test/e2e/backpressure.test.ts'];
  const child = spawn(process.execPath, [mocha, '--no-config', '--import=tsx', '--timeout', '300000', ...files, '-g', 'Network|Transfer limits|Resuming|Slow and greedy'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const code = await new Promise((resolve) => child.on('exit', (c) => resolve(c)));
  children.delete(child);
  const more = {};
  for (const kind of ['resume', 'backpressure']) {
    const m = new RegExp(`${kind} figures: (\\{.*\\})`).exec(out);
    if (m) Object.assign(more, JSON.parse(m[1]));
  }
  const skipped = /network tests skipped: (.*)/.exec(out);
  if (skipped) return { skipped: skipped[1], testsPassed: code === 0, ...more };
  const figures = /network figures: (\{.*\})/.exec(out);
  if (!figures) throw new Error(`network tests printed no figures (exit ${code}): ${out.slice(-3000)}`);
  return { testsPassed: code === 0, ...JSON.parse(figures[1]), ...more };
}

// ---------------------------------------------------------------- main
const BENCHES = {
  initialSync10k: benchInitialSync,
  largeFile512MiB: benchLargeFile,
  editLatency: benchEditLatency,
  insert1MiB: benchInsert,
  network: benchNetwork,
};

function targets(out) {
  const t = {
    editLatencyP50Ms: { target: `< ${TARGETS.editLatencyP50Ms} ms`, value: null, pass: null },
    initialSync10kSeconds: { target: `< ${TARGETS.initialSync10kSeconds} s`, value: null, pass: null },
    largeFile512MiBSeconds: { target: `< ${TARGETS.largeFile512MiBSeconds} s`, value: null, pass: null },
    insert1MiBUploadBytes: { target: `< 1.2 MiB (${TARGETS.insert1MiBBytes} B)`, value: null, pass: null },
    insert1MiBDownloadBytes: { target: `< 1.2 MiB (${TARGETS.insert1MiBBytes} B)`, value: null, pass: null },
    peakRssServerMB: { target: `< ${TARGETS.peakRssMB} MB`, value: null, pass: null },
    peakRssDeviceAMB: { target: `< ${TARGETS.peakRssMB} MB`, value: null, pass: null },
    peakRssDeviceBMB: { target: `< ${TARGETS.peakRssMB} MB`, value: null, pass: null },
  };
  const set = (k, v, ok) => { t[k].value = v; t[k].pass = v == null ? false : ok(v); };
  const e = out.editLatency;
  if (e && !e.error) set('editLatencyP50Ms', e.p50Ms, (v) => v < TARGETS.editLatencyP50Ms && e.timeouts === 0);
  const i = out.initialSync10k;
  if (i && !i.error) set('initialSync10kSeconds', i.seconds, (v) => v < TARGETS.initialSync10kSeconds && i.verified);
  const l = out.largeFile512MiB;
  if (l && !l.error) {
    set('largeFile512MiBSeconds', l.seconds, (v) => v < TARGETS.largeFile512MiBSeconds && l.verified);
    set('peakRssServerMB', l.peakRssMB.server, (v) => v < TARGETS.peakRssMB);
    set('peakRssDeviceAMB', l.peakRssMB.deviceA, (v) => v < TARGETS.peakRssMB);
    set('peakRssDeviceBMB', l.peakRssMB.deviceB, (v) => v < TARGETS.peakRssMB);
  }
  const n = out.insert1MiB;
  if (n && !n.error) {
    set('insert1MiBUploadBytes', n.uploadBytes, (v) => v < TARGETS.insert1MiBBytes && n.verified);
    set('insert1MiBDownloadBytes', n.downloadBytes, (v) => v < TARGETS.insert1MiBBytes && n.verified);
  }
  const w = out.network;
  if (w && !w.error && !w.skipped && w.throughput) {
    t.networkThroughputShare = { target: '>= 0.6 of the bandwidth each way', value: Math.min(w.throughput.upShare, w.throughput.downShare), pass: null };
    t.networkThroughputShare.pass = t.networkThroughputShare.value >= 0.6;
  }
  for (const k of Object.keys(t)) if (t[k].value === null && t[k].pass === null) delete t[k];
  return t;
}

/**
 * What making one new 4 KiB file costs on the temp disk right now (µs, median of 500).
 * Figures that make thousands of files depend on it: on ext4 without a journal it is
 * ten times higher for up to five minutes after many files were removed (the kernel
 * skips recently freed inodes), anywhere on the disk.
 */
async function fileCreateMicros() {
  const dir = await makeTempRoot('probe');
  const data = Buffer.alloc(4096, 1);
  const times = [];
  for (let i = 0; i < 500; i++) {
    const t = performance.now();
    fs.writeFileSync(path.join(dir, `f${i}`), data);
    times.push((performance.now() - t) * 1000);
  }
  return round(times.sort((a, b) => a - b)[250], 1);
}

async function main() {
  if (!fs.existsSync(CLI)) {
    process.stderr.write(`bench: ${CLI} is missing; build first (npx tsc -b)\n`);
    process.exit(1);
  }
  const started = new Date();
  const out = {
    mode: quick ? 'quick' : 'full',
    note: quick ? 'quick mode: smaller sizes than the names say (see each figure); targets are for the full sizes, so pass is only indicative' : undefined,
    sizes: {
      initialSyncFiles: SIZES.files, initialSyncFileBytes: SIZES.fileSize, largeFileMiB: SIZES.large / MiB,
      insertFileMiB: SIZES.insertFile / MiB, insertMiB: SIZES.insert / MiB, latencyTrials: SIZES.trials,
    },
    environment: {
      node: process.version, platform: `${os.platform()}-${os.arch()}`, cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model, memGiB: round(os.totalmem() / 2 ** 30, 1), tmpdir: os.tmpdir(),
    },
    startedAt: started.toISOString(),
    units: 'MB = 2^20 bytes (from /proc VmHWM/VmRSS kB / 1024); KiB = 1024 bytes; bytes on the wire include TLS and WebSocket framing',
  };
  let failed = false;
  for (const name of ALL) {
    if (!only.includes(name)) continue;
    log(`=== ${name} ===`);
    const t0 = performance.now();
    const disk = await diskBeforeFigure(name);
    const load0 = os.loadavg()[0];
    try {
      out[name] = await BENCHES[name]();
      out[name].fileCreateMicros = disk;
      out[name].loadAvg1m = { before: round(load0, 2), after: round(os.loadavg()[0], 2) };
    } catch (err) {
      failed = true;
      log(`${name} FAILED: ${err?.stack ?? err}`);
      out[name] = { error: String(err?.message ?? err).slice(0, 4000), ...(err?.serverLog ? { serverLog: err.serverLog } : {}) };
    }
    log(`=== ${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  out.targets = targets(out);
  out.durationSeconds = round((Date.now() - started.getTime()) / 1000, 1);
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  killAll();
  removeTempRootsSync();
  process.exitCode = failed ? 1 : 0;
}

main().catch((err) => {
  log(`fatal: ${err?.stack ?? err}`);
  killAll();
  removeTempRootsSync();
  process.exit(1);
});
