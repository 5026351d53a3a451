import type fs from 'node:fs';
import {
  IGNORE_FILE, KeepsyncError, MAX_OPS_PER_PUSH, applyManifestDelta, crashPoint, diffManifest, errorMessage, isKeepsyncError, isWithin, manifestSize, packManifest, parallel, unpackManifest,
  type ChunkRef, type Entry, type ManifestRef, type Op, type OpResult, type RelPath,
} from '@keepsync/protocol';
import type { LocalIndex, RemoteRecord, SyncedRecord } from '../index/LocalIndex.js';
import type { Expected, LocalFolder } from '../folder/LocalFolder.js';
import type { Scanner, LocalState } from '../scanner/Scanner.js';
import type { Connection } from '../transport/Connection.js';
import { Progress } from '../progress.js';
import { movedFolder, needsHash, plan, sameStat, structureOp, type Action, type LocalView, type PathStates } from './planner.js';
import { PartialDownloads, downloadFiles, type DownloadJob } from './transfers.js';
import { EagerUpload, uploadChunks, type UploadJob } from './uploads.js';
import { linkInTheWay } from '../folder/noFollow.js';

/** Most bytes of ops in one push frame, well under the control frame limit. */
const PUSH_BYTES = 512 * 1024;
/** Files smaller than this are hashed first; larger ones after, their chunks going up while they are read. */
const SMALL_FILE_BYTES = 1024 * 1024;
/** Bytes of small files kept from hashing for the upload that follows, at most, and per file. */
const HELD_BYTES = 16 * 1024 * 1024;
const HELD_FILE_BYTES = 256 * 1024;
/** Files from this size on are uploaded while they are hashed. */
const EAGER_UPLOAD_BYTES = 8 * 1024 * 1024;
/**
 * Pages a pull may read past the sequence the server announced (welcome,
 * then changed): changes other devices commit while this one pages, whose
 * notices have not arrived yet. 50 pages are 100,000 changes.
 */
const PAGES_PAST_ANNOUNCED = 50;
/** Paths written from the server's changes are looked at again after this long (the watcher's own delay, and more). */
const RECHECK_WRITTEN_MS = 1000;
/** Paths a cycle looks at, at once. */
const STAT_PARALLEL = 16;
/** Files whose stat is checked again at once before their puts are pushed. */
const RECHECK_PARALLEL = 16;

export interface EngineOptions {
  log: (line: string) => void;
  progress?: Progress;
  /** Told what a cycle is about to carry out (uploads, downloads), before it starts. */
  onPlan?: (pendingUp: number, pendingDown: number) => void;
  /** Asks for a cycle soon (paths written here are looked at again a little later). */
  wake?: () => void;
  /** Holds back files still being written until they are left alone (live sync; `sync --once` sends what it finds). */
  holdWhileWritten?: boolean;
}

/**
 * A file that changed again within this long of its last change, and grew
 * or is large, is taken to be still being written (a download, a copy from
 * a slow disk, a recording, a disk image in use),
 */
const BUSY_WINDOW_MS = 2_000;
/** and is sent once it has been left alone this long, */
const BUSY_QUIET_MS = 1_000;
/** or, while it keeps changing, this long after it was first held back (and so on). */
const BUSY_MAX_HOLD_MS = 60_000;
/**
 * A file this large is held back also when first seen written within the
 * last BUSY_QUIET_MS (a copy just started): its first look would otherwise
 * send the part written so far. Smaller ones go at once (a saved document).
 */
const BUSY_LARGE_BYTES = 1024 * 1024;

/** What one cycle did. */
export interface CycleResult {
  /** Anything was changed, locally or on the server. */
  worked: boolean;
  pendingUp: number;
  pendingDown: number;
}

/** Set KEEPSYNC_TRACE=1 to log every cycle's planned actions on stderr. */
const TRACE = process.env.KEEPSYNC_TRACE === '1';

/** With tracing on, a function that logs the time since its last call under a phase name. */
function phaseTimer(): (name: string) => void {
  if (!TRACE) return () => {};
  let last = performance.now();
  return (name) => {
    const now = performance.now();
    process.stderr.write(`keepsync trace: ${name} ${(now - last).toFixed(0)} ms\n`);
    last = now;
  };
}

/**
 * The sync engine for one folder: pulls the server's changes into the
 * index, reads the local folder, plans with the pure planner and carries the
 * plan out. Local writes go through LocalFolder's checks; pushes carry their
 * base so the server arbitrates. A cycle can stop anywhere (crash, lost
 * connection) and the next one picks up from what is on disk and in the index.
 */
