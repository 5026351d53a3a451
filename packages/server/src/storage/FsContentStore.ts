import {
  close as closeCallback, existsSync, fstat as fstatCallback, open as openCallback, read as readCallback, renameSync, utimesSync,
  writeFile as writeFileCallback, writeFileSync,
} from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { KeepsyncError, chunkDataBuffer, parallel, sha256Hex } from '@keepsync/protocol';
import type { ContentStore, StoredChunk } from './ContentStore.js';
import { FileSystemSyncer } from './FileSystemSyncer.js';

const HEX64 = /^[0-9a-f]{64}$/;
const FSYNC_PARALLEL = 32;
/** New chunk files waiting to be made durable, at most: a put beyond waits for them. */
const SYNC_AHEAD = 4096;
/**
 * New chunks are made durable together once this many or this many bytes
 * wait, or this long after the first of them arrived (a push does not wait
 * for it: `flush` settles what waits at once).
 */
const GROUP_CHUNKS = 1024;
const GROUP_BYTES = 64 * 1024 * 1024;
const GROUP_DELAY_MS = 200;
/** Up to this many files (or folders) are fsynced each; more sync the whole file system at once. */
const FSYNC_EACH_MAX = 16;
/**
 * A sync of the whole file system that takes longer than this is waiting for
 * other programs' writes to the same disk: the files are then fsynced each too.
 */
const SYNCFS_PATIENCE_MS = 500;
/**
 * Chunks up to this size (a small file's) are written on the event loop: for
 * them the thread pool's hand-offs cost more than the write. Larger ones are
 * written in the pool, beside the next chunks' transfer.
 */
const WRITE_DIRECTLY_MAX = 16 * 1024;
/**
 * Chunks are read, and large ones written, in the thread pool (the disk may
 * make a call wait, and other devices must not wait for it), through the
 * callback API: `fs/promises` costs more than twice the CPU per file in
 * handle objects.
 */
