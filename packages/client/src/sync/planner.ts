import { isWithin, type ChunkedFile, type Op, type RelPath } from '@keepsync/protocol';
import type { RemoteRecord, SyncedRecord } from '../index/LocalIndex.js';
import type { LocalState } from '../scanner/Scanner.js';

/** A local state with its content hash when the planner needs it. */
export interface LocalView extends LocalState {
  content?: ChunkedFile;
}

/** The three views of one path: on disk now, last agreed, and on the server. */
export interface PathStates {
  local?: LocalView;
  synced?: SyncedRecord;
  remote?: RemoteRecord;
}

export type Action =
  | { kind: 'download'; path: RelPath; remote: RemoteRecord; local?: LocalView; synced?: SyncedRecord }
  | { kind: 'mkdir-local'; path: RelPath; remote: RemoteRecord }
  | { kind: 'delete-local'; path: RelPath; local: LocalView; synced: SyncedRecord }
  /** `edited`: the file changed here too; it moves with its change, which goes up under the new name next cycle. */
  | { kind: 'rename-local'; from: RelPath; to: RelPath; local: LocalView; synced: SyncedRecord; remote: RemoteRecord; edited?: true }
  /** Record the agreed state without touching anything (same content on both sides, or a touch). */
  | { kind: 'adopt'; path: RelPath; local: LocalView; remote?: RemoteRecord; synced?: SyncedRecord }
  /** Forget a synced record: gone on both sides. */
  | { kind: 'forget'; path: RelPath }
  | { kind: 'push-put'; path: RelPath; local: LocalView; synced?: SyncedRecord }
  | { kind: 'push-mkdir'; path: RelPath; local: LocalView }
  | { kind: 'push-delete'; path: RelPath; synced: SyncedRecord }
  | { kind: 'push-move'; from: RelPath; to: RelPath; synced: SyncedRecord; local: LocalView };

/** Same stat as when last synced: size, mtime, inode and mode. */
export function sameStat(l: LocalState, s: SyncedRecord): boolean {
  return l.kind === s.kind && (l.kind === 'dir' || (l.size === s.size && l.mtime === s.mtime && l.ino === s.ino && l.exec === s.exec && sameCtime(l, s)));
}

/** The status change times agree, or one is unknown (an index from before they were kept). */
function sameCtime(l: LocalState, s: SyncedRecord): boolean {
  return !l.ctime || !s.ctime || l.ctime === s.ctime;
}

/** Whether a file's local content must be hashed before planning. */
export function needsHash(st: PathStates): boolean {
  const { local: l, synced: s } = st;
  return l?.kind === 'file' && !l.content && (!s || !sameStat(l, s));
}

/** The local side differs from the synced base. Files must be hashed (see needsHash). */
export function localChanged({ local: l, synced: s }: PathStates): boolean {
  if (!l) return s !== undefined;
  if (!s || l.kind !== s.kind) return true;
  if (l.kind === 'dir' || sameStat(l, s)) return false;
  return l.content ? l.content.hash !== s.hash || l.exec !== s.exec : true;
}

/** The server side differs from the synced base. */
export function remoteChanged({ remote: r, synced: s }: PathStates): boolean {
  if (!s) return r !== undefined && !r.deleted;
  if (!r) return false;
  if (r.deleted || r.kind !== s.kind) return true;
  return r.kind === 'file' && r.version !== s.version;
}

/** A file changed on the server (not deleted, still a file) since the synced base. */
function editedThere({ remote: r, synced: s }: PathStates): boolean {
  return s?.kind === 'file' && r?.kind === 'file' && !r.deleted && r.version !== s.version;
}

function sameContent(l: LocalView, r: RemoteRecord): boolean {
  if (l.kind !== r.kind) return false;
  return l.kind === 'dir' || (l.content?.hash === r.hash && l.exec === r.exec);
}

/**
 * Decides, for every path, what to do so that this device and the server
 * agree, without ever losing a change: a path changed on one side only
 * follows that side; changed on both sides, the device pushes against its
 * base and the server arbitrates (conflict copy, or the edit beats the delete).
 * Pure: the same states always give the same actions.
 */