export class Engine {
  private readonly dirtyLocal = new Set<string>();
  private readonly dirtyRemote = new Set<RelPath>();
  private fullScan = true;
  /** Paths whose last push failed, with the stat that failed, to avoid hot loops. */
  private readonly failing = new Map<string, string>();
  /**
   * Paths whose put named, as the base of its chunk list, a version the
   * server no longer has (removed by retention, or with a purged trash item,
   * while this device was away): sent whole until a put of them goes through.
   */
  private readonly wholeManifests = new Set<string>();
  /** Files given the server's mtime, with the change they took it from (a file system may round it: tried once). */
  private readonly mtimeTried = new Map<string, number>();
  /** Server changes that cannot be written here because a symbolic link holds their place: path → the link. */
  private readonly blocked = new Map<string, { at: string; id: string }>();
  private readonly reportedLinks = new Set<string>();
  private readonly downloaded: SyncedRecord[] = [];
  /** Folders this device removed itself in the last seconds, for wasFolder. */
  private readonly removedFolders = new Map<string, number>();
  private readonly reportedClashes = new Set<string>();
  /** Bytes of small files read while hashing in this pass, per local path, for its uploads. */
  private readonly held = new Map<string, Buffer>();
  private unreadableSeen = false;
  private readonly progress: Progress;
  /** Downloads cut off by a lost connection, resumed on the next cycle. */
  private readonly partials: PartialDownloads;
  /** The last change seen of files changed lately, per local path, to tell one still being written; `heldSince` while it is held back. */
  private readonly lastChanges = new Map<string, { size: number; mtime: number; at: number; heldSince?: number }>();
  /** Held-back files' next look. */
  private readonly holdTimers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly index: LocalIndex,
    private readonly folder: LocalFolder,
    private readonly scanner: Scanner,
    private readonly opts: EngineOptions,
  ) {
    this.progress = opts.progress ?? new Progress(undefined, false);
    this.partials = new PartialDownloads(folder);
  }

  /** Removes what unfinished downloads left in the folder. */
  async close(): Promise<void> {
    for (const t of this.holdTimers.values()) clearTimeout(t);
    this.holdTimers.clear();
    await this.partials.clear();
  }

  /**
   * Temporary files of downloads an earlier run left (it was killed), found
   * before the first cycle (absolute paths): a download of the same content
   * to the same path resumes from the chunks in them that verify; the first
   * cycle that goes through removes the others.
   */
  adoptLeftovers(absTemps: string[]): void {
    this.partials.adoptLeftovers(absTemps);
  }

  /** A local path may have changed (from the watcher). */
  markLocal(localPath: string): void {
    this.dirtyLocal.add(localPath);
  }

  /** True when the path was a synced folder (the watcher renews itself when one goes). */
  wasFolder(localPath: string): boolean {
    const removed = this.removedFolders.get(localPath);
    if (removed !== undefined && Date.now() - removed < 10_000) return true;
    for (const [p, at] of this.removedFolders) if (Date.now() - at >= 10_000) this.removedFolders.delete(p);
    return this.index.synced(localPath)?.kind === 'dir';
  }

  /** Rescan everything on the next cycle. */
  markFullScan(): void {
    this.fullScan = true;
  }

  /** The next cycle rescans everything. */
  get fullScanDue(): boolean {
    return this.fullScan;
  }

  /** The last cycles left out something that could not be read; a full scan later retries it. */
  get hasUnreadable(): boolean {
    return this.unreadableSeen;
  }

  get hasLocalWork(): boolean {
    return this.fullScan || this.dirtyLocal.size > 0;
  }

  /** Reconciles a new connection's folder epoch with the index (B5/B6). */
  adoptEpoch(epoch: string, serverSeq: number): void {
    const known = this.index.epoch;
    if (known === epoch && serverSeq >= this.index.seq) return;
    if (known !== '') {
      this.opts.log(
        known !== epoch
          ? 'the server\'s folder history is new (restored from a backup or rebuilt); merging: local files are kept and uploaded where they differ'
          : 'the server is behind this device (restored from a backup?); merging: local files are kept and uploaded where they differ',
      );
    }
    this.index.resetForMerge(epoch);
    this.fullScan = true;
  }

  /**
   * The same epoch and a server not behind do not prove the same history: a
   * backup put back and then moved on by other devices reuses sequence
   * numbers (B6). The last change this device pulled must still be in the
   * feed, unchanged or overtaken by a later change of the same path, and no
   * change this device never saw may sit at or below its sequence;
   * otherwise the device merges from scratch.
   */
  async checkHistory(conn: Connection): Promise<void> {
    const head = this.index.head;
    const known = this.index.seq;
    if (!head || known === 0 || head.seq > known) return;
    const page = await conn.request({ type: 'list', id: conn.id(), since: head.seq - 1 }, 'changes');
    let found = false;
    let diverged = false;
    for (const e of page.entries) {
      if (e.path === head.path) found = true;
      if (e.seq === head.seq) diverged ||= e.path !== head.path || e.hash !== head.hash || e.deleted !== head.deleted;
      else if (e.seq <= known) diverged = true;
    }
    if (!diverged && (found || page.more)) return;
    this.opts.log('the server\'s folder history differs from what this device last saw (restored from a backup?); merging: local files are kept and uploaded where they differ');
    this.index.resetForMerge(this.index.epoch);
    this.fullScan = true;
  }

  /**
   * Pulls every change after the index's sequence into the remote table.
   * Every page that says more must move the sequence on, and a pull pages
   * not much further than the server announced: a server paging forever
   * would hold a sync forever (F3).
   */
  async pull(conn: Connection): Promise<number> {
    let pulled = 0;
    let pagesPast = 0;
    for (;;) {
      const since = this.index.seq;
      const page = await conn.request({ type: 'list', id: conn.id(), since }, 'changes');
      if (page.more) {
        const top = page.entries.reduce((m, e) => Math.max(m, e.seq), 0);
        const invalid = (why: string) => new KeepsyncError('FRAME_INVALID', `the server sent an invalid answer: ${why}; is it a Keepsync server of the same version?`);
        if (page.entries.length === 0 || top <= since || page.seq <= since) throw invalid(`it keeps paging its changes without moving past sequence ${since}`);
        if (page.seq > conn.announcedSeq && ++pagesPast > PAGES_PAST_ANNOUNCED) throw invalid(`it keeps paging its changes past sequence ${page.seq}, beyond the ${conn.announcedSeq} it announced`);
      }
      this.index.tx(() => {
        const known = this.index.remoteOf(page.entries.map((e) => e.path));
        for (const e of page.entries) this.recordRemote(e, known);
        const last = page.entries.reduce<Entry | undefined>((m, e) => (!m || e.seq > m.seq ? e : m), undefined);
        if (last && last.seq > (this.index.head?.seq ?? 0)) this.index.setHead({ seq: last.seq, path: last.path, hash: last.hash, deleted: last.deleted });
        this.index.setMeta('seq', String(Math.max(this.index.seq, page.seq)));
      });
      pulled += page.entries.length;
      if (!page.more) return pulled;
    }
  }

  /** Records a change of the server's feed unless a later one of its path is known (`known`: the index's records, kept up to date). */
  private recordRemote(e: Entry, known: Map<string, RemoteRecord>): void {
    const old = known.get(e.path);
    if (old && old.seq > e.seq) return;
    const record: RemoteRecord = {
      path: e.path, kind: e.kind, deleted: e.deleted, seq: e.seq, version: e.version, hash: e.hash, size: e.size,
      mtime: e.mtime, exec: e.exec, from: e.from ?? null, manifest: e.manifest ?? null,
    };
    this.index.putRemote(record);
    known.set(e.path, record);
    this.dirtyRemote.add(e.path);
    if (e.from) this.dirtyRemote.add(e.from);
  }

  /** Gathers the three states of every path that may need work. */
  private async gather(): Promise<Map<RelPath, PathStates>> {
    const states = new Map<RelPath, PathStates>();
    const get = (p: RelPath) => {
      let st = states.get(p);
      if (!st) states.set(p, (st = {}));
      return st;
    };
    const addLocal = (l: LocalState) => {
      get(l.path).local = l;
    };
    // Rules changed: what they cover now, or no longer, may lie anywhere in the folder.
    if (this.dirtyLocal.has(IGNORE_FILE)) this.fullScan = true;
    if (this.fullScan) {
      this.fullScan = false;
      this.dirtyLocal.clear();
      this.scanner.loadIgnores();
      const { states: all, unreadable, vanished } = await this.scanner.walk();
      this.guardRoot(all.size);
      this.unreadableSeen = unreadable.length > 0;
      // Listed, then gone: looked at on their own next cycle (a folder moved away shows as gone then).
      for (const v of vanished) this.dirtyLocal.add(v);
      if (TRACE) process.stderr.write(`keepsync trace: full scan, ${all.size} local, unreadable ${unreadable.join(' ')}\n`);
      // No download runs while a cycle gathers: a temporary file now is a leftover
      // (a download cut off in a folder that was moved meanwhile).
      // A kept partial download (cut off by a lost connection) is resumed instead.
      for (const t of this.scanner.temps.splice(0)) if (!this.partials.holds(this.folder.abs(t))) await this.folder.removeTemp(t);
      for (const l of all.values()) addLocal(l);
      // What lies in a folder that cannot be listed is unknown, not deleted: left out of this cycle.
      // So is what was listed but gone a moment later: the next cycle looks at it again.
      const hidden = (p: string) => unreadable.some((u) => u === '' || (p !== u && isWithin(p, u))) || vanished.some((v) => isWithin(p, v.normalize('NFC')));
      for (const s of this.index.allSynced()) if (!hidden(s.path)) get(s.path).synced = s;
      for (const r of this.index.allRemote()) if (!hidden(r.path)) get(r.path).remote = r;
      this.dirtyRemote.clear();
      this.dropIgnored(states);
    } else {
      // A path under another dirty one is not looked at on its own: a folder is walked whole,
      // and what a vanished or replaced folder held joins the cycle through the index. It
      // still joins the cycle (below), for what the server has there.
      const dirty: string[] = [];
      const covered: string[] = [];
      for (const p of this.dirtyLocal) (hasAncestorIn(this.dirtyLocal, p) ? covered : dirty).push(p);
      this.dirtyLocal.clear();
      let vanished = false;
      // Paths that could not be looked at (permissions): they and what lies under them sit this cycle out.
      const unknown: string[] = [];
      const stat = async (p: string) => {
        try {
          return await this.scanner.stat(p);
        } catch {
          unknown.push(p.normalize('NFC'));
          return undefined;
        }
      };
      // Looked at several at a time; what they are is then taken in order.
      this.scanner.forgetLinks();
      const seen = new Map<string, Promise<LocalState | undefined>>();
      await parallel(dirty, STAT_PARALLEL, async (p) => {
        const l = stat(p);
        seen.set(p, l);
        await l;
      });
      for (const p of dirty) {
        const l = await seen.get(p)!;
        const wire = l?.path;
        if (l) addLocal(l);
        if (l?.kind === 'dir') {
          const { states: under, unreadable, vanished: gone } = await this.scanner.walk(l.localPath);
          for (const u of under.values()) addLocal(u);
          for (const u of unreadable) for (const s of [...this.index.syncedUnder(u.normalize('NFC')), ...this.index.remoteUnder(u.normalize('NFC'))]) unknown.push(s.path);
          unknown.push(...gone.map((v) => v.normalize('NFC')));
          for (const v of gone) this.dirtyLocal.add(v);
        }
        const key = wire ?? (p.normalize('NFC') as RelPath);
        get(key);
        for (const s of this.index.syncedUnder(key)) get(s.path);
        if (!l) {
          vanished = true;
          await this.gatherVanishedAncestors(key, get);
        }
      }
      for (const p of covered) get(p.normalize('NFC') as RelPath);
      for (const p of this.dirtyRemote) get(p);
      this.dirtyRemote.clear();
      const paths = [...states.keys()];
      const synced = this.index.syncedOf(paths);
      const remote = this.index.remoteOf(paths);
      for (const [p, st] of states) {
        st.synced = synced.get(p);
        st.remote = remote.get(p);
        if (!st.local && st.synced) {
          // Not seen by a walk above: stat it (a parent may hold it under another name).
          const l = await stat(p);
          if (l) st.local = l;
        }
      }
      for (const st of states.values()) {
        if (!st.local && st.remote && !st.remote.deleted) {
          const l = await stat(st.remote.path);
          if (l) st.local = l;
        }
      }
      for (const p of states.keys()) if (unknown.some((u) => isWithin(p, u))) states.delete(p);
      this.dropIgnored(states);
      if (unknown.length > 0) this.unreadableSeen = true;
      // Deletions seen live count as a mass delete when they leave the root empty (an emptied disk),
      // however they were found (the watcher, or a path the server's changes named).
      if (!vanished) for (const st of states.values()) vanished ||= st.synced !== undefined && st.local === undefined;
      this.guardRoot(vanished ? this.folder.rootEntryCount() : undefined);
    }
    return states;
  }

  /**
   * Paths the ignore rules cover sit the sync out, as unreadable ones do: the
   * scanner does not see them, which is not a delete. A rule added for files
   * that were synced leaves them on the server and on every other device
   * (and here); their records stay, so that when the rule goes they are
   * compared as before and only real changes travel.
   */
  private dropIgnored(states: Map<RelPath, PathStates>): void {
    for (const [p, st] of states) {
      if (st.local) continue;
      const kind = st.synced?.kind ?? st.remote?.kind;
      if (kind && this.scanner.isIgnored(p, kind === 'dir')) states.delete(p);
    }
  }

  /**
   * A file reported gone may have gone with its folder, and watchers do not
   * always report the folder itself: synced folders above it that are gone
   * too join this cycle, so the folder's delete goes out as one.
   */
  private async gatherVanishedAncestors(p: RelPath, get: (p: RelPath) => PathStates): Promise<void> {
    for (let slash = p.lastIndexOf('/'); slash > 0; slash = p.lastIndexOf('/', slash - 1)) {
      const dir = p.slice(0, slash) as RelPath;
      if (this.index.synced(dir)?.kind !== 'dir' || (await this.scanner.stat(dir).catch(() => 'unknown'))) return;
      get(dir);
      for (const s of this.index.syncedUnder(dir)) get(s.path);
    }
  }

  /** A vanished or suddenly empty folder root stops the sync (never a mass delete). */
  private guardRoot(localCount: number | undefined): void {
    const synced = this.index.syncedCount();
    const root = this.folder.rootId();
    const known = this.index.getMeta('root');
    // A different folder at the same place (an unmounted disk's mount point, a
    // replaced folder) or one emptied of many synced entries at once.
    const replaced = root !== undefined && known !== undefined && known !== root && synced > 0;
    if (root === undefined || replaced || (localCount === 0 && synced >= 3)) {
      throw new KeepsyncError(
        'FOLDER_ROOT_MISSING',
        `folder ${this.folder.root} is empty or missing; not propagating deletions. Reconnect the disk or run "keepsync unpair"`,
      );
    }
    if (known !== root) this.index.setMeta('root', root);
  }

  /** Tells once about each local name skipped because another name maps to the same wire path. */
  private reportClashes(): void {
    for (const c of this.scanner.clashes.splice(0)) {
      if (this.reportedClashes.has(c)) continue;
      this.reportedClashes.add(c);
      this.opts.log(`${c} is not synced: its name and another in the same folder differ only in Unicode normalization; rename one of them`);
    }
    for (const [p, why] of this.scanner.unsyncable) {
      if (this.reportedClashes.has(p)) continue;
      this.reportedClashes.add(p);
      // Shown on one line whatever the name holds.
      const shown = /[\u0000-\u001f\u007f]/.test(p) ? JSON.stringify(p) : p;
      this.opts.log(`${shown} is not synced: the server does not take it (${why}); rename it`);
    }
    this.scanner.unsyncable.clear();
  }

  /**
   * Hashes the files whose content the planner must know, one by one (the
   * folder's reads are direct calls, which do not overlap), small files
   * first. The bytes of small files are kept for this pass's uploads, within
   * a budget; a large file's chunks go up while it is read.
   */
  private async hashWhereNeeded(states: Map<RelPath, PathStates>, conn: Connection): Promise<void> {
    const now = Date.now();
    // Forgotten once they cannot matter any more (a held-back file deleted meanwhile, too).
    for (const [p, c] of this.lastChanges) if (now - c.at > (c.heldSince === undefined ? BUSY_WINDOW_MS : BUSY_MAX_HOLD_MS)) this.lastChanges.delete(p);
    const todo = [...states].filter(([p, st]) => {
      if (!needsHash(st)) return false;
      if (!this.stillWritten(st.local!, now)) return true;
      states.delete(p);
      return false;
    });
    let kept = 0;
    const hashOne = async ([p, st]: [RelPath, PathStates], eager?: EagerUpload) => {
      const l = st.local as LocalView;
      try {
        // The version this file was synced at keeps its chunk size class (see chunkParamsFor).
        const { data, ...content } = await this.scanner.hash(l, {
          keepUpTo: kept < HELD_BYTES ? HELD_FILE_BYTES : 0,
          onChunk: eager?.add,
          previous: st.synced?.manifest ?? undefined,
        });
        l.content = content;
        if (data && kept < HELD_BYTES) {
          this.held.set(l.localPath, data);
          kept += data.byteLength;
        }
      } catch (err) {
        if (isKeepsyncError(err) && err.code === 'CONFLICT') {
          // Replaced since the scan (a save through a new file, a link swapped in): looked at again next cycle.
          states.delete(p);
          this.markLocal(l.localPath);
          return;
        }
        // Unreadable (permissions, vanished): never treat it as deleted; leave it alone this cycle.
        this.opts.log(`cannot read ${p}: ${errorMessage(err)}; it is skipped until it can be read`);
        states.delete(p);
        this.unreadableSeen = true;
      }
    };
    const small = todo.filter(([, st]) => st.local!.size < SMALL_FILE_BYTES);
    for (const item of small) await hashOne(item);
    // A large file's chunks go to the server while it is read, instead of after.
    const large = todo.filter(([, st]) => st.local!.size >= SMALL_FILE_BYTES);
    const eagerFiles = large.filter(([, st]) => st.local!.size >= EAGER_UPLOAD_BYTES).length;
    if (eagerFiles > 0) this.progress.begin(eagerFiles, 0);
    try {
      for (const item of large) {
        const [, st] = item;
        const known = st.synced?.manifest ? new Set(unpackManifest(st.synced.manifest).map((c) => c.hash)) : undefined;
        const eager = st.local!.size >= EAGER_UPLOAD_BYTES ? new EagerUpload(conn, this.folder, st.local!.localPath, st.local!.ino, this.progress, known) : undefined;
        await hashOne(item, eager);
        await eager?.finish();
        if (eager) this.progress.fileUp();
      }
    } finally {
      if (eagerFiles > 0) this.progress.end();
    }
  }

  /**
   * True when a changed file is still being written: it changed again
   * within BUSY_WINDOW_MS of its last change and grew or is large, or it is
   * large and was written just now, or it is held back already and changed
   * since or has not been left alone for BUSY_QUIET_MS yet. It sits this
   * cycle out and is looked at again once it may have been left alone long
   * enough. Without this every look at it is a new version: a 4 GiB video
   * copied in from a card at 30 MB/s would be hashed again and sent, up and
   * down to every device, a few hundred times. A small file saved goes at
   * once (edit latency), and so does a second save that does not grow it.
   */
  private stillWritten(l: LocalView, now: number): boolean {
    if (!this.opts.holdWhileWritten) return false;
    const prev = this.lastChanges.get(l.localPath);
    const same = prev !== undefined && prev.size === l.size && prev.mtime === l.mtime;
    let hold: boolean;
    if (prev?.heldSince !== undefined) hold = same ? now - prev.at < BUSY_QUIET_MS : now - prev.heldSince < BUSY_MAX_HOLD_MS;
    else if (same) hold = false; // looked at again unchanged (its push is retried)
    else if (prev !== undefined && now - prev.at < BUSY_WINDOW_MS) hold = l.size > prev.size || l.size >= BUSY_LARGE_BYTES;
    else hold = l.size >= BUSY_LARGE_BYTES && now - l.mtime < BUSY_QUIET_MS;
    const at = same ? prev.at : now;
    this.lastChanges.set(l.localPath, { size: l.size, mtime: l.mtime, at, heldSince: hold ? (prev?.heldSince ?? now) : undefined });
    if (hold) {
      const wait = at + BUSY_QUIET_MS - now;
      this.lookAgainAt(l.localPath, wait);
      if (TRACE) process.stderr.write(`keepsync trace: still being written, looked at again in ${wait} ms: ${l.localPath}\n`);
    }
    return hold;
  }

  /** Looks at a held-back file again in `ms`. */
  private lookAgainAt(localPath: string, ms: number): void {
    clearTimeout(this.holdTimers.get(localPath));
    const timer = setTimeout(() => {
      this.holdTimers.delete(localPath);
      this.markLocal(localPath);
      this.opts.wake?.();
    }, Math.max(ms, 0) + 10);
    timer.unref();
    this.holdTimers.set(localPath, timer);
  }

  /** Records the status change time of files synced before it was kept, as the scan found them unchanged. */
  private learnCtimes(states: Map<RelPath, PathStates>): void {
    const learned: Array<{ path: RelPath; ctime: number }> = [];
    for (const { local: l, synced: s } of states.values()) {
      if (l?.kind === 'file' && s?.kind === 'file' && !s.ctime && l.ctime && sameStat(l, s)) learned.push({ path: s.path, ctime: l.ctime });
    }
    if (learned.length > 0) this.index.tx(() => learned.forEach((c) => this.index.setSyncedCtime(c.path, c.ctime)));
  }

  /**
   * One pass: pull, scan, plan, act. A pass cut short (a lost connection, a
   * server restart) leaves work it had taken off the dirty sets undone: the
   * next pass rescans everything.
   */
  async cycle(conn: Connection): Promise<CycleResult> {
    this.folder.forgetDirs();
    try {
      const result = await this.pass(conn);
      // A whole pass planned every download there is: an earlier run's temporary file none of them took is not wanted.
      await this.partials.dropLeftovers();
      return result;
    } catch (err) {
      this.fullScan = true;
      throw err;
    } finally {
      this.held.clear();
    }
  }

  private async pass(conn: Connection): Promise<CycleResult> {
    const phase = phaseTimer();
    await this.pull(conn);
    phase('pull');
    const states = await this.gather();
    phase('scan');
    this.reportClashes();
    await this.hashWhereNeeded(states, conn);
    phase('hash');
    this.learnCtimes(states);
    const skip = new Set<string>();
    for (const p of states.keys()) {
      const b = this.blocked.get(p);
      if (!b) continue;
      const now = await linkInTheWay(this.folder.root, b.at);
      if (now?.at === b.at && now.id === b.id) skip.add(p);
      else this.blocked.delete(p);
    }
    for (const [p, st] of states) {
      const f = this.failing.get(p);
      if (f !== undefined && f === statKey(st.local)) skip.add(p);
      else this.failing.delete(p);
    }
    const actions = plan(states, { skip, mtimeTried: (p, seq) => this.mtimeTried.get(p) === seq });
    if (TRACE) process.stderr.write(`keepsync trace: ${actions.map((a) => `${a.kind} ${keyOf(a)}`).join(', ') || 'nothing to do'}\n`);
    if (actions.length === 0) return { worked: false, pendingUp: 0, pendingDown: 0 };
    // A folder delete held back this cycle (something inside changed) is looked at again next cycle.
    const touched = new Set(actions.map(keyOf));
    for (const [p, st] of states) {
      if (!st.local && st.synced?.kind === 'dir' && !touched.has(p) && !skip.has(p)) this.markLocal(p);
    }
    // A folder move takes everything under both names off this plan; what else
    // changed in there (a file edited or moved in while offline) is seen on a rescan.
    if (actions.some((a) => (a.kind === 'push-move' || a.kind === 'rename-local') && a.local.kind === 'dir')) this.fullScan = true;
    const ups = actions.filter((a) => a.kind.startsWith('push-'));
    const downs = actions.filter((a) => !a.kind.startsWith('push-'));
    this.opts.onPlan?.(ups.length, downs.length);
    const large = actions.length > 200 || actions.some((a) => a.kind === 'download' && a.remote.size > 64 * 1024 * 1024);
    if (large) this.progress.begin(ups.length, downs.length);
    try {
      // A download that cannot be written here (a full disk) does not hold back this device's own changes.
      const failed = await this.applyRemote(downs, conn).then(() => undefined, (err: unknown) => {
        if (isKeepsyncError(err) && err.code === 'LOCAL_WRITE_FAILED') return err;
        throw err;
      });
      // What was just written here is looked at again, next cycle and a little later: a
      // change made right after it (a file deleted as soon as it arrived) may reach the
      // watcher merged with the write, as no change at all.
      const written = downs.flatMap((a) => [keyOf(a), ...(a.kind === 'rename-local' ? [a.from] : []), ...('local' in a && a.local ? [a.local.localPath] : [])]);
      for (const p of written) this.markLocal(p);
      if (written.length > 0) {
        setTimeout(() => {
          for (const p of written) this.markLocal(p);
          this.opts.wake?.();
        }, RECHECK_WRITTEN_MS).unref();
      }
      phase('apply');
      await this.pushLocal(ups, conn);
      phase('push');
      if (failed) throw failed;
    } catch (err) {
      // Cut off (a lost connection): every path of this plan is looked at again next cycle.
      for (const a of actions) {
        this.dirtyRemote.add(keyOf(a) as RelPath);
        if (a.kind === 'push-move' || a.kind === 'rename-local') this.dirtyRemote.add(a.from);
      }
      throw err;
    } finally {
      if (large) this.progress.end();
    }
    return { worked: true, pendingUp: ups.length, pendingDown: downs.length };
  }

  // ---- applying the server's changes here ----

  private async applyRemote(actions: Action[], conn: Connection): Promise<void> {
    const downloads: DownloadJob[] = [];
    const deletes: Array<Extract<Action, { kind: 'delete-local' }>> = [];
    for (const a of actions) {
      switch (a.kind) {
        case 'rename-local': {
          const st = await this.folder.rename(a.local.localPath, a.to, expectOf(a.local));
          if (st) {
            crashPoint('client:after-move');
            this.index.tx(() => {
              this.followMove(a.from, a.to);
              // An edited file keeps its old base, so its change goes up under the new name next cycle.
              const moved = this.index.synced(a.to);
              if (moved?.kind === 'file' && !a.edited) this.index.putSynced({ ...moved, ctime: st.ctimeMs });
            });
          }
          else this.markLocal(a.local.localPath);
          break;
        }
        case 'mkdir-local': {
          const st = await this.folder.mkdir(a.path).catch(async (err) => (await this.noteBlocked(a.path)) ? undefined : this.report(a.path, err));
          if (st) this.index.putSynced(syncedFromRemote(a.remote, st.ino, 0));
          break;
        }
        case 'adopt': {
          const r = a.remote && !a.remote.deleted ? a.remote : undefined;
          const s = a.synced;
          let l = a.local;
          // The same bytes on both sides (A7: arrived from both, or touched elsewhere): the server's mtime
          // stands. Not for a file changed here in its stat alone: that is recorded first.
          if (r?.kind === 'file' && l.kind === 'file' && Math.round(l.mtime) !== Math.round(r.mtime) && (s?.version !== r.version || (s && sameStat(l, s)))) {
            this.mtimeTried.set(a.path, r.seq);
            const st = await this.adoptMtime(l.localPath, r.mtime, expectOf(l), r.hash);
            if (st) l = { ...l, mtime: st.mtimeMs, ctime: st.ctimeMs };
          }
          // The chunk list kept must be that of the version recorded (later deltas are made against it):
          // the server's when it sent one, the one last synced only when it is the same version, else none.
          if (r) this.index.putSynced({ ...syncedFromRemote(r, l.ino, l.mtime), size: l.size, ctime: l.ctime, manifest: r.manifest ?? (s?.version === r.version ? s.manifest : null) });
          else if (s) this.index.putSynced({ ...s, size: l.size, mtime: l.mtime, ino: l.ino, exec: l.exec, ctime: l.ctime });
          break;
        }
        case 'forget':
          this.index.deleteSynced(a.path);
          break;
        case 'delete-local':
          deletes.push(a);
          break;
        case 'download':
          downloads.push(await this.downloadJob(a, conn));
          break;
        default:
          break;
      }
    }
    if (downloads.length > 0) {
      const failed: DownloadJob[] = [];
      for (const d of downloads) {
        const onDone = d.onDone;
        d.onDone = (res) => {
          if (!res) failed.push(d);
          onDone(res);
        };
      }
      try {
        await downloadFiles(downloads, conn, this.index, this.folder, this.progress, this.partials);
      } finally {
        this.flushDownloaded();
      }
      for (const d of failed) await this.noteBlocked(d.localPath);
    }
    // Deepest first, so folders are empty when their turn comes.
    deletes.sort((x, y) => (x.path < y.path ? 1 : x.path > y.path ? -1 : 0));
    for (const a of deletes) {
      const done = a.local.kind === 'dir' ? await this.folder.removeDir(a.local.localPath) : await this.folder.removeFile(a.local.localPath, expectOf(a.local));
      if (done && a.local.kind === 'dir') this.removedFolders.set(a.local.localPath, Date.now());
      if (done || a.local.kind === 'dir') this.index.deleteSynced(a.path);
      // Not removed (changed meanwhile, or a folder that still holds something): looked at again.
      if (!done) this.markLocal(a.local.localPath);
    }
  }

  /**
   * Records downloaded files in the index a few hundred per transaction. A
   * crash before the flush leaves files on disk that the index does not know
   * yet; the next cycle finds them equal to the server's and adopts them.
   */
  private recordDownloaded(s: SyncedRecord): void {
    this.downloaded.push(s);
    if (this.downloaded.length >= 256) this.flushDownloaded();
  }

  private flushDownloaded(): void {
    const batch = this.downloaded.splice(0);
    if (batch.length > 0) this.index.tx(() => batch.forEach((s) => this.index.putSynced(s)));
  }

  /**
   * Records a remote move carried out here. The server moved everything it had
   * under the folder; what this device had there and the server did not (a
   * change it had not applied yet) has no entry at the new place, so it gets a
   * tombstone there. Everything under the new place is looked at next cycle.
   */
  private followMove(from: RelPath, to: RelPath): void {
    this.index.rebaseSynced(from, to);
    for (const s of this.index.syncedUnder(to)) {
      if (!this.index.remote(s.path)) {
        this.index.putRemote({ path: s.path, kind: s.kind, deleted: true, seq: 0, version: 0, hash: '', size: 0, mtime: 0, exec: false, from: null, manifest: null });
      }
      this.dirtyRemote.add(s.path);
    }
    for (const r of this.index.remoteUnder(to)) this.dirtyRemote.add(r.path);
  }

  private async downloadJob(a: Extract<Action, { kind: 'download' }>, conn: Connection): Promise<DownloadJob> {
    const r = a.remote;
    let manifest = r.manifest;
    if (!manifest) {
      const base = a.synced?.kind === 'file' && a.synced.manifest ? a.synced : undefined;
      const answer = await conn.request({ type: 'get-manifest', id: conn.id(), version: r.version, base: base?.version ?? 0 }, 'manifest');
      try {
        manifest = resolveManifest(answer.manifest, base);
      } catch (err) {
        if (!base) throw err;
        // The chunk list kept for the base is not the server's (an index written by an
        // earlier release, say): ask for the whole list rather than fail every cycle.
        const whole = await conn.request({ type: 'get-manifest', id: conn.id(), version: r.version, base: 0 }, 'manifest');
        manifest = resolveManifest(whole.manifest, undefined);
      }
      if (manifestSize(manifest) !== r.size) throw new KeepsyncError('FRAME_INVALID', `the server sent a chunk list for ${r.path} that does not add up to its size`);
    }
    const localPath = a.local?.localPath ?? a.path;
    const expect = a.local ? expectOf(a.local) : { absent: true };
    const full = manifest;
    return {
      path: a.path, localPath, manifest: full, hash: r.hash, mtime: r.mtime, exec: r.exec, expect,
      onDone: (res) => {
        if (res) {
          this.recordDownloaded({ ...syncedFromRemote(r, res.ino, res.mtime), manifest: full, ctime: res.ctime });
          this.progress.fileDown();
        } else {
          this.markLocal(localPath);
        }
      },
    };
  }

  // ---- pushing this device's changes ----

  private async pushLocal(actions: Action[], conn: Connection): Promise<void> {
    if (actions.length === 0) return;
    const phase = phaseTimer();
    const order = (a: Action) => (a.kind === 'push-mkdir' ? 0 : a.kind === 'push-move' ? 1 : a.kind === 'push-put' ? 2 : 3);
    const sorted = [...actions].sort((x, y) => order(x) - order(y) || keyOf(x).localeCompare(keyOf(y)));
    const puts = sorted.filter((a): a is Extract<Action, { kind: 'push-put' }> => a.kind === 'push-put');
    const pusher = new Pusher(conn, this.progress, this.wholeManifests, (sent, results) => this.recorded(sent, results));
    // Folders and moves first, then the files in waves: each wave's content goes
    // up, then its puts, so other devices fetch the first files of a large first
    // sync while the rest still go up. Deletes last.
    await pusher.pushAll(sorted.filter((a) => order(a) < 2).map((a) => ({ a, op: this.opOf(a) })));
    let refused: KeepsyncError | undefined;
    // A wave's puts go while the next wave's content goes up: the server takes chunks during a push.
    let pushing: Promise<void> = Promise.resolve();
    try {
      for (const wave of waves(puts)) {
        if (refused) {
          // The server could not store content: the files wait here, unchanged, for a later try.
          for (const a of wave) this.markLocal(a.local.localPath);
          continue;
        }
        const ops = new Map<Action, Op>(wave.map((a) => [a, this.opOf(a)]));
        const jobs = new Map<Action, UploadJob>(wave.map((a) => [a, { localPath: a.local.localPath, ino: a.local.ino, chunks: chunksToOffer(a, ops.get(a)!), data: this.held.get(a.local.localPath) }]));
        const done = await uploadChunks([...jobs.values()], conn, this.folder, this.progress);
        refused = done.refused;
        phase('upload chunks');
        // A put whose chunks did not all arrive, or whose file changed since it was read, waits for the next cycle.
        const changed = new Set<Action>();
        await parallel(wave, RECHECK_PARALLEL, async (a) => {
          if (!(await this.folder.matches(a.local.localPath, expectOf(a.local)))) changed.add(a);
        });
        const ready = wave.filter((a) => {
          if (done.uploaded.has(jobs.get(a)!) && !changed.has(a)) return true;
          this.markLocal(a.local.localPath);
          return false;
        });
        for (const a of wave) this.held.delete(a.local.localPath);
        phase('recheck');
        await pushing;
        pushing = pusher.pushAll(ready.map((a) => ({ a, op: ops.get(a)! })));
        // Settled when awaited (next wave or below); a failure is not unhandled meanwhile.
        pushing.catch(() => {});
      }
    } finally {
      // A push still out is answered and recorded before the cycle goes on, whatever stopped the waves.
      await pushing.catch(() => {});
    }
    await pushing;
    await pusher.pushAll(sorted.filter((a) => order(a) > 2).map((a) => ({ a, op: this.opOf(a) })));
    if (pusher.held > 0) {
      this.opts.log(`the server holds ${pusher.held} ${pusher.held === 1 ? 'delete' : 'deletes'} from this device as a mass delete: other devices keep those files until the admin applies or undoes it on the admin page's Trash tab`);
    }
    if (refused) throw refused;
  }

  /** Records what the server did with a push, then does what follows here. */
  private async recorded(sent: ReadonlyArray<{ a: Action; op: Op }>, results: readonly OpResult[]): Promise<void> {
    this.index.tx(() => sent.forEach((b, i) => this.recordResult(b.a, results[i])));
    for (const [i, b] of sent.entries()) await this.afterResult(b.a, results[i]);
  }

  private opOf(a: Action): Op {
    switch (a.kind) {
      case 'push-put': {
        const c = a.local.content!;
        const full = packManifest(c.chunks);
        let manifest: ManifestRef = { full };
        if (a.synced?.manifest && a.synced.version > 0 && !this.wholeManifests.has(a.path)) {
          const delta = diffManifest(a.synced.version, a.synced.manifest, full);
          if (delta.middle.byteLength + 64 < full.byteLength) manifest = { delta };
        }
        return { op: 'put', path: a.path, base: a.synced?.version ?? 0, size: c.size, hash: c.hash, mtime: Math.round(a.local.mtime), exec: a.local.exec, manifest };
      }
      default: {
        const op = structureOp(a, this.index.seq);
        if (!op) throw new Error(`bug: ${a.kind} is not a push`);
        return op;
      }
    }
  }

  /** Records what the server did with one op (inside an index transaction). */
  private recordResult(a: Action, r: OpResult): void {
    const remote = (path: RelPath, fields: Partial<RemoteRecord>) =>
      this.index.putRemote({ path, kind: 'file', deleted: false, seq: 0, version: 0, hash: '', size: 0, mtime: 0, exec: false, from: null, manifest: null, ...fields });
    if (r.status === 'stale') {
      const p = a.kind === 'push-move' ? a.from : 'path' in a ? a.path : undefined;
      if (p) {
        this.index.deleteSynced(p);
        for (const s of this.index.syncedUnder(p)) this.index.deleteSynced(s.path);
      }
      // A move the server refused (the file changed or went there) leaves the file under its
      // new name known to no one: looked at again next cycle, it goes up as a new file.
      if (a.kind === 'push-move') this.markLocal(a.local.localPath);
      return;
    }
    if (r.status === 'error') {
      const l = 'local' in a ? a.local : undefined;
      const p = keyOf(a);
      if ((r.code === 'VERSION_UNKNOWN' || r.code === 'FRAME_INVALID') && a.kind === 'push-put' && a.synced?.manifest && !this.wholeManifests.has(p)) {
        // Its base went between the check and the change, or the chunk list kept for it
        // is not the server's: sent whole next cycle.
        this.wholeManifests.add(p);
        this.markLocal(a.local.localPath);
        return;
      }
      this.failing.set(p, statKey(l));
      this.opts.log(`the server refused a change to ${p}: ${r.message}`);
      return;
    }
    switch (a.kind) {
      case 'push-mkdir':
        if (r.status === 'ok') {
          this.index.putSynced(dirRecord(a.path, a.local.ino));
          remote(a.path, { kind: 'dir', seq: r.seq });
        }
        break;
      case 'push-delete':
        this.index.deleteSynced(a.path);
        for (const s of this.index.syncedUnder(a.path)) this.index.deleteSynced(s.path);
        // What was under a deleted folder is gone too, as far as this device
        // knows: whatever the server kept (another device's newer change)
        // comes back with the next pull, and a delete the server holds for
        // the admin does not come back down to this device meanwhile.
        for (const old of this.index.remoteUnder(a.path)) this.index.putRemote({ ...old, deleted: true });
        remote(a.path, { kind: a.synced.kind, deleted: true, seq: r.seq });
        break;
      case 'push-move':
        this.index.rebaseSynced(a.from, a.to);
        // The server moved what it had under the folder, which may differ from
        // what this device knew (a delete it had not pulled yet). Until the
        // changes feed says what arrived, nothing counts as there: the next
        // pull brings every moved entry, and whatever it does not bring was
        // gone on the server.
        for (const old of this.index.remoteUnder(a.from)) this.index.putRemote({ ...old, deleted: true });
        for (const s of this.index.syncedUnder(a.to)) {
          this.index.putRemote({ path: s.path, kind: s.kind, deleted: true, seq: 0, version: 0, hash: '', size: 0, mtime: 0, exec: false, from: null, manifest: null });
        }
        remote(a.from, { kind: a.synced.kind, deleted: true, seq: r.seq });
        // A file edited elsewhere meanwhile moved with its edit: the next pull tells what it holds.
        remote(a.to, { kind: a.synced.kind, seq: r.version === a.synced.version ? r.seq : 0, version: r.version, hash: a.synced.hash, size: a.synced.size, mtime: Math.round(a.synced.mtime), exec: a.synced.exec });
        break;
      case 'push-put': {
        this.wholeManifests.delete(a.path);
        const c = a.local.content!;
        const rec: SyncedRecord = {
          path: r.status === 'conflict' ? r.path : a.path, kind: 'file', version: r.version, hash: c.hash, size: c.size,
          mtime: a.local.mtime, exec: a.local.exec, ino: a.local.ino, manifest: packManifest(c.chunks), ctime: a.local.ctime,
        };
        if (r.status === 'ok' && r.path !== undefined && r.path !== a.path) {
          // Renamed on another device meanwhile, and the edit went with it: the file
          // follows here too (afterResult), and is recorded under its new name there.
          this.index.deleteSynced(a.path);
          remote(a.path, { deleted: true, seq: r.seq });
          remote(r.path, { seq: r.seq, version: r.version, hash: c.hash, size: c.size, mtime: r.mtime ?? Math.round(a.local.mtime), exec: a.local.exec });
        } else if (r.status === 'ok') {
          this.index.putSynced(rec);
          // The server already held these bytes (A7): its version and mtime stand; afterResult gives the file that mtime.
          remote(a.path, { seq: r.seq, version: r.version, hash: c.hash, size: c.size, mtime: r.mtime ?? Math.round(a.local.mtime), exec: a.local.exec });
        }
        break;
      }
      default:
        break;
    }
  }

  /**
   * Local follow-up of a push: a conflict copy takes the conflict name here
   * too; a file whose bytes the server already held takes the server's mtime.
   */
  private async afterResult(a: Action, r: OpResult): Promise<void> {
    if (r.status === 'ok' && a.kind === 'push-put' && r.path !== undefined && r.path !== a.path) {
      await this.editFollowsMove(a, r.path, r.version, r.mtime);
      return;
    }
    if (r.status === 'ok' && a.kind === 'push-put' && r.mtime !== undefined && r.mtime !== Math.round(a.local.mtime)) {
      await this.takeServerMtime(a, r.mtime);
      return;
    }
    if (r.status !== 'conflict') return;
    const local = (a as { local: LocalView }).local;
    const st = await this.folder.rename(local.localPath, r.path, expectOf(local));
    this.index.tx(() => {
      if (st && a.kind === 'push-put') {
        const c = a.local.content!;
        this.index.putSynced({ path: r.path, kind: 'file', version: r.version, hash: c.hash, size: c.size, mtime: st.mtimeMs, exec: a.local.exec, ino: st.ino, manifest: packManifest(c.chunks), ctime: st.ctimeMs });
      } else if (st) {
        this.index.rebaseSynced(local.path, r.path);
        this.index.putSynced(dirRecord(r.path, st.ino));
      }
      // The winner at the original path comes down on the next cycle.
      this.index.deleteSynced(local.path);
    });
    this.opts.log(`conflict: ${local.path} changed elsewhere too; this device's version is kept as ${r.path}`);
    this.markLocal(local.localPath);
    this.markLocal(r.path);
  }

  /**
   * A file pushed against a name another device moved meanwhile went to the
   * new name on the server. Moved with its folder (a folder renamed there):
   * the folder's own move, next cycle, carries it along here, and the file
   * is then found equal to the server's. Moved on its own: it takes the new
   * name here now. Changed again since it was read, it stays (a new file next
   * cycle) and the server's copy comes down under the new name.
   */
  private async editFollowsMove(a: Extract<Action, { kind: 'push-put' }>, to: RelPath, version: number, mtime: number | undefined): Promise<void> {
    this.markLocal(a.local.localPath);
    this.markLocal(to);
    const moved = movedFolder(a.path, to);
    if (moved && this.index.synced(moved.from)?.kind === 'dir' && (await this.folder.matches(moved.to, { absent: true }))) {
      this.opts.log(`${moved.from} was renamed to ${moved.to} on another device; ${a.path} goes there with it`);
      return;
    }
    let st = await this.folder.rename(a.local.localPath, to, expectOf(a.local));
    if (st && mtime !== undefined && mtime !== Math.round(a.local.mtime)) st = await this.adoptMtime(to, mtime, { size: st.size, mtime: st.mtimeMs, ino: st.ino }, a.local.content!.hash);
    if (st) {
      const c = a.local.content!;
      this.index.tx(() => this.index.putSynced({ path: to, kind: 'file', version, hash: c.hash, size: c.size, mtime: st.mtimeMs, exec: a.local.exec, ino: st.ino, manifest: packManifest(c.chunks), ctime: st.ctimeMs }));
      this.opts.log(`${a.path} was renamed to ${to} on another device; the change made here went with it`);
    }
  }

  /**
   * Gives a pushed file the mtime of the version the server kept (the same
   * bytes were there already), unless it changed since it was read: then
   * the next cycle looks at it as at any other change.
   */
  private async takeServerMtime(a: Extract<Action, { kind: 'push-put' }>, mtime: number): Promise<void> {
    const st = await this.adoptMtime(a.local.localPath, mtime, expectOf(a.local), a.local.content!.hash);
    const synced = this.index.synced(a.path);
    if (st && synced?.kind === 'file') this.index.putSynced({ ...synced, mtime: st.mtimeMs, ino: st.ino, ctime: st.ctimeMs });
    else this.markLocal(a.local.localPath);
  }

  /**
   * Gives a file whose bytes are those of `hash` the server's mtime, if it
   * still matches `exp`; answers its new stat. Its content is read again
   * afterwards (see LocalFolder.setMtime): one saved meanwhile is looked at
   * again next cycle, never recorded as synced.
   */
  private async adoptMtime(localPath: string, mtime: number, exp: Expected, hash: string): Promise<fs.Stats | undefined> {
    const unchanged = (st: fs.Stats) => this.scanner.hash({ localPath, size: st.size, ino: st.ino }).then((c) => c.hash === hash, () => false);
    const st = await this.folder.setMtime(localPath, mtime, exp, unchanged);
    if (!st) this.markLocal(localPath);
    return st;
  }

  /**
   * When a symbolic link holds the place of a server change (links are not
   * followed, nothing is written through one), the change waits until the
   * link is gone, reported once per link. Answers whether it is so.
   */
  private async noteBlocked(localPath: string): Promise<boolean> {
    const b = await linkInTheWay(this.folder.root, localPath);
    if (!b) return false;
    this.blocked.set(localPath.normalize('NFC'), b);
    if (!this.reportedLinks.has(b.at)) {
      this.reportedLinks.add(b.at);
      this.opts.log(`${b.at} is a symbolic link, which is not followed: what the server has there is not synced to this device; move the link away to get it`);
    }
    return true;
  }

  private report(path: string, err: unknown): undefined {
    this.opts.log(`cannot apply ${path}: ${errorMessage(err)}`);
    return undefined;
  }
}