const writeFile = promisify(writeFileCallback);
const open = promisify(openCallback);
const fstat = promisify(fstatCallback);
const read = (fd: number, buffer: Uint8Array, offset: number, length: number, position: number) =>
  new Promise<number>((resolve, reject) => readCallback(fd, buffer, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
const close = promisify(closeCallback);

/**
 * Chunks as files under `DIR/chunks/ab/abcdef…`. A put writes a temporary
 * file; making it durable and renaming it into place run in the background,
 * overlapping the next chunks' transfer, so a chunk file is whole and on disk
 * or absent. New chunks are made durable in groups: a few by an fsync each,
 * many (thousands of small files) by one sync of the file system (syncfs
 * through `sync --file-system`), which costs a fraction of an fsync per file
 * (or by an fsync each when that sync is slow: see `makeDurable`), then
 * renamed. `flush` waits for those and makes the renames durable (by
 * fsyncs of their folders, or one more sync of the file system) before the
 * index refers to the chunks.
 *
 * A chunk file's modification time is when it was last used: written, or
 * found by `missing` or `put` (which touch it). The collector removes only
 * chunks unused for its grace period, through `deleteUnused`, which also
 * steps aside for any use in progress in this process (a background fsync
 * and rename count as a use).
 */
export class FsContentStore implements ContentStore {
  private readonly root: string;
  /** Background sync-and-rename of new chunks, per hash. */
  private readonly settling = new Map<string, Promise<void>>();
  /** New chunks written to temporary files, waiting for their group to be made durable. */
  private waiting: Array<{ tmp: string; file: string; size: number; done: (err?: unknown) => void }> = [];
  private waitingBytes = 0;
  private groupTimer: NodeJS.Timeout | undefined;
  /** False once syncing the file system at once failed here: groups then fsync each file. */
  private syncfsWorks = process.platform === 'linux';
  private readonly syncer: FileSystemSyncer;
  /** Syncs of the file system running past their patience: while there are any, groups fsync each file. */
  private slowSyncs = 0;
  private syncErrors: unknown[] = [];
  /** Folders with renames not yet durable. */
  private dirtyDirs = new Set<string>();
  /** Prefix directories made by this process (a rename recreates one that vanished). */
  private readonly dirs = new Set<string>();
  /** Uses (`missing`, `put`, a background settle) in progress, per hash. */
  private readonly using = new Map<string, number>();
  /** Last use of chunks whose file time could not be set. */
  private readonly usedHere = new Map<string, number>();
  /** Removals in progress, per hash; a use waits for them. */
  private readonly removing = new Map<string, Promise<unknown>>();
  /** Chunk count and bytes, once a full listing has counted them; kept up to date by puts and removals. */
  private totals: { chunks: number; bytes: number } | undefined;
  /** Bumped by every put of a new chunk and every removal, so a listing knows whether its count is exact. */
  private changes = 0;

  constructor(dataDir: string) {
    this.root = path.join(dataDir, 'chunks');
    this.syncer = new FileSystemSyncer(this.root);
  }

  /**
   * Prepares the store. A store that cannot be written (a read-only disk)
   * still serves what it holds: answers why it cannot be written, for the
   * log; puts then fail with STORAGE.
   */
  async init(): Promise<string | undefined> {
    try {
      await fs.mkdir(path.join(this.root, 'tmp'), { recursive: true });
      // Leftovers of a crash mid-put are never referenced: remove them.
      for (const name of await fs.readdir(path.join(this.root, 'tmp'))) {
        await fs.rm(path.join(this.root, 'tmp', name), { force: true });
      }
      // Can a chunk be written at all? (A read-only mount or a full disk says so only here.)
      const probe = path.join(this.root, 'tmp', `probe.${randomBytes(6).toString('hex')}`);
      await fs.writeFile(probe, '');
      await fs.rm(probe);
      return undefined;
    } catch (err) {
      if (!isStorageFault(err)) throw err;
      return storageError(this.root, err).message;
    }
  }

  /** True when at least one chunk file is there: false for a store that is missing or empty (an unmounted disk). */
  async holdsChunks(): Promise<boolean> {
    const prefixes = await fs.readdir(this.root).catch(() => [] as string[]);
    for (const prefix of prefixes) {
      if (prefix.length !== 2) continue;
      const names = await fs.readdir(path.join(this.root, prefix)).catch(() => [] as string[]);
      if (names.some((n) => HEX64.test(n))) return true;
    }
    return false;
  }

  private fileOf(hash: string): string {
    if (!HEX64.test(hash)) throw new Error(`bug: not a chunk hash: ${hash}`);
    return path.join(this.root, hash.slice(0, 2), hash);
  }

  async missing(hashes: readonly string[]): Promise<string[]> {
    // A stat that finds nothing is cheap; through the thread pool it would cost a round trip and an exception.
    const found = new Array<boolean>(hashes.length);
    await parallel(hashes.map((h, i) => ({ h, i })), FSYNC_PARALLEL, async ({ h, i }) => {
      if (this.settling.has(h)) found[i] = true; // on disk by the next flush
      else found[i] = existsSync(this.fileOf(h)) && (await this.use(h, () => this.touch(this.fileOf(h))));
    });
    return hashes.filter((_, i) => !found[i]);
  }

  async put(hash: string, data: Uint8Array): Promise<void> {
    if (sha256Hex(data) !== hash) {
      throw new KeepsyncError('CHUNK_HASH_MISMATCH', 'chunk content does not match its hash');
    }
    const file = this.fileOf(hash);
    await this.storing(() => this.use(hash, async () => {
      if (this.settling.has(hash)) return;
      if (existsSync(file) && (await this.touch(file))) return;
      // Bounded: a device that uploads faster than the disk syncs waits here.
      while (this.settling.size >= SYNC_AHEAD) await Promise.race(this.settling.values());
      if (this.settling.has(hash)) return;
      const tmp = path.join(this.root, 'tmp', `${hash}.${randomBytes(6).toString('hex')}`);
      try {
        if (data.byteLength <= WRITE_DIRECTLY_MAX) writeFileSync(tmp, data, { flag: 'wx' });
        else await writeFile(tmp, data, { flag: 'wx' });
      } catch (err) {
        await fs.rm(tmp, { force: true });
        throw err;
      }
      // Started while this use still holds the chunk, so a removal cannot slip in between.
      this.settleInBackground(hash, tmp, file, data.byteLength);
    }));
  }

  /**
   * Makes a written chunk durable and renames it into place, tracked in
   * `settling`. A method of its own so that its callbacks, which live until
   * the chunk's group is synced, do not hold the chunk's bytes (a closure
   * beside `put`'s data would keep all of it alive: 64 MiB per group).
   */
  private settleInBackground(hash: string, tmp: string, file: string, size: number): void {
    const tracked: Promise<void> = this.use(hash, () => this.settle(tmp, file, size)).then(
      () => {
        this.settling.delete(hash);
      },
      (err: unknown) => {
        this.settling.delete(hash);
        this.syncErrors.push(err);
        void fs.rm(tmp, { force: true }).catch(() => {});
      },
    );
    this.settling.set(hash, tracked);
  }

  /** Runs a write, reporting a disk that refuses it as STORAGE (devices keep their files and retry). */
  private async storing<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw isStorageFault(err) ? storageError(this.root, err) : err;
    }
  }

  /** Resolves once the chunk in `tmp` is durable under its name `file`. */
  private settle(tmp: string, file: string, size: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ tmp, file, size, done: (err) => (err === undefined ? resolve() : reject(err)) });
      this.waitingBytes += size;
      if (this.waiting.length >= GROUP_CHUNKS || this.waitingBytes >= GROUP_BYTES) void this.settleGroup();
      else if (this.waiting.length === 1) this.groupTimer = setTimeout(() => void this.settleGroup(), GROUP_DELAY_MS);
    });
  }

  /**
   * Makes the waiting chunks durable, then renames them into place: a chunk
   * file under its hash is always whole on disk, even after a crash.
   */
  private async settleGroup(): Promise<void> {
    clearTimeout(this.groupTimer);
    const group = this.waiting;
    this.waiting = [];
    this.waitingBytes = 0;
    if (group.length === 0) return;
    try {
      await this.makeDurable(group.map((c) => c.tmp));
      await parallel(group, FSYNC_PARALLEL, (c) => this.rename(c.tmp, c.file, c.size));
      // The renames are made durable by `flush`, before anything refers to the chunks.
      for (const c of group) this.dirtyDirs.add(path.dirname(c.file));
      for (const c of group) c.done();
    } catch (err) {
      for (const c of group) c.done(err ?? new Error('sync failed'));
    }
  }

  /**
   * Makes files (new chunks) or folders (their renames) durable. Many are
   * made durable by one sync of the file system, which costs a fraction of
   * an fsync each. That sync also waits for every other program's writes to
   * the same disk (a backup or a download on the NAS, for minutes): when it
   * runs past its patience, the paths are fsynced each as well, and
   * whichever finishes first counts.
   */
  private async makeDurable(paths: string[]): Promise<void> {
    const each = () => parallel(paths, FSYNC_PARALLEL, syncPath);
    if (paths.length <= FSYNC_EACH_MAX || !this.syncfsWorks || this.slowSyncs > 0) return each();
    const whole = this.syncFileSystem();
    let timer: NodeJS.Timeout | undefined;
    const patience = new Promise<'slow'>((resolve) => (timer = setTimeout(() => resolve('slow'), SYNCFS_PATIENCE_MS)));
    const first = await Promise.race([whole, patience]);
    clearTimeout(timer);
    if (first === true) return;
    if (first === false) return each();
    this.slowSyncs++;
    void whole.then(() => this.slowSyncs--);
    const fsyncs = each();
    if (await firstTrue([whole, fsyncs.then(() => true, () => false)])) return;
    await fsyncs; // both failed: the fsyncs' error says why
  }

  /** Syncs the whole file system of the store; false when that cannot be done here. */
  private async syncFileSystem(): Promise<boolean> {
    if (!this.syncfsWorks) return false;
    const ok = await this.syncer.sync();
    if (!ok) this.syncfsWorks = false;
    return ok;
  }

  private async rename(tmp: string, file: string, size: number): Promise<void> {
    const dir = path.dirname(file);
    if (!this.dirs.has(dir)) {
      await fs.mkdir(dir, { recursive: true });
      this.dirs.add(dir);
    }
    // Two puts of the same new chunk may race here; the rename keeps one whole file.
    const existed = existsSync(file);
    try {
      renameSync(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await fs.mkdir(dir, { recursive: true });
      await fs.rename(tmp, file);
    }
    if (!existed) this.counted(1, size);
  }

  /** Runs a use of `hash` after any removal of it, visible to `deleteUnused` while it runs. */
  private async use<T>(hash: string, fn: () => Promise<T>): Promise<T> {
    while (this.removing.has(hash)) await this.removing.get(hash);
    this.using.set(hash, (this.using.get(hash) ?? 0) + 1);
    try {
      return await fn();
    } finally {
      const n = this.using.get(hash)! - 1;
      if (n === 0) this.using.delete(hash);
      else this.using.set(hash, n);
    }
  }

  /** Marks a chunk file as used now; false when it does not exist. */
  private async touch(file: string): Promise<boolean> {
    const now = new Date();
    try {
      utimesSync(file, now, now);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return false;
      // A file whose time cannot be set (not ours, read-only): remember the use here instead.
      if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
        if (!(await fs.access(file).then(() => true, () => false))) return false;
        this.usedHere.set(path.basename(file), now.getTime());
        return true;
      }
      throw err;
    }
  }

  private counted(chunks: number, bytes: number): void {
    this.changes++;
    if (this.totals) {
      this.totals.chunks += chunks;
      this.totals.bytes += bytes;
    }
  }

  async flush(): Promise<void> {
    await this.storing(async () => {
      if (this.waiting.length > 0) void this.settleGroup();
      await Promise.all([...this.settling.values()]);
      const errors = this.syncErrors.splice(0);
      if (errors.length > 0) throw errors[0];
      if (this.dirtyDirs.size === 0) return;
      const dirs = [...this.dirtyDirs];
      this.dirtyDirs = new Set();
      // Renames that finish meanwhile belong to later puts, made durable by their own flush.
      await this.makeDurable(dirs);
    });
  }

  async get(hash: string): Promise<Uint8Array | undefined> {
    let fd: number;
    try {
      fd = await open(this.fileOf(hash), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      // Read where it can be sent from without a copy.
      const { size } = await fstat(fd);
      const data = chunkDataBuffer(size);
      for (let at = 0; at < size; ) {
        const n = await read(fd, data, at, size - at, at);
        if (n === 0) throw new Error(`chunk file ${hash} ended early`);
        at += n;
      }
      return data;
    } finally {
      await close(fd);
    }
  }

  async delete(hash: string): Promise<void> {
    await this.deleteUnused(hash, Infinity);
  }

  async deleteUnused(hash: string, unusedSince: number): Promise<number> {
    const file = this.fileOf(hash);
    // Checked and claimed in one step: a use that starts later waits for the removal.
    if (this.using.has(hash) || this.removing.has(hash)) return 0;
    if ((this.usedHere.get(hash) ?? -Infinity) >= unusedSince) return 0;
    this.usedHere.delete(hash);
    const removal = (async () => {
      const st = await fs.stat(file).catch(() => undefined);
      if (!st || st.mtimeMs >= unusedSince) return 0;
      await fs.rm(file, { force: true });
      this.counted(-1, -st.size);
      return st.size;
    })();
    this.removing.set(hash, removal.catch(() => 0));
    try {
      return await removal;
    } finally {
      this.removing.delete(hash);
    }
  }

  async *list(): AsyncIterable<StoredChunk> {
    const changesBefore = this.changes;
    let chunks = 0;
    let bytes = 0;
    for (const prefix of (await fs.readdir(this.root)).sort()) {
      if (prefix.length !== 2) continue;
      for (const name of await fs.readdir(path.join(this.root, prefix))) {
        if (!HEX64.test(name)) continue;
        const st = await fs.stat(path.join(this.root, prefix, name)).catch(() => undefined);
        if (!st) continue;
        chunks++;
        bytes += st.size;
        yield { hash: name, size: st.size, usedAt: st.mtimeMs };
      }
    }
    // Nothing was added or removed meanwhile: the count is exact.
    if (this.changes === changesBefore) this.totals = { chunks, bytes };
  }

  async usage(): Promise<{ chunks: number; bytes: number }> {
    // A listing during puts or removals is only nearly exact: try again, then take it.
    for (let attempt = 0; !this.totals; attempt++) {
      let chunks = 0;
      let bytes = 0;
      for await (const c of this.list()) {
        chunks++;
        bytes += c.size;
      }
      if (!this.totals && attempt === 2) return { chunks, bytes };
    }
    return { ...this.totals };
  }
}

