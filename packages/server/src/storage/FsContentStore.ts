import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { KeepsyncError, sha256Hex } from '@keepsync/protocol';
import type { ContentStore } from './ContentStore.js';

const HEX64 = /^[0-9a-f]{64}$/;
const FSYNC_PARALLEL = 32;
/** Chunk files whose fsync may be in progress at once. */
const SYNC_AHEAD = 64;

/**
 * Chunks as files under `DIR/chunks/ab/abcdef…`. A put writes a temporary
 * file; its fsync and the rename into place run in the background,
 * overlapping the next chunks' transfer, so a chunk file is whole and on disk
 * or absent. `flush` waits for those and fsyncs the directories before the
 * index refers to the chunks (a chunk may show as missing until then).
 */
export class FsContentStore implements ContentStore {
  private readonly root: string;
  private readonly syncing = new Set<Promise<void>>();
  private syncErrors: unknown[] = [];
  private dirtyDirs = new Set<string>();

  constructor(dataDir: string) {
    this.root = path.join(dataDir, 'chunks');
  }

  async init(): Promise<void> {
    await fs.mkdir(path.join(this.root, 'tmp'), { recursive: true });
    // Leftovers of a crash mid-put are never referenced: remove them.
    for (const name of await fs.readdir(path.join(this.root, 'tmp'))) {
      await fs.rm(path.join(this.root, 'tmp', name), { force: true });
    }
  }

  private fileOf(hash: string): string {
    if (!HEX64.test(hash)) throw new Error(`bug: not a chunk hash: ${hash}`);
    return path.join(this.root, hash.slice(0, 2), hash);
  }

  async missing(hashes: readonly string[]): Promise<string[]> {
    // A few dozen checks at a time: thousands at once would flood the thread pool that transfers use.
    const found = new Array<boolean>(hashes.length);
    await parallel(hashes.map((h, i) => ({ h, i })), FSYNC_PARALLEL, async ({ h, i }) => {
      found[i] = await fs.access(this.fileOf(h)).then(() => true, () => false);
    });
    return hashes.filter((_, i) => !found[i]);
  }

  async put(hash: string, data: Uint8Array): Promise<void> {
    if (sha256Hex(data) !== hash) {
      throw new KeepsyncError('CHUNK_HASH_MISMATCH', 'chunk content does not match its hash');
    }
    const file = this.fileOf(hash);
    if (await fs.access(file).then(() => true, () => false)) return;
    // Bounded: a device that uploads faster than the disk syncs waits here.
    while (this.syncing.size >= SYNC_AHEAD) await Promise.race(this.syncing);
    const tmp = path.join(this.root, 'tmp', `${hash}.${randomBytes(6).toString('hex')}`);
    const fh = await fs.open(tmp, 'wx');
    try {
      await fh.writeFile(data);
    } catch (err) {
      await fh.close().catch(() => {});
      await fs.rm(tmp, { force: true });
      throw err;
    }
    const tracked: Promise<void> = this.settle(fh, tmp, file).then(
      () => {
        this.syncing.delete(tracked);
      },
      (err: unknown) => {
        this.syncing.delete(tracked);
        this.syncErrors.push(err);
        void fs.rm(tmp, { force: true }).catch(() => {});
      },
    );
    this.syncing.add(tracked);
  }

  /**
   * fsync, then rename: a chunk file under its hash is always whole on disk,
   * even after a crash. Runs while more chunks arrive; flush waits for it.
   */
  private async settle(fh: fs.FileHandle, tmp: string, file: string): Promise<void> {
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.rename(tmp, file);
    this.dirtyDirs.add(path.dirname(file));
  }

  async flush(): Promise<void> {
    await Promise.all([...this.syncing]);
    const errors = this.syncErrors.splice(0);
    if (errors.length > 0) throw errors[0];
    if (this.dirtyDirs.size === 0) return;
    const dirs = [...this.dirtyDirs];
    this.dirtyDirs = new Set();
    await parallel(dirs, FSYNC_PARALLEL, syncPath);
  }

  async get(hash: string): Promise<Uint8Array | undefined> {
    try {
      return await fs.readFile(this.fileOf(hash));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async delete(hash: string): Promise<void> {
    await fs.rm(this.fileOf(hash), { force: true });
  }

  async *list(): AsyncIterable<{ hash: string; size: number }> {
    for (const prefix of await fs.readdir(this.root)) {
      if (prefix.length !== 2) continue;
      for (const name of await fs.readdir(path.join(this.root, prefix))) {
        if (!HEX64.test(name)) continue;
        const st = await fs.stat(path.join(this.root, prefix, name)).catch(() => undefined);
        if (st) yield { hash: name, size: st.size };
      }
    }
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

async function parallel<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}
