import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { scenario, type Scenario, type TestDevice } from '../helpers/cluster.js';
import type { DatabaseKind } from '../helpers/databases.js';
import { Proc, keepsync } from '../helpers/processes.js';
import { AdminClient } from '../helpers/rawDevice.js';
import { ServerIndex, terminateBackends, verifyServer, type ServerEntry } from '../helpers/serverIndex.js';
import { Rng } from './rng.js';
import { chooseOp, type Ctx } from './operations.js';

/** One seeded whole-system run: a real server, real device processes, random operations and faults. */
export interface ChaosOptions {
  seed: number;
  devices: number;
  ops: number;
  kind: DatabaseKind;
  /** Kill clients, the server and (PostgreSQL) the database connections at random. Default true. */
  faults?: boolean;
  /** How long the devices get to agree after the last fault (I7). Default 60 s. */
  settleMs?: number;
  /** Prints the operation log as it happens. */
  verbose?: boolean;
}

export interface ChaosReport {
  seed: number;
  ops: number;
  clientKills: number;
  serverKills: number;
  databaseDrops: number;
  contents: number;
  files: number;
  settleMs: number;
}

export class ChaosFailure extends Error {}

/** A file or folder as a device holds it, name in NFC. */
interface LocalEntry {
  kind: 'file' | 'dir';
  hash: string;
  exec: boolean;
  mtime: number;
}

/** Lines of each process's output shown when a seed fails (the engine traces its plans). */
const TAIL = Number(process.env.KEEPSYNC_CHAOS_TAIL ?? 30);
const sha = (data: Buffer) => crypto.createHash('sha256').update(data).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs one seed; throws ChaosFailure with the seed and the operation log when an invariant breaks. */
export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const run = new ChaosRun(opts);
  try {
    return await run.go();
  } catch (err) {
    throw new ChaosFailure(run.explain(err));
  } finally {
    await run.cleanup();
  }
}

class ChaosRun implements Ctx {
  readonly rng: Rng;
  readonly log: string[] = [];
  s!: Scenario;
  index!: ServerIndex;
  devices: TestDevice[] = [];
  /** Everything each device printed, across restarts. */
  private readonly output = new Map<TestDevice, string[]>();
  /** Device → op number at which it comes back (killed meanwhile). */
  private readonly downUntil = new Map<TestDevice, number>();
  private serverDownUntil = -1;
  /** Every content a device wrote: hash → where. */
  readonly written = new Map<string, string>();
  /** Contents seen on the server. */
  private readonly confirmed = new Set<string>();
  /** Contents overwritten by the user while they could not reach the server (never held long enough to be seen). */
  private readonly exempt = new Set<string>();
  opNo = 0;
  private readonly report: ChaosReport;

  constructor(readonly opts: ChaosOptions) {
    this.rng = new Rng(opts.seed);
    this.report = { seed: opts.seed, ops: opts.ops, clientKills: 0, serverKills: 0, databaseDrops: 0, contents: 0, files: 0, settleMs: 0 };
  }

  note(line: string): void {
    const l = `#${this.opNo} ${line}`;
    this.log.push(l);
    if (this.opts.verbose) process.stderr.write(`${l}\n`);
  }

  async go(): Promise<ChaosReport> {
    const { opts, rng } = this;
    this.s = await scenario(opts.kind);
    // Devices delete folders at random and must converge: a held burst of
    // deletes waits for an admin, which no one plays here (hold.test.ts does).
    const admin = await AdminClient.login(this.s.server);
    const off = await admin.request('PUT', '/settings', { deleteHold: { files: 0, percent: 0 } });
    if (off.status !== 200) throw new Error(`turning delete holds off answered ${off.status}: ${JSON.stringify(off.body)}`);
    this.index = await ServerIndex.open(this.s.server);
    for (let i = 0; i < opts.devices; i++) {
      const d = await this.s.addDevice(`dev${i}`);
      d.write(`anchor-dev${i}.txt`, `anchor of dev${i}\n`);
      this.devices.push(d);
      this.output.set(d, []);
    }
    for (const d of this.devices) await traced(() => d.start());
    for (this.opNo = 1; this.opNo <= opts.ops; this.opNo++) {
      await this.revive();
      await chooseOp(this);
      if (opts.faults !== false) await this.maybeFault();
      await sleep(rng.range(0, 120));
    }
    this.note('faults stop; everything restarts and settles');
    this.opNo = opts.ops + 1;
    await this.revive(true);
    const started = Date.now();
    await this.settle();
    this.report.settleMs = Date.now() - started;
    await this.check();
    return this.report;
  }