function keyOf(a: Action): string {
  return 'path' in a ? a.path : a.to;
}

function statKey(l: LocalState | undefined): string {
  return l ? `${l.kind}:${l.size}:${l.mtime}:${l.ino}:${l.ctime ?? 0}` : 'absent';
}

/** Puts in one wave at most: this many files, this many bytes. */
const WAVE_FILES = 1000;
const WAVE_BYTES = 64 * 1024 * 1024;

/** Splits puts into waves of at most WAVE_FILES files and WAVE_BYTES bytes (a larger file alone). */
function waves<T extends { local: LocalView }>(puts: readonly T[]): T[][] {
  const out: T[][] = [];
  let wave: T[] = [];
  let bytes = 0;
  for (const a of puts) {
    if (wave.length > 0 && (wave.length >= WAVE_FILES || bytes + a.local.size > WAVE_BYTES)) {
      out.push(wave);
      wave = [];
      bytes = 0;
    }
    wave.push(a);
    bytes += a.local.size;
  }
  if (wave.length > 0) out.push(wave);
  return out;
}

/** Sends ops in push frames of at most MAX_OPS_PER_PUSH ops and about PUSH_BYTES. */
class Pusher {
  /** Deletes the server holds for the admin (a mass delete). */
  held = 0;

  constructor(
    private readonly conn: Connection,
    private readonly progress: Progress,
    /** Paths whose next put goes with its whole chunk list. */
    private readonly wholeManifests: Set<string>,
    private readonly onResults: (sent: ReadonlyArray<{ a: Action; op: Op }>, results: readonly OpResult[]) => Promise<void>,
  ) {}

