import assert from 'node:assert/strict';
import type { RelPath } from '@keepsync/protocol';
import type { RemoteRecord, SyncedRecord } from '../src/index/LocalIndex.js';
import { localChanged, movedFolder, plan, remoteChanged, type Action, type LocalView, type PathStates } from '../src/sync/planner.js';

/**
 * Property tests of the pure planner (SAFETY.md A8): random but consistent
 * (local, last synced, server) trees, thousands of them, each checked against
 * the rules that keep data safe. A failing case is shrunk to the fewest paths
 * that still fail and printed with its seed.
 */

const CASES = Number(process.env.KEEPSYNC_PLANNER_CASES ?? 4000);

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type States = Map<RelPath, PathStates>;
const DIRS = ['d', 'd/s', 'e'] as RelPath[];
const FILES = ['a', 'b', 'c', 'd/x', 'd/y', 'd/s/z', 'e/w'] as RelPath[];
const parentOf = (p: string) => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : undefined);
const hash = (n: number) => n.toString(16).padStart(64, '0');

/** A random, internally consistent set of path states. */
function generate(seed: number): States {
  const r = prng(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
  const states: States = new Map();
  let ino = 100;
  let version = 10;
  let content = 1000;
  const localDir = new Map<string, boolean>();
  const syncedDir = new Map<string, boolean>();
  const remoteDir = new Map<string, boolean>();
  const present = (m: Map<string, boolean>, p: string) => {
    const parent = parentOf(p);
    return parent === undefined || m.get(parent) === true;
  };
  for (const d of DIRS) {
    const st: PathStates = {};
    const s = present(syncedDir, d) && r() < 0.7;
    syncedDir.set(d, s);
    const dirIno = ino++;
    if (s) st.synced = { path: d, kind: 'dir', version: 0, hash: '', size: 0, mtime: 0, exec: false, ino: dirIno, manifest: null };
    const rem = present(remoteDir, d) ? pick(s ? ['same', 'same', 'deleted', 'none'] : ['none', 'none', 'new']) : s ? 'deleted' : 'none';
    remoteDir.set(d, rem === 'same' || rem === 'new');
    if (rem !== 'none') st.remote = { path: d, kind: 'dir', deleted: rem === 'deleted', seq: 5, version: 0, hash: '', size: 0, mtime: 0, exec: false, from: null, manifest: null };
    const l = present(localDir, d) && r() < (s ? 0.8 : 0.4);
    localDir.set(d, l);
    if (l) st.local = { path: d, localPath: d, kind: 'dir', size: 0, mtime: 0, ino: s ? dirIno : ino++, exec: false };
    if (st.local || st.synced || st.remote) states.set(d, st);
  }
  for (const f of FILES) {
    const st: PathStates = {};
    const s = present(syncedDir, f) && r() < 0.7;
    const base = { v: version++, h: hash(content++), size: 10 + Math.floor(r() * 5), mtime: 1000 + Math.floor(r() * 3), ino: ino++ };
    if (s) st.synced = { path: f, kind: 'file', version: base.v, hash: base.h, size: base.size, mtime: base.mtime, exec: false, ino: base.ino, manifest: null };
    const remoteChoices = present(remoteDir, f) ? (s ? ['same', 'same', 'edited', 'same-bytes', 'deleted'] : ['none', 'none', 'new']) : s ? ['deleted'] : ['none'];
    const rem = pick(remoteChoices);
    const remoteHash = rem === 'edited' || rem === 'new' ? hash(content++) : base.h;
    if (rem !== 'none') {
      st.remote = {
        path: f, kind: 'file', deleted: rem === 'deleted', seq: 6, version: rem === 'same' ? base.v : version++, hash: rem === 'deleted' ? '' : remoteHash,
        size: 10, mtime: 2000, exec: false, from: null, manifest: null,
      };
    }
    if (present(localDir, f)) {
      const loc = pick(s ? ['same', 'same', 'touched', 'edited', 'like-remote', 'gone'] : ['none', 'new', 'like-remote']);
      if (loc !== 'gone' && loc !== 'none') {
        const same = loc === 'same';
        const l: LocalView = {
          path: f, localPath: f, kind: 'file', size: same ? base.size : base.size + 1, mtime: same ? base.mtime : 5000, ino: s ? base.ino : ino++, exec: false,
        };
        const h = loc === 'same' || loc === 'touched' ? base.h : loc === 'like-remote' ? remoteHash : hash(content++);
        if (!same) l.content = { hash: h, size: l.size, chunks: [] };
        st.local = l;
      }
    }
    if (st.local || st.synced || st.remote) states.set(f, st);
  }
  // Sometimes a local move: a synced, unchanged file shows up under a new free name.
  const movable = [...states].filter(([, st]) => st.synced?.kind === 'file' && st.local && !st.local.content);
  if (movable.length > 0 && r() < 0.3) {
    const [from, st] = pick(movable);
    const to = `${from}-moved` as RelPath;
    if (present(localDir, to)) {
      states.set(to, { local: { ...st.local!, path: to, localPath: to } });
      delete st.local;
    }
  }
  return states;
}

function keyOf(a: Action): string {
  return 'path' in a ? a.path : a.to;
}

const within = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`);

/** Every rule a plan must keep; answers the broken ones. */
function violations(states: States): string[] {
  const actions = plan(states);
  const out: string[] = [];
  const touched = (p: string) =>
    actions.some((a) => keyOf(a) === p || ((a.kind === 'push-move' || a.kind === 'rename-local') && (within(p, a.from) || within(p, a.to))) || (a.kind === 'push-delete' && within(p, a.path)));
  for (const a of actions) {
    const st = states.get(('from' in a ? a.from : a.path) as RelPath);
    if (!st) {
      out.push(`${a.kind} of ${keyOf(a)}, a path the planner was not given`);
      continue;
    }
    switch (a.kind) {
      case 'delete-local':
        if (localChanged(st)) out.push(`delete-local ${a.path} although it changed here (I1)`);
        break;
      case 'download':
        if (st.local && localChanged(st) && st.local.content?.hash !== st.remote?.hash) out.push(`download over ${a.path} although it changed here (I1)`);
        break;
      case 'rename-local':
        if (localChanged(st)) out.push(`rename-local of ${a.from} although it changed here`);
        break;
      case 'push-delete':
        if (remoteChanged(st) && !st.remote?.deleted) out.push(`push-delete of ${a.path} although the server changed it (A2: the edit wins)`);
        break;
      case 'push-put':
        if (a.synced && st.synced && a.synced.version !== st.synced.version) out.push(`push-put of ${a.path} against a base other than the synced one`);
        break;
      default:
        break;
    }
  }
  for (const [p, st] of states) {
    const l = st.local;
    const r = st.remote && !st.remote.deleted ? st.remote : undefined;
    // A local change is never dropped: it goes to the server (A1, A2, I1).
    if (l?.kind === 'file' && localChanged(st) && l.content?.hash !== r?.hash && !touched(p)) out.push(`the local change of ${p} is dropped`);
    // A one-sided server change comes here (I3).
    if (!localChanged(st) && remoteChanged(st) && r?.kind === 'file' && l?.content?.hash !== r.hash && !touched(p)) out.push(`the server's change of ${p} is not applied`);
    // An edit here racing a delete there keeps the edit (A2).
    if (st.remote?.deleted && l?.kind === 'file' && localChanged(st) && actions.some((a) => a.kind === 'delete-local' && a.path === p)) out.push(`${p}: the delete there beat the edit here`);
  }
  // Deterministic whatever the order of the map (I8).
  const shuffled = new Map([...states].reverse());
  try {
    assert.deepEqual(plan(shuffled), actions);
  } catch {
    out.push('the plan depends on the order of the states');
  }
  return out;
}