  // ---- what operations ask of the run ----

  isUp(d: TestDevice): boolean {
    return d.live !== undefined && this.serverUp;
  }

  get serverUp(): boolean {
    return this.serverDownUntil < 0;
  }

  /** Records content a device just wrote. */
  wrote(d: TestDevice, rel: string, data: Buffer): void {
    const h = sha(data);
    if (!this.written.has(h)) this.written.set(h, `${d.name} #${this.opNo} ${rel}`);
  }

  /**
   * Before the user overwrites, truncates or deletes a file: its current
   * content must reach the server first, unless the device or the server is
   * down (then the user overwrote a change that was never seen: exempt).
   */
  async beforeDestroy(d: TestDevice, abs: string): Promise<void> {
    let data: Buffer;
    try {
      data = fs.readFileSync(abs);
    } catch {
      return;
    }
    const h = sha(data);
    if (this.confirmed.has(h)) return;
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (await this.index.hasVersion(h)) {
        this.confirmed.add(h);
        return;
      }
      if (!this.isUp(d)) {
        this.exempt.add(h);
        return;
      }
      if (Date.now() >= deadline) break;
      await sleep(100);
    }
    const rel = path.relative(d.dir, abs);
    throw new Error(`${d.name}: the content of ${rel} (${h.slice(0, 12)}, ${this.written.get(h) ?? 'not written by the test'}) did not reach the server within 30 s while everything ran`);
  }

  // ---- faults ----

  private async maybeFault(): Promise<void> {
    const { rng } = this;
    const live = this.devices.filter((d) => d.live);
    if (live.length > 0 && rng.chance(0.06)) {
      const d = rng.pick(live);
      await this.killDevice(d, rng.range(1, 6));
    }
    if (this.serverUp && rng.chance(0.03)) {
      await sleep(rng.range(0, 200));
      this.note('server: SIGKILL');
      this.report.serverKills++;
      await this.s.server.stop('SIGKILL');
      this.serverDownUntil = this.opNo + rng.range(0, 2);
    }
    if (this.serverUp && this.s.db.url && rng.chance(0.05)) {
      const n = await terminateBackends(this.s.db.url);
      this.note(`database: ${n} server connections terminated`);
      this.report.databaseDrops++;
    }
  }

  /** A transfer is probably running: kill a device in the middle of it. */
  async killMidTransfer(writer: TestDevice): Promise<void> {
    if (this.opts.faults === false || !this.rng.chance(0.4)) return;
    const { rng } = this;
    const target = rng.chance(0.5) ? writer : rng.pick(this.devices);
    if (!target.live) return;
    await sleep(rng.range(target === writer ? 20 : 150, target === writer ? 300 : 900));
    await this.killDevice(target, rng.range(0, 4), target === writer ? 'mid-upload' : 'mid-download');
  }

  private async killDevice(d: TestDevice, downFor: number, why = ''): Promise<void> {
    this.note(`${d.name}: SIGKILL${why ? ` (${why})` : ''}`);
    this.report.clientKills++;
    await this.stopDevice(d, 'SIGKILL');
    this.downUntil.set(d, this.opNo + downFor);
  }

  private async stopDevice(d: TestDevice, signal: NodeJS.Signals): Promise<void> {
    const p = d.live;
    if (!p) return;
    await d.stop(signal);
    this.output.get(d)!.push(p.stderr);
  }

  /** Restarts what is due (everything when `all`). */
  private async revive(all = false): Promise<void> {
    if (!this.serverUp && (all || this.opNo >= this.serverDownUntil)) {
      this.note('server: restart');
      await this.s.server.start();
      this.serverDownUntil = -1;
    }
    for (const d of this.devices) {
      const until = this.downUntil.get(d);
      if (until === undefined || (!all && this.opNo < until)) continue;
      this.downUntil.delete(d);
      this.note(`${d.name}: restart`);
      d.live = new Proc(['sync', '--quiet', '--home', d.home], TRACE);
    }
  }

  // ---- settling and the invariants ----

  private async deviceTree(d: TestDevice): Promise<{ tree: Map<string, LocalEntry>; temps: string[] }> {
    const tree = new Map<string, LocalEntry>();
    const temps: string[] = [];
    const walk = (dir: string, rel: string) => {
      let entries: fs.Dirent[] = [];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        // removed under the walk: the next poll sees the outcome
      }
      for (const e of entries) {
        const r = (rel ? `${rel}/${e.name}` : e.name).normalize('NFC');
        const abs = path.join(dir, e.name);
        if (e.name.startsWith('.keepsync-')) {
          temps.push(r);
          continue;
        }
        if (e.isDirectory()) {
          tree.set(r, { kind: 'dir', hash: '', exec: false, mtime: 0 });
          walk(abs, r);
        } else if (e.isFile()) {
          try {
            const st = fs.statSync(abs);
            tree.set(r, { kind: 'file', hash: sha(fs.readFileSync(abs)), exec: (st.mode & 0o111) !== 0, mtime: st.mtimeMs });
          } catch {
            tree.set(r, { kind: 'file', hash: 'changing under the walk', exec: false, mtime: 0 });
          }
        }
      }
    };
    walk(d.dir, '');
    return { tree, temps };
  }

  /** Differences between a device's tree and the server's (I2), at most a few. */
  private diff(name: string, local: Map<string, LocalEntry>, server: Map<string, ServerEntry>, mtimes: boolean): string[] {
    const out: string[] = [];
    for (const [p, e] of server) {
      const l = local.get(p);
      if (!l) out.push(`${name} lacks ${p} (${e.kind})`);
      else if (l.kind !== e.kind) out.push(`${name} has ${p} as a ${l.kind}, the server as a ${e.kind}`);
      else if (e.kind === 'file' && l.hash !== e.hash) out.push(`${name} has other content at ${p}`);
      else if (e.kind === 'file' && l.exec !== e.exec) out.push(`${name}: executable bit of ${p} differs`);
      else if (mtimes && e.kind === 'file' && Math.abs(l.mtime - e.mtime) > 1) out.push(`${name}: mtime of ${p} is ${new Date(l.mtime).toISOString()}, the server's ${new Date(e.mtime).toISOString()}`);
    }
    for (const [p, l] of local) if (!server.has(p)) out.push(`${name} has ${p} (${l.kind}) that the server does not`);
    return out;
  }

  private async disagreements(mtimes: boolean): Promise<string[]> {
    const server = await this.index.live();
    const out: string[] = [];
    for (const d of this.devices) {
      if (!d.live?.running) out.push(`${d.name}'s sync process exited: ${d.live?.stderr.trim().split('\n').at(-1) ?? 'not running'}`);
      const { tree, temps } = await this.deviceTree(d);
      out.push(...this.diff(d.name, tree, server, mtimes), ...temps.map((t) => `${d.name} has a leftover temporary file ${t}`));
    }
    return out;
  }

  /** Waits until every device agrees with the server twice in a row (I2, I4, I7). */
  private async settle(): Promise<void> {
    const deadline = Date.now() + (this.opts.settleMs ?? 60_000);
    let agreedOnce = false;
    let last: string[] = [];
    while (Date.now() < deadline) {
      last = await this.disagreements(false);
      if (last.length === 0 && agreedOnce) return;
      agreedOnce = last.length === 0;
      await sleep(agreedOnce ? 1000 : 250);
    }
    throw new Error(`the devices did not agree with the server within ${Math.round((this.opts.settleMs ?? 60_000) / 1000)} s:\n  ${last.slice(0, 20).join('\n  ')}`);
  }

  private async check(): Promise<void> {
    const problems = [...(await this.quiet()), ...(await this.disagreements(true))];
    const kept = await this.index.versionHashes();
    for (const [h, where] of this.written) {
      if (!kept.has(h) && !this.exempt.has(h)) problems.push(`lost: content ${h.slice(0, 12)} written by ${where} is nowhere on the server`);
    }
    problems.push(...(await verifyServer(this.s.server, this.index)));
    const server = this.s.server;
    const verify = await keepsync(['server', 'verify', '--data', server.dataDir, ...(server.db.url ? ['--database-url', server.db.url] : [])]);
    if (verify.code !== 0) problems.push(`keepsync server verify exited ${verify.code}: ${verify.stdout.trim()} ${verify.stderr.trim()}`);
    this.report.contents = this.written.size;
    this.report.files = [...(await this.index.live()).values()].filter((e) => e.kind === 'file').length;
    if (problems.length > 0) throw new Error(`invariants broken:\n  ${problems.slice(0, 30).join('\n  ')}`);
  }

  /**
   * Once everything agrees, devices go quiet: one that keeps planning work
   * (a change it can never finish, a loop) fails the run (A8, a fixed point).
   */
  private async quiet(): Promise<string[]> {
    const marks = new Map(this.devices.map((d) => [d, d.live?.stderr.length ?? 0]));
    await sleep(QUIET_MS);
    const out: string[] = [];
    for (const d of this.devices) {
      const plans = (d.live?.stderr ?? '').slice(marks.get(d)).split('\n')
        .filter((l) => PLAN_LINE.test(l));
      if (plans.length > QUIET_PLANS) out.push(`${d.name} kept working after everything agreed: ${plans.length} plans in ${QUIET_MS / 1000} s, the last: ${plans[plans.length - 1].slice(0, 300)}`);
    }
    return out;
  }

  explain(err: unknown): string {
    const o = this.opts;
    const tails = this.devices.map((d) => {
      const all = [...(this.output.get(d) ?? []), d.live?.stderr ?? ''].join('').split('\n').filter((l) => l && !/^[<>] /.test(l));
      return `--- ${d.name} stderr (last lines):\n${all.slice(-TAIL).join('\n')}`;
    });
    const server = this.s?.server.proc ? `--- server stderr (last lines):\n${this.s.server.proc.stderr.trim().split('\n').slice(-15).join('\n')}` : '';
    return [
      `chaos seed ${o.seed} on ${o.kind.name} (${o.devices} devices, ${o.ops} operations${o.faults === false ? ', no faults' : ''}) failed: ${err instanceof Error ? err.message : String(err)}`,
      `replay: npm run chaos -- --seed ${o.seed} --devices ${o.devices} --ops ${o.ops} --db ${o.kind.name}${o.faults === false ? ' --no-faults' : ''}`,
      'operation log:',
      ...this.log.map((l) => `  ${l}`),
      ...tails,
      server,
    ].join('\n');
  }

  async cleanup(): Promise<void> {
    await this.index?.close().catch(() => {});
    await this.s?.cleanup().catch(() => {});
  }
}

/** How long devices are watched for work after everything agreed, and how many plans with work they may make then. */
const QUIET_MS = 3000;
const QUIET_PLANS = 3;
/** A cycle's plan with work in it, as a traced device logs it. */
const PLAN_LINE = /^keepsync trace: (download|mkdir-local|delete-local|rename-local|adopt|forget|push-put|push-mkdir|push-delete|push-move) /;

/** Device processes log every cycle's plan, shown when a seed fails. */
const TRACE = { KEEPSYNC_TRACE: '1' };

/** Runs `fn` (which spawns a device process synchronously) with tracing on for that process only. */
function traced<T>(fn: () => T): T {
  const old = process.env.KEEPSYNC_TRACE;
  process.env.KEEPSYNC_TRACE = TRACE.KEEPSYNC_TRACE;
  try {
    return fn();
  } finally {
    if (old === undefined) delete process.env.KEEPSYNC_TRACE;
    else process.env.KEEPSYNC_TRACE = old;
  }
}