export function plan(
  states: Map<RelPath, PathStates>,
  opts: {
    skip?: Set<string>;
    /** Whether this file was already given the server's mtime at that change (a file system that cannot hold it exactly). */
    mtimeTried?: (path: RelPath, seq: number) => boolean;
  } = {},
): Action[] {
  const actions: Action[] = [];
  const consumed = new Set<string>();
  const consumedDirs: string[] = [];
  const isConsumed = (p: string) => consumed.has(p) || consumedDirs.some((d) => isWithin(p, d));
  const paths = [...states.keys()].sort();

  // Remote moves: rename locally instead of downloading again.
  for (const to of paths) {
    const st = states.get(to)!;
    const r = st.remote;
    if (!r || r.deleted || !r.from || st.local || st.synced) continue;
    const src = states.get(r.from) ?? {};
    const s = src.synced;
    const l = src.local;
    if (!s || !l || s.kind !== r.kind || (r.kind === 'file' && s.version !== r.version)) continue;
    // A file edited here moves with its edit (SAFETY.md A5): the edit is not left behind at the old name.
    const edited = localChanged(src);
    if ((edited && (l.kind !== 'file' || s.kind !== 'file')) || isConsumed(r.from) || isConsumed(to)) continue;
    actions.push({ kind: 'rename-local', from: r.from, to, local: l, synced: s, remote: r, ...(edited ? { edited: true as const } : {}) });
    consume(r.from, r.kind === 'dir');
    consume(to, r.kind === 'dir');
  }

  // Local moves: the same inode vanished at one path and appeared at another. A
  // file edited on the server meanwhile moves too: the server moves it with its edit.
  const missing = new Map<number, RelPath>();
  for (const p of paths) {
    const st = states.get(p)!;
    if (!st.local && st.synced && (!remoteChanged(st) || editedThere(st)) && !isConsumed(p)) missing.set(st.synced.ino, p);
  }
  for (const to of paths) {
    const st = states.get(to)!;
    const l = st.local;
    if (!l || st.synced || (st.remote && !st.remote.deleted) || isConsumed(to)) continue;
    const from = missing.get(l.ino);
    if (!from || isConsumed(from)) continue;
    const s = states.get(from)!.synced!;
    if (s.kind !== l.kind || (l.kind === 'file' && (s.size !== l.size || s.mtime !== l.mtime))) continue;
    if (l.kind === 'dir' && isWithin(to, from)) continue;
    actions.push({ kind: 'push-move', from, to, synced: s, local: l });
    missing.delete(l.ino);
    consume(from, l.kind === 'dir');
    consume(to, l.kind === 'dir');
  }

  for (const p of paths) {
    if (isConsumed(p) || opts.skip?.has(p)) continue;
    const st = states.get(p)!;
    const { local: l, synced: s, remote: r } = st;
    const lc = localChanged(st);
    const rc = remoteChanged(st);
    if (!lc && !rc) {
      if (l?.kind === 'file' && s?.kind === 'file') touched(p, l, s, r);
      continue;
    }
    if (!lc) {
      applyRemote(p, st);
      continue;
    }
    if (!rc) {
      pushLocal(p, st);
      continue;
    }
    // Changed on both sides.
    if (l && r && !r.deleted && sameContent(l, r)) actions.push({ kind: 'adopt', path: p, local: l, remote: r, synced: s });
    else if (!l && (!r || r.deleted)) actions.push({ kind: 'forget', path: p });
    else if (!l) applyRemote(p, st); // deleted here, changed there: the change wins
    else pushLocal(p, st); // the server arbitrates: conflict copy or edit beats delete
  }

  return collapseDirDeletes(actions, states);

  function consume(p: string, dir: boolean): void {
    consumed.add(p);
    if (dir) consumedDirs.push(p);
  }

  /**
   * The same bytes on both sides, perhaps another mtime (A7: a touch makes no
   * version): touched here, the new mtime goes up; touched on the server (or
   * kept from another device's push), this file takes the server's.
   */
  function touched(p: RelPath, l: LocalView, s: SyncedRecord, r: RemoteRecord | undefined): void {
    const same = r && !r.deleted && r.kind === 'file' && r.version === s.version ? r : undefined;
    const mtime = Math.round(l.mtime);
    if (!sameStat(l, s)) {
      if (same && mtime !== Math.round(s.mtime) && mtime !== Math.round(same.mtime)) actions.push({ kind: 'push-put', path: p, local: l, synced: s });
      else actions.push({ kind: 'adopt', path: p, local: l, synced: s, remote: r });
    } else if (same && mtime !== Math.round(same.mtime) && !opts.mtimeTried?.(p, same.seq)) {
      actions.push({ kind: 'adopt', path: p, local: l, synced: s, remote: same });
    }
  }

  function applyRemote(p: RelPath, { local: l, synced: s, remote: r }: PathStates): void {
    if (r && !r.deleted) {
      if (r.kind === 'file') actions.push({ kind: 'download', path: p, remote: r, local: l, synced: s });
      else if (!l) actions.push({ kind: 'mkdir-local', path: p, remote: r });
      else if (l.kind === 'dir') actions.push({ kind: 'adopt', path: p, local: l, remote: r, synced: s });
      else if (s) actions.push({ kind: 'delete-local', path: p, local: l, synced: s });
      return;
    }
    if (l && s) actions.push({ kind: 'delete-local', path: p, local: l, synced: s });
    else if (s) actions.push({ kind: 'forget', path: p });
  }

  function pushLocal(p: RelPath, { local: l, synced: s }: PathStates): void {
    if (!l) {
      if (s) actions.push({ kind: 'push-delete', path: p, synced: s });
      return;
    }
    if (l.kind === 'file') {
      actions.push({ kind: 'push-put', path: p, local: l, synced: s?.kind === 'file' ? s : undefined });
      return;
    }
    if (s?.kind === 'file') actions.push({ kind: 'push-delete', path: p, synced: s });
    actions.push({ kind: 'push-mkdir', path: p, local: l });
  }
}