/** Drops paths while the failure persists. */
function shrink(states: States): States {
  let cur = states;
  for (let changed = true; changed; ) {
    changed = false;
    for (const p of cur.keys()) {
      const next = new Map([...cur].filter(([q]) => !within(q, p)));
      if (next.size < cur.size && violations(next).length > 0) {
        cur = next;
        changed = true;
        break;
      }
    }
  }
  return cur;
}

const show = (states: States) => JSON.stringify([...states], (_k, v) => (v instanceof Uint8Array ? '<bytes>' : v), 1);

describe('plan (property tests)', () => {
  it(`keeps every safety rule over ${CASES} random trees`, () => {
    for (let seed = 1; seed <= CASES; seed++) {
      const states = generate(seed);
      if (violations(states).length === 0) continue;
      const small = shrink(states);
      assert.fail(`seed ${seed}: ${violations(small).join('; ')}\nshrunk states: ${show(small)}\nplan: ${JSON.stringify(plan(small).map((a) => `${a.kind} ${keyOf(a)}`))}`);
    }
  });

  it('plans nothing when every path agrees on all three sides (a fixed point)', () => {
    for (let seed = 1; seed <= 500; seed++) {
      const settled: States = new Map();
      for (const [p, st] of generate(seed)) {
        if (!st.synced) continue;
        const s = st.synced;
        const remote: RemoteRecord = { path: p, kind: s.kind, deleted: false, seq: 1, version: s.version, hash: s.hash, size: s.size, mtime: s.mtime, exec: s.exec, from: null, manifest: null };
        settled.set(p, { synced: s, remote, local: { path: p, localPath: p, kind: s.kind, size: s.size, mtime: s.mtime, ino: s.ino, exec: s.exec } });
      }
      assert.deepEqual(plan(settled), [], `seed ${seed}`);
    }
  });

  it('lets an edit win over a delete from either side', () => {
    const p = 'f' as RelPath;
    const synced: SyncedRecord = { path: p, kind: 'file', version: 1, hash: hash(1), size: 1, mtime: 1, exec: false, ino: 9, manifest: null };
    const gone: RemoteRecord = { path: p, kind: 'file', deleted: true, seq: 2, version: 0, hash: '', size: 0, mtime: 0, exec: false, from: null, manifest: null };
    const edited: LocalView = { path: p, localPath: p, kind: 'file', size: 2, mtime: 2, ino: 9, exec: false, content: { hash: hash(2), size: 2, chunks: [] } };
    assert.deepEqual(plan(new Map([[p, { synced, remote: gone, local: edited }]])).map((a) => a.kind), ['push-put']);
    const newer: RemoteRecord = { ...gone, deleted: false, version: 3, hash: hash(3) };
    assert.deepEqual(plan(new Map([[p, { synced, remote: newer }]])).map((a) => a.kind), ['download']);
  });

  it('moves a file edited here along with its rename on the server (A5), and pushes a rename of a file edited there', () => {
    const from = 'doc.txt' as RelPath;
    const to = 'renamed.txt' as RelPath;
    const synced: SyncedRecord = { path: from, kind: 'file', version: 1, hash: hash(1), size: 1, mtime: 1, exec: false, ino: 9, manifest: null };
    const edited: LocalView = { path: from, localPath: from, kind: 'file', size: 2, mtime: 2, ino: 9, exec: false, content: { hash: hash(2), size: 2, chunks: [] } };
    const gone: RemoteRecord = { path: from, kind: 'file', deleted: true, seq: 2, version: 0, hash: '', size: 0, mtime: 0, exec: false, from: null, manifest: null };
    const arrived: RemoteRecord = { ...synced, path: to, deleted: false, seq: 2, from, manifest: null };
    const here = plan(new Map<RelPath, PathStates>([[from, { synced, remote: gone, local: edited }], [to, { remote: arrived }]]));
    assert.deepEqual(here.map((a) => [a.kind, 'edited' in a ? a.edited : undefined]), [['rename-local', true]]);
    // Renamed here while edited there: the move goes up (the server moves the edit along).
    const editedThere: RemoteRecord = { ...synced, path: from, deleted: false, seq: 2, version: 2, hash: hash(2), from: null, manifest: null };
    const renamed: LocalView = { path: to, localPath: to, kind: 'file', size: 1, mtime: 1, ino: 9, exec: false };
    assert.deepEqual(plan(new Map<RelPath, PathStates>([[from, { synced, remote: editedThere }], [to, { local: renamed }]])).map((a) => a.kind), ['push-move']);
  });

  it('tells a file moved with its folder from a file moved on its own', () => {
    const rp = (p: string) => p as RelPath;
    assert.deepEqual(movedFolder(rp('old/sub/a.txt'), rp('new/sub/a.txt')), { from: 'old', to: 'new' });
    assert.deepEqual(movedFolder(rp('a/x/f'), rp('b/y/f')), { from: 'a/x', to: 'b/y' });
    assert.deepEqual(movedFolder(rp('old/doc.txt'), rp('deep/new/doc.txt')), { from: 'old', to: 'deep/new' });
    assert.equal(movedFolder(rp('doc.txt'), rp('renamed.txt')), undefined);
    assert.equal(movedFolder(rp('doc.txt'), rp('folder/doc.txt')), undefined);
    assert.equal(movedFolder(rp('a/doc.txt'), rp('a/renamed.txt')), undefined);
  });
});