async function syncPath(p: string): Promise<void> {
  const fh = await fs.open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** True as soon as one of `answers` is true; false once all are false. */
function firstTrue(answers: Array<Promise<boolean>>): Promise<boolean> {
  return new Promise((resolve) => {
    let left = answers.length;
    for (const a of answers) void a.then((yes) => (yes ? resolve(true) : --left === 0 && resolve(false)));
  });
}

/** Errors of the disk under the store, which the admin must fix (not a bug, not the device's fault). */
const STORAGE_FAULTS = new Set(['EROFS', 'EACCES', 'EPERM', 'ENOSPC', 'EDQUOT', 'EIO']);

function isStorageFault(err: unknown): boolean {
  return STORAGE_FAULTS.has((err as NodeJS.ErrnoException).code ?? '');
}

function storageError(root: string, err: unknown): KeepsyncError {
  const code = (err as NodeJS.ErrnoException).code;
  const why = code === 'EROFS' ? 'is read-only' : code === 'ENOSPC' || code === 'EDQUOT' ? 'is full' : code === 'EIO' ? 'has an I/O error' : 'cannot be written (permission denied)';
  return new KeepsyncError('STORAGE', `the server's content store ${root} ${why}; nothing new can be stored until its admin fixes it (devices keep their files and retry)`);
}
