import crypto from 'node:crypto';
import { packManifest, parseRelPath, type Op, type OpResult, type RelPath } from '@keepsync/protocol';
import { movedFolder, plan, structureOp, type Action, type LocalView, type PathStates, type RemoteRecord, type SyncedRecord } from '@keepsync/client';
import { SyncService, type Folder } from '@keepsync/server';
import { Rng } from '../chaos/rng.js';
import { MemoryContentStore, MemoryMetadataStore } from './memoryStores.js';

/**
 * A deterministic simulation of several devices and the server, driven by one
 * seeded scheduler with a fake clock. The server is the real SyncService and
 * PushApplier over in-memory stores; each device is a model of the client
 * engine (pull, plan with the real planner, act with the same checks as
 * LocalFolder, record results as the Engine does) over an in-memory file
 * system. Not simulated: the watcher, hashing, chunking, transfers, the
 * wire protocol and the local SQLite index (the real-process chaos test
 * covers those).
 */

interface Node {
  kind: 'file' | 'dir';
  data: Buffer;
  hash: string;
  ino: number;
  mtime: number;
}

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const within = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`);
const parentOf = (p: string) => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
const DIRS = ['d', 'e', 'd/s', 'E'];
const NAMES = ['a', 'b', 'x', 'y', 'B'];

class SimDevice {
  fs = new Map<string, Node>();
  synced = new Map<string, SyncedRecord>();
  remote = new Map<string, RemoteRecord>();
  seq = 0;
  constructor(readonly id: number, readonly name: string) {}
}

export interface SimResult {
  /** A digest of the final server tree and history: equal for equal seeds (I8). */
  digest: string;
  steps: number;
  problems: string[];
}

export class Simulation {
  private readonly rng: Rng;
  private clock = 1_700_000_000_000;
  private ino = 1;
  private readonly meta = new MemoryMetadataStore();
  private readonly content = new MemoryContentStore();
  private readonly sync: SyncService;
  private folder!: Folder;
  private readonly devices: SimDevice[];
  private readonly written = new Map<string, string>();
  private readonly exempt = new Set<string>();
  readonly log: string[] = [];

  constructor(readonly seed: number, deviceCount = 3, readonly steps = 60) {
    this.rng = new Rng(seed);
    this.sync = new SyncService(this.meta, this.content, () => this.clock);
    this.devices = Array.from({ length: deviceCount }, (_, i) => new SimDevice(i + 1, `dev${i + 1}`));
  }

  async run(): Promise<SimResult> {
    this.folder = await this.meta.ensureFolder('Sync', 'epoch', this.clock);
    for (let i = 0; i < this.steps; i++) {
      this.clock += this.rng.range(1, 5000);
      const d = this.rng.pick(this.devices);
      if (this.rng.chance(0.55)) this.userOp(d);
      else await this.cycle(d, true);
    }
    const problems: string[] = [];
    // Settle: every device syncs until a whole round changes nothing (I7: within a bound).
    let quiet = false;
    for (let round = 0; round < 12 && !quiet; round++) {
      quiet = true;
      for (const d of this.devices) if (await this.cycle(d, false)) quiet = false;
    }
    if (!quiet) problems.push('no fixed point after 12 rounds of syncing (endless up/down loop)');
    problems.push(...(await this.check()));
    return { digest: this.digest(), steps: this.steps, problems };
  }

  // ---- the user ----

  private note(line: string): void {
    this.log.push(line);
  }

  /** The user overwrites or deletes content: lost only if it never reached the server. */
  private destroy(node: Node | undefined): void {
    if (node?.kind === 'file' && !this.meta.data.versions.some((v) => v.hash === node.hash)) this.exempt.add(node.hash);
  }

  /** Creates the missing folders above `p`, as LocalFolder does before a write. */
  private makeParents(d: SimDevice, p: string): void {
    for (let dir = parentOf(p); dir; dir = parentOf(dir)) if (!d.fs.has(dir)) d.fs.set(dir, { kind: 'dir', data: Buffer.alloc(0), hash: '', ino: this.ino++, mtime: 0 });
  }

  private write(d: SimDevice, p: string, data: Buffer): boolean {
    for (let dir = parentOf(p); dir; dir = parentOf(dir)) if (d.fs.get(dir)?.kind === 'file') return false;
    const old = d.fs.get(p);
    if (old?.kind === 'dir') return false;
    this.destroy(old);
    this.makeParents(d, p);
    d.fs.set(p, { kind: 'file', data, hash: sha(data), ino: old?.ino ?? this.ino++, mtime: this.clock });
    if (!this.written.has(sha(data))) this.written.set(sha(data), `${d.name} ${p}`);
    return true;
  }

  private userOp(d: SimDevice): void {
    const { rng } = this;
    const files = [...d.fs].filter(([, n]) => n.kind === 'file').map(([p]) => p).sort();
    const dirs = [...d.fs].filter(([, n]) => n.kind === 'dir').map(([p]) => p).sort();
    const kind = rng.weighted([[30, 'write'], [20, 'edit'], [10, 'delete'], [10, 'rename'], [5, 'mkdir'], [6, 'rmdir'], [6, 'mvdir']] as const);
    const data = Buffer.from(`${d.name} ${this.clock} ${rng.int(1e6)}`.repeat(rng.range(0, 3)));
    if (kind === 'write' || (kind === 'edit' && files.length === 0)) {
      const p = `${rng.pick(['', ...DIRS])}/${rng.pick(NAMES)}`.replace(/^\//, '');
      if (this.write(d, p, data)) this.note(`${d.name}: write ${p}`);
    } else if (kind === 'edit') {
      const p = rng.pick(files);
      if (this.write(d, p, data)) this.note(`${d.name}: edit ${p}`);
    } else if (kind === 'delete' && files.length > 0) {
      const p = rng.pick(files);
      this.destroy(d.fs.get(p));
      d.fs.delete(p);
      this.note(`${d.name}: delete ${p}`);
    } else if (kind === 'rename' && files.length > 0) {
      const p = rng.pick(files);
      const to = `${parentOf(p) ? `${parentOf(p)}/` : ''}${rng.pick(NAMES)}`;
      if (d.fs.has(to)) return;
      d.fs.set(to, d.fs.get(p)!);
      d.fs.delete(p);
      this.note(`${d.name}: rename ${p} → ${to}`);
    } else if (kind === 'mkdir') {
      const p = rng.pick(DIRS);
      if (d.fs.has(p) || (parentOf(p) && d.fs.get(parentOf(p))?.kind !== 'dir')) return;
      d.fs.set(p, { kind: 'dir', data: Buffer.alloc(0), hash: '', ino: this.ino++, mtime: 0 });
      this.note(`${d.name}: mkdir ${p}`);
    } else if (kind === 'rmdir' && dirs.length > 0) {
      const p = rng.pick(dirs);
      for (const [q, n] of [...d.fs]) {
        if (!within(q, p)) continue;
        this.destroy(n);
        d.fs.delete(q);
      }
      this.note(`${d.name}: delete folder ${p}`);
    } else if (kind === 'mvdir' && dirs.length > 0) {
      const p = rng.pick(dirs);
      const to = rng.pick(DIRS.filter((x) => !within(x, p) && !d.fs.has(x) && (!parentOf(x) || d.fs.get(parentOf(x))?.kind === 'dir')).concat(['']));
      if (!to) return;
      for (const [q, n] of [...d.fs].filter(([q]) => within(q, p))) {
        d.fs.delete(q);
        d.fs.set(to + q.slice(p.length), n);
      }
      this.note(`${d.name}: move folder ${p} → ${to}`);
    }
  }

  // ---- a device's sync cycle (the Engine, modelled) ----

  private async pull(d: SimDevice): Promise<void> {
    for (;;) {
      const page = await this.sync.changes(this.folder, d.seq);
      for (const e of page.entries) {
        const old = d.remote.get(e.path);
        if (old && old.seq > e.seq) continue;
        d.remote.set(e.path, { path: e.path, kind: e.kind, deleted: e.deleted, seq: e.seq, version: e.version, hash: e.hash, size: e.size, mtime: e.mtime, exec: e.exec, from: e.from ?? null, manifest: null });
      }
      d.seq = Math.max(d.seq, page.seq);
      if (!page.more) return;
    }
  }

  private states(d: SimDevice): Map<RelPath, PathStates> {
    const out = new Map<RelPath, PathStates>();
    const get = (p: string) => {
      let st = out.get(p as RelPath);
      if (!st) out.set(p as RelPath, (st = {}));
      return st;
    };
    for (const [p, n] of d.fs) {
      const l: LocalView = { path: p as RelPath, localPath: p, kind: n.kind, size: n.data.length, mtime: n.mtime, ino: n.ino, exec: false };
      if (n.kind === 'file') l.content = { hash: n.hash, size: n.data.length, chunks: [] };
      get(p).local = l;
    }
    for (const [p, s] of d.synced) get(p).synced = s;
    for (const [p, r] of d.remote) get(p).remote = r;
    return out;
  }

  /** One cycle; with `faults`, it may stop part-way (a crash) or lose the push answer. Answers whether it planned anything. */
  private async cycle(d: SimDevice, faults: boolean): Promise<boolean> {
    await this.pull(d);
    let actions = plan(this.states(d));
    if (actions.length === 0) return false;
    if (faults && this.rng.chance(0.15)) {
      actions = actions.slice(0, this.rng.int(actions.length));
      this.note(`${d.name}: crashes after ${actions.length} actions`);
    }
    const pushes = actions.filter((a) => a.kind.startsWith('push-'));
    for (const a of actions) if (!a.kind.startsWith('push-')) this.applyRemote(d, a);
    if (pushes.length === 0) return true;
    const order = (a: Action) => (a.kind === 'push-mkdir' ? 0 : a.kind === 'push-move' ? 1 : a.kind === 'push-put' ? 2 : 3);
    pushes.sort((x, y) => order(x) - order(y));
    const ops: Array<{ a: Action; op: Op }> = [];
    for (const a of pushes) {
      const op = this.opOf(d, a);
      if (op) ops.push({ a, op });
    }
    if (ops.length === 0) return true;
    const results = await this.sync.push(this.folder, { id: d.id, name: d.name }, ops.map((o) => o.op), () => true);
    if (faults && this.rng.chance(0.1)) {
      this.note(`${d.name}: connection lost before the push answer`);
      return true;
    }
    ops.forEach((o, i) => this.record(d, o.a, results[i]));
    return true;
  }

  private applyRemote(d: SimDevice, a: Action): void {
    // As LocalFolder: the path must still be what the planner saw.
    const matches = (p: string, s: LocalView) => {
      const n = d.fs.get(p);
      return n !== undefined && n.kind === s.kind && (n.kind === 'dir' || (n.ino === s.ino && n.mtime === s.mtime && n.data.length === s.size));
    };
    switch (a.kind) {
      case 'rename-local': {
        if (!matches(a.from, a.local) || d.fs.has(a.to)) return;
        // As LocalFolder.rename: parents are created, never through a file.
        for (let dir = parentOf(a.to); dir; dir = parentOf(dir)) if (d.fs.get(dir)?.kind === 'file') return;
        this.makeParents(d, a.to);
        for (const [q, n] of [...d.fs].filter(([q]) => within(q, a.from))) {
          d.fs.delete(q);
          d.fs.set(a.to + q.slice(a.from.length), n);
        }
        for (const [q, s] of [...d.synced].filter(([q]) => within(q, a.from))) {
          d.synced.delete(q);
          const to = a.to + q.slice(a.from.length);
          d.synced.set(to, { ...s, path: to as RelPath });
          if (!d.remote.has(to)) d.remote.set(to, { path: to as RelPath, kind: s.kind, deleted: true, seq: 0, version: 0, hash: '', size: 0, mtime: 0, exec: false, from: null, manifest: null });
        }
        return;
      }
      case 'mkdir-local': {
        for (let dir = parentOf(a.path); dir; dir = parentOf(dir)) if (d.fs.get(dir)?.kind === 'file') return;
        for (let dir: string = a.path; dir; dir = parentOf(dir)) if (!d.fs.has(dir)) d.fs.set(dir, { kind: 'dir', data: Buffer.alloc(0), hash: '', ino: this.ino++, mtime: 0 });
        d.synced.set(a.path, { path: a.path, kind: 'dir', version: 0, hash: '', size: 0, mtime: 0, exec: false, ino: d.fs.get(a.path)!.ino, manifest: null });
        return;
      }
      case 'adopt': {
        const r = a.remote && !a.remote.deleted ? a.remote : undefined;
        // As the Engine: the same bytes on both sides take the server's mtime.
        let mtime = a.local.mtime;
        const n = d.fs.get(a.path);
        if (r?.kind === 'file' && n?.kind === 'file' && matches(a.path, a.local) && Math.round(mtime) !== r.mtime) mtime = n.mtime = r.mtime;
        if (r) d.synced.set(a.path, { path: a.path, kind: r.kind, version: r.version, hash: r.hash, size: a.local.size, mtime, exec: r.exec, ino: a.local.ino, manifest: null });
        else if (a.synced) d.synced.set(a.path, { ...a.synced, size: a.local.size, mtime, ino: a.local.ino });
        return;
      }
      case 'forget':
        d.synced.delete(a.path);
        return;
      case 'delete-local': {
        if (a.local.kind === 'dir') {
          if (![...d.fs.keys()].some((q) => q !== a.path && within(q, a.path))) d.fs.delete(a.path);
          d.synced.delete(a.path);
        } else if (matches(a.path, a.local)) {
          d.fs.delete(a.path);
          d.synced.delete(a.path);
        }
        return;
      }
      case 'download': {
        const r = a.remote;
        const cur = d.fs.get(a.path);
        if (a.local ? !matches(a.path, a.local) : cur !== undefined) return;
        for (let dir = parentOf(a.path); dir; dir = parentOf(dir)) if (d.fs.get(dir)?.kind === 'file') return;
        const data = r.size === 0 ? Buffer.alloc(0) : Buffer.from(this.content.chunks.get(r.hash) ?? Buffer.alloc(0));
        if (sha(data) !== r.hash) return;
        this.makeParents(d, a.path);
        const node: Node = { kind: 'file', data, hash: r.hash, ino: this.ino++, mtime: r.mtime };
        d.fs.set(a.path, node);
        d.synced.set(a.path, { path: a.path, kind: 'file', version: r.version, hash: r.hash, size: data.length, mtime: node.mtime, exec: r.exec, ino: node.ino, manifest: null });
        return;
      }
      default:
        throw new Error(`bug: ${a.kind} is not a local action`);
    }
  }

  private opOf(d: SimDevice, a: Action): Op | undefined {
    switch (a.kind) {
      case 'push-put': {
        const n = d.fs.get(a.local.localPath);
        if (!n || n.kind !== 'file') return undefined;
        if (n.data.length > 0) void this.content.put(n.hash, n.data);
        const manifest = packManifest(n.data.length > 0 ? [{ hash: n.hash, size: n.data.length }] : []);
        return { op: 'put', path: a.path, base: a.synced?.version ?? 0, size: n.data.length, hash: n.hash, mtime: n.mtime, exec: false, manifest: { full: manifest } };
      }
      default:
        return structureOp(a, d.seq);
    }
  }

  /** What the Engine records for a push result. */
  private record(d: SimDevice, a: Action, r: OpResult): void {
    const p = a.kind === 'push-move' ? a.from : 'path' in a ? a.path : a.to;
    if (r.status === 'stale') {
      for (const q of [...d.synced.keys()]) if (within(q, p)) d.synced.delete(q);
      return;
    }
    if (r.status === 'error') {
      this.note(`${d.name}: the server refused ${a.kind} ${p}: ${r.message}`);
      return;
    }
    const remote = (path: string, fields: Partial<RemoteRecord>) =>
      d.remote.set(path, { path: path as RelPath, kind: 'file', deleted: false, seq: 0, version: 0, hash: '', size: 0, mtime: 0, exec: false, from: null, manifest: null, ...fields });
    switch (a.kind) {
      case 'push-mkdir': {
        const target = r.status === 'conflict' ? r.path : a.path;
        if (r.status === 'conflict') {
          if (d.fs.has(target) || d.fs.get(a.path)?.kind !== 'dir') return;
          for (const [q, n] of [...d.fs].filter(([q]) => within(q, a.path))) {
            d.fs.delete(q);
            d.fs.set(target + q.slice(a.path.length), n);
          }
          for (const q of [...d.synced.keys()]) if (within(q, a.path)) d.synced.delete(q);
        }
        d.synced.set(target, { path: target as RelPath, kind: 'dir', version: 0, hash: '', size: 0, mtime: 0, exec: false, ino: d.fs.get(target)?.ino ?? 0, manifest: null });
        remote(target, { kind: 'dir', seq: r.seq });
        return;
      }
      case 'push-delete':
        for (const q of [...d.synced.keys()]) if (within(q, a.path)) d.synced.delete(q);
        remote(a.path, { kind: a.synced.kind, deleted: true, seq: r.seq });
        return;
      case 'push-move': {
        for (const [q, s] of [...d.synced].filter(([q]) => within(q, a.from))) {
          d.synced.delete(q);
          d.synced.set(a.to + q.slice(a.from.length), { ...s, path: (a.to + q.slice(a.from.length)) as RelPath });
        }
        for (const [q, old] of [...d.remote].filter(([q]) => q !== a.from && within(q, a.from))) d.remote.set(q, { ...old, deleted: true });
        for (const q of [...d.synced.keys()].filter((q) => q !== a.to && within(q, a.to))) remote(q, { kind: d.synced.get(q)!.kind, deleted: true });
        remote(a.from, { kind: a.synced.kind, deleted: true, seq: r.seq });
        remote(a.to, { kind: a.synced.kind, seq: r.version === a.synced.version ? r.seq : 0, version: r.version, hash: a.synced.hash, size: a.synced.size, mtime: Math.round(a.synced.mtime) });
        return;
      }
      case 'push-put': {
        const n = d.fs.get(a.path);
        if (r.status === 'ok' && r.path !== undefined && r.path !== a.path) {
          // The edit followed a rename made elsewhere: the file follows too,
          // or its folder's own move carries it along next cycle.
          d.synced.delete(a.path);
          remote(a.path, { deleted: true, seq: r.seq });
          const folder = movedFolder(a.path, r.path);
          if (folder && d.synced.get(folder.from)?.kind === 'dir' && !d.fs.has(folder.to)) return;
          if (n?.kind === 'file' && n.ino === a.local.ino && n.mtime === a.local.mtime && !d.fs.has(r.path)) {
            remote(r.path, { seq: r.seq, version: r.version, hash: n.hash, size: n.data.length, mtime: r.mtime ?? n.mtime });
            d.fs.delete(a.path);
            this.makeParents(d, r.path);
            d.fs.set(r.path, n);
            d.synced.set(r.path, { path: r.path, kind: 'file', version: r.version, hash: n.hash, size: n.data.length, mtime: n.mtime, exec: false, ino: n.ino, manifest: null });
          }
          return;
        }
        if (r.status === 'ok') {
          if (n?.kind === 'file' && n.ino === a.local.ino) {
            d.synced.set(a.path, { path: a.path, kind: 'file', version: r.version, hash: n.hash, size: n.data.length, mtime: n.mtime, exec: false, ino: n.ino, manifest: null });
            remote(a.path, { seq: r.seq, version: r.version, hash: n.hash, size: n.data.length, mtime: n.mtime });
          }
          return;
        }
        if (r.status === 'conflict') {
          if (n?.kind === 'file' && n.ino === a.local.ino && n.mtime === a.local.mtime && !d.fs.has(r.path)) {
            d.fs.delete(a.path);
            d.fs.set(r.path, n);
            d.synced.set(r.path, { path: r.path, kind: 'file', version: r.version, hash: n.hash, size: n.data.length, mtime: n.mtime, exec: false, ino: n.ino, manifest: null });
          }
          d.synced.delete(a.path);
        }
        return;
      }
      default:
        return;
    }
  }

  // ---- the invariants ----

  private async check(): Promise<string[]> {
    const problems: string[] = [];
    const live = await this.meta.liveUnder(this.folder.id, undefined);
    const server = new Map(live.map((e) => [e.path as string, e]));
    for (const d of this.devices) {
      for (const [p, e] of server) {
        const n = d.fs.get(p);
        if (!n) problems.push(`${d.name} lacks ${p}`);
        else if (n.kind !== e.kind || (n.kind === 'file' && n.hash !== e.hash)) problems.push(`${d.name} has another ${p}`);
      }
      for (const p of d.fs.keys()) if (!server.has(p)) problems.push(`${d.name} has ${p}, the server does not`);
    }
    const kept = new Set(this.meta.data.versions.map((v) => v.hash));
    for (const [h, where] of this.written) if (!kept.has(h) && !this.exempt.has(h)) problems.push(`lost: content written by ${where}`);
    for (const e of live) {
      const parent = parentOf(e.path);
      if (parent && server.get(parent)?.kind !== 'dir') problems.push(`${e.path} is live without a live parent folder`);
      parseRelPath(e.path);
    }
    return problems;
  }

  private digest(): string {
    const h = crypto.createHash('sha256');
    for (const e of [...this.meta.data.entries.values()].sort((a, b) => a.seq - b.seq)) h.update(`${e.path}|${e.kind}|${e.deleted}|${e.seq}|${e.hash}\n`);
    for (const v of this.meta.data.versions) h.update(`${v.id}|${v.path}|${v.hash}\n`);
    for (const d of this.devices) for (const [p, n] of [...d.fs].sort()) h.update(`${d.name}|${p}|${n.hash}\n`);
    return h.digest('hex');
  }
}