/**
 * A folder deleted here goes to the server as one delete (one trash item),
 * unless something inside it changed on the server: then its entries are
 * handled one by one, so the remote change wins.
 */
function collapseDirDeletes(actions: Action[], states: Map<RelPath, PathStates>): Action[] {
  const dirDeletes = actions.filter((a): a is Extract<Action, { kind: 'push-delete' }> => a.kind === 'push-delete' && a.synced.kind === 'dir');
  if (dirDeletes.length === 0) return actions;
  const blocked = new Set<string>();
  for (const d of dirDeletes) {
    for (const [p, st] of states) {
      if (p !== d.path && isWithin(p, d.path) && (remoteChanged(st) || st.local)) blocked.add(d.path);
    }
  }
  const roots = dirDeletes.filter((d) => !blocked.has(d.path) && !dirDeletes.some((o) => o !== d && !blocked.has(o.path) && isWithin(d.path, o.path)));
  return actions.filter((a) => {
    if (a.kind === 'push-delete' && a.synced.kind === 'dir' && blocked.has(a.path)) return false;
    const p = 'path' in a ? a.path : a.to;
    return !roots.some((r) => r !== a && isWithin(p, r.path));
  });
}

/**
 * The op a push of a folder, a move or a delete sends (`seq` is the position
 * the device has seen, which a delete carries). A put is described by the
 * caller, who knows the content.
 */
export function structureOp(a: Action, seq: number): Op | undefined {
  switch (a.kind) {
    case 'push-mkdir':
      return { op: 'mkdir', path: a.path };
    case 'push-move':
      return { op: 'move', from: a.from, to: a.to, kind: a.synced.kind, base: a.synced.kind === 'file' ? a.synced.version : 0 };
    case 'push-delete':
      return { op: 'delete', path: a.path, kind: a.synced.kind, base: a.synced.kind === 'file' ? a.synced.version : 0, seq };
    default:
      return undefined;
  }
}

/**
 * The folders of a move from `from` to `to` that kept the file's own name and
 * the folders below the moved one (`old/sub/a.txt` to `new/sub/a.txt`: `old`
 * to `new`); undefined when the file itself was renamed or moved.
 */
export function movedFolder(from: RelPath, to: RelPath): { from: RelPath; to: RelPath } | undefined {
  const a = from.split('/');
  const b = to.split('/');
  let same = 0;
  while (same < a.length - 1 && same < b.length - 1 && a[a.length - 1 - same] === b[b.length - 1 - same]) same++;
  if (same === 0 || a[a.length - 1] !== b[b.length - 1]) return undefined;
  return { from: a.slice(0, a.length - same).join('/') as RelPath, to: b.slice(0, b.length - same).join('/') as RelPath };
}
