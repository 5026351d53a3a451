import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { databaseKinds, type DatabaseKind, type TestDatabase } from './databases.js';
import { Proc, keepsync, type RunResult } from './processes.js';
import { explainTimeouts, waitFor } from './wait.js';

/** A temp dir removed by `cleanup`. */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `keepsync-${prefix}-`));
}

/** A real `keepsync server` process on 127.0.0.1, port 0, with its own data and certs. */
export class TestServer {
  proc!: Proc;
  url = '';
  fingerprint = '';
  adminPassword = '';
  /** 0 until the first start; a restart binds the same port so that paired devices find it again. */
  port = 0;
  readonly root = tempDir('server');
  readonly dataDir = path.join(this.root, 'data');
  readonly certsDir = path.join(this.root, 'certs');
  /** Environment for the server process from its next start (e.g. KEEPSYNC_TRACE, KEEPSYNC_CRASH_AT). */
  env: NodeJS.ProcessEnv = {};

  constructor(readonly db: TestDatabase, readonly extraArgs: string[] = []) {}

  get args(): string[] {
    return [
      'server', '--data', this.dataDir, '--certs', this.certsDir, '--host', '127.0.0.1', '--port', String(this.port),
      ...(this.db.url ? ['--database-url', this.db.url] : []), ...this.extraArgs,
    ];
  }

  async start(): Promise<this> {
    this.proc = new Proc(this.args, this.env);
    await waitFor('the server to print its fingerprint', () => {
      if (!this.proc.running) throw new Error(`server exited: ${this.proc.stderr}`);
      return /certificate fingerprint: sha256\/[0-9a-f]{64}/.test(this.proc.stdout) || /plain HTTP/.test(this.proc.stdout);
    }, 30_000);
    this.url = /listening on (\S+)/.exec(this.proc.stdout)![1];
    this.port = Number(new URL(this.url).port);
    this.fingerprint = /sha256\/([0-9a-f]{64})/.exec(this.proc.stdout)?.[1] ?? '';
    this.adminPassword = /admin password: (\S+)/.exec(this.proc.stdout)?.[1] ?? this.adminPassword;
    return this;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.proc?.stop(signal);
  }

  /** Where the server stands, for a failed wait: running or not, and its last lines. */
  explain(): string {
    if (!this.proc) return 'server: not started';
    return `server: ${this.proc.running ? 'running' : `exited ${this.proc.child.exitCode ?? this.proc.child.signalCode}`}; said: ${tail(this.proc.stderr)}`;
  }

  async restart(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.stop(signal);
    await this.start();
  }

  /** A fresh pairing link from `keepsync server pair`. */
  async pairingLink(name?: string): Promise<string> {
    const r = await keepsync(['server', 'pair', '--data', this.dataDir, ...(this.db.url ? ['--database-url', this.db.url] : []), ...(name ? ['--name', name] : [])]);
    if (r.code !== 0) throw new Error(`server pair failed: ${r.stderr}`);
    return r.stdout.trim();
  }

  async cleanup(): Promise<void> {
    await this.stop();
    // An in-process server's store may still be renaming a chunk it was slowed down on: try again a few times.
    await fsp.rm(this.root, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  }
}

/** A device: a home dir and a synced folder, driven through the CLI. */
export class TestDevice {
  readonly root: string;
  readonly home: string;
  readonly dir: string;
  live?: Proc;
  /** Environment for this device's processes (e.g. NODE_EXTRA_CA_CERTS, KEEPSYNC_TRACE). */
  env: NodeJS.ProcessEnv = {};
  /** Runs this device's processes through a command (e.g. `ip netns exec NAME`). */
  prefix: string[] = [];

  constructor(readonly name: string) {
    this.root = tempDir(`device-${name}`);
    this.home = path.join(this.root, 'home');
    this.dir = path.join(this.root, 'folder');
    fs.mkdirSync(this.dir, { recursive: true });
  }

  run(args: string[], timeoutMs?: number): Promise<RunResult> {
    return keepsync([...args, '--home', this.home], { timeoutMs, env: this.env, prefix: this.prefix });
  }

  async pair(link: string, extra: string[] = []): Promise<RunResult> {
    return this.run(['pair', link, '--dir', this.dir, '--name', this.name, ...extra]);
  }

  /** `keepsync sync --once`, failing the test on a non-zero exit. */
  async syncOnce(timeoutMs = 60_000): Promise<RunResult> {
    const r = await this.run(['sync', '--once', '--quiet'], timeoutMs);
    if (r.code !== 0) throw new Error(`${this.name}: sync --once exited ${r.code}: ${r.stderr}`);
    return r;
  }

  /** Starts `keepsync sync` in the background without waiting for anything. */
  launch(extra: string[] | { uid?: number; gid?: number } = []): void {
    const args = Array.isArray(extra) ? extra : [];
    const user = Array.isArray(extra) ? {} : extra;
    this.live = new Proc(['sync', '--quiet', '--home', this.home, ...args], this.env, { prefix: this.prefix, ...user });
  }

  /**
   * Starts `keepsync sync` in the background and waits until it is connected:
   * with extra arguments, or as another user when given.
   */
  async start(extra: string[] | { uid?: number; gid?: number } = []): Promise<void> {
    this.launch(extra);
    await waitFor(`${this.name} to connect`, () => {
      if (!this.live!.running) throw new Error(`${this.name} sync exited: ${this.live!.stderr}`);
      const state = readJson(path.join(this.home, 'state.json'));
      return state?.connected === true && state.pid === this.live!.child.pid;
    });
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const code = await this.live?.stop(signal);
    this.live = undefined;
    return code ?? null;
  }