  async pushAll(items: ReadonlyArray<{ a: Action; op: Op }>): Promise<void> {
    let batch: Array<{ a: Action; op: Op }> = [];
    let bytes = 0;
    for (const item of items) {
      const { op } = item;
      const size = 200 + (op.op === 'put' ? ('full' in op.manifest ? op.manifest.full.byteLength : op.manifest.delta.middle.byteLength) : 0);
      if (batch.length >= MAX_OPS_PER_PUSH || (bytes + size > PUSH_BYTES && batch.length > 0)) {
        await this.push(batch);
        batch = [];
        bytes = 0;
      }
      batch.push(item);
      bytes += size;
    }
    await this.push(batch);
  }

  private async push(sent: Array<{ a: Action; op: Op }>): Promise<void> {
    if (sent.length === 0) return;
    crashPoint('client:before-push');
    const answer = await this.conn.request({ type: 'push', id: this.conn.id(), ops: sent.map((b) => b.op) }, 'pushed').catch((err: unknown) => {
      // The whole push was refused for a base the server no longer has: the
      // next cycle sends those puts whole (and uploads what chunks it lacks).
      if (isKeepsyncError(err) && err.code === 'VERSION_UNKNOWN') for (const b of sent) if (b.op.op === 'put' && 'delta' in b.op.manifest) this.wholeManifests.add(b.op.path);
      throw err;
    });
    crashPoint('client:after-push');
    await this.onResults(sent, answer.results);
    this.held += answer.results.filter((r) => r.status === 'ok' && r.held).length;
    this.progress.fileUp(sent.length);
  }
}