  p(rel: string): string {
    return path.join(this.dir, ...rel.split('/'));
  }

  /** Where this device stands, for a failed wait: its live process, published state and folder. */
  explain(): string {
    const live = this.live ? (this.live.running ? 'running' : `exited ${this.live.child.exitCode ?? this.live.child.signalCode}`) : 'not running';
    const state = readJson(path.join(this.home, 'state.json'));
    let entries = 0;
    let top: string[] = [];
    try {
      entries = fs.readdirSync(this.dir, { recursive: true }).length;
      top = fs.readdirSync(this.dir);
    } catch {}
    const published = state ? JSON.stringify({ connected: state.connected, pendingUp: state.pendingUp, pendingDown: state.pendingDown, lastError: state.lastError, lastSyncAt: state.lastSyncAt }) : '(none)';
    return `${this.name}: sync ${live}; state ${published}; folder holds ${entries} entries, at the top ${JSON.stringify(top.slice(0, 20))}; ${this.indexSummary()}; said: ${tail(this.live?.stderr ?? '')}`;
  }

  /**
   * What this device's index holds (read-only, beside the running sync): the
   * paths it counts as synced and those it knows from the server, which tell a
   * change never sent from one never fetched.
   */
  private indexSummary(): string {
    const file = path.join(this.home, 'index.db');
    if (!fs.existsSync(file)) return 'index: none';
    // Called while explaining a failure: a busy or half-made index must not hide that failure.
    let db: Database.Database | undefined;
    try {
      db = new Database(file, { readonly: true, fileMustExist: true });
      const paths = (table: string) => (db!.prepare(`SELECT path FROM ${table} ORDER BY path LIMIT 20`).all() as Array<{ path: string }>).map((r) => r.path);
      const seq = (db.prepare("SELECT value FROM meta WHERE key = 'seq'").get() as { value: string } | undefined)?.value ?? '0';
      return `index: at sequence ${seq}, synced ${JSON.stringify(paths('synced'))}, from the server ${JSON.stringify(paths('remote'))}`;
    } catch (err) {
      return `index: unreadable (${(err as Error).message})`;
    } finally {
      db?.close();
    }
  }

  write(rel: string, content: string | Buffer): void {
    fs.mkdirSync(path.dirname(this.p(rel)), { recursive: true });
    fs.writeFileSync(this.p(rel), content);
  }

  read(rel: string): string | undefined {
    try {
      return fs.readFileSync(this.p(rel), 'utf8');
    } catch {
      return undefined;
    }
  }

  exists(rel: string): boolean {
    return fs.existsSync(this.p(rel));
  }

  /** Every file and folder under the synced folder: path → content (folders: '/'). */
  tree(): Map<string, string> {
    const out = new Map<string, string>();
    const walk = (dir: string, rel: string) => {
      for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
        const r = rel ? `${rel}/${d.name}` : d.name;
        if (d.isDirectory()) {
          out.set(r, '/');
          walk(path.join(dir, d.name), r);
        } else out.set(r, fs.readFileSync(path.join(dir, d.name)).toString('base64'));
      }
    };
    walk(this.dir, '');
    return out;
  }

  async cleanup(): Promise<void> {
    await this.stop('SIGKILL');
    await fsp.rm(this.root, { recursive: true, force: true });
  }
}

/** The end of a process's output, on one line per line, or `nothing`. */
function tail(output: string): string {
  const t = output.trim();
  if (t === '') return 'nothing';
  return (t.length > 3000 ? `…${t.slice(-3000)}` : t).replace(/\n/g, '\n  ');
}

function readJson(file: string): any {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Trees as sorted arrays, for readable assertion diffs. */
export function sortedTree(t: Map<string, string>): Array<[string, string]> {
  return [...t].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, v.length > 60 ? `${v.slice(0, 20)}…(${v.length})` : v]);
}

export interface Scenario {
  db: TestDatabase;
  server: TestServer;
  devices: TestDevice[];
  /** Pairs a new device and syncs it once. */
  addDevice(name: string): Promise<TestDevice>;
  cleanup(): Promise<void>;
}

/** A running server on `kind` and nothing else yet. */
export async function scenario(kind: DatabaseKind, serverArgs: string[] = []): Promise<Scenario> {
  const db = await kind.create();
  const server = await new TestServer(db, serverArgs).start();
  const devices: TestDevice[] = [];
  const forget = explainTimeouts(() => [server.explain(), ...devices.map((d) => d.explain())].join('\n'));
  return {
    db, server, devices,
    async addDevice(name) {
      const d = new TestDevice(name);
      devices.push(d);
      const r = await d.pair(await server.pairingLink());
      if (r.code !== 0) throw new Error(`pairing ${name} failed: ${r.stderr}`);
      return d;
    },
    async cleanup() {
      forget();
      for (const d of devices) await d.cleanup();
      await server.cleanup();
      await db.drop();
    },
  };
}

/** Runs `fn` once per database kind (SQLite, and PostgreSQL when configured). */
export function forEachDatabase(fn: (kind: DatabaseKind) => void): void {
  for (const kind of databaseKinds()) describe(`on ${kind.name}`, () => fn(kind));
}