/**
 * What a local file must still be for the engine to replace, move or delete
 * it: as the planner saw it. The planner only plans that for a file whose
 * content is what was last synced (a touch keeps the content, not the stat).
 */
function expectOf(s: LocalState) {
  return s.kind === 'dir' ? { kind: 'dir' as const } : { size: s.size, mtime: s.mtime, ino: s.ino, ctime: s.ctime };
}

function dirRecord(path: RelPath, ino: number): SyncedRecord {
  return { path, kind: 'dir', version: 0, hash: '', size: 0, mtime: 0, exec: false, ino, manifest: null };
}

function syncedFromRemote(r: RemoteRecord, ino: number, mtime: number): SyncedRecord {
  return { path: r.path, kind: r.kind, version: r.version, hash: r.hash, size: r.size, mtime, exec: r.exec, ino, manifest: r.manifest };
}

function resolveManifest(ref: ManifestRef, base: SyncedRecord | undefined) {
  if ('full' in ref) return ref.full;
  if (!base?.manifest || ref.delta.base !== base.version) throw new KeepsyncError('FRAME_INVALID', 'the server sent a manifest delta against a version this device does not have');
  return applyManifestDelta(base.manifest, ref.delta);
}

/**
 * The chunks of a put the server may lack: all of them for a full manifest,
 * only the delta's middle otherwise (its head and tail come from the base
 * version, which the server holds), so an edit in a large file asks about a
 * handful of hashes instead of every chunk.
 */
function chunksToOffer(a: Extract<Action, { kind: 'push-put' }>, op: Op): ChunkRef[] {
  const chunks = a.local.content?.chunks ?? [];
  if (op.op !== 'put' || 'full' in op.manifest) return chunks;
  const named = new Set(unpackManifest(op.manifest.delta.middle).map((c) => c.hash));
  return chunks.filter((c) => named.has(c.hash));
}

/** True when a folder above `p` (a `/`-separated path) is in `paths`. */
function hasAncestorIn(paths: ReadonlySet<string>, p: string): boolean {
  for (let slash = p.lastIndexOf('/'); slash > 0; slash = p.lastIndexOf('/', slash - 1)) {
    if (paths.has(p.slice(0, slash))) return true;
  }
  return false;
}
