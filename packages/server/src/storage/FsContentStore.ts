import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { KeepsyncError, sha256Hex } from '@keepsync/protocol';
import type { ContentStore, StoredChunk } from './ContentStore.js';

const HEX64 = /^[0-9a-f]{64}$/;
const FSYNC_PARALLEL = 32;

/**
 * Chunks as files under `DIR/chunks/ab/abcdef…`. A put writes a temporary file
 * and renames it into place, so a chunk file is whole or absent; `flush`
 * fsyncs the files and their directories before the index refers to them.
 *
 * A chunk file's modification time is when it was last used: written, or
 * found by `missing` or `put` (which touch it). The collector removes only
 * chunks unused for its grace period, through `deleteUnused`, which also
 * steps aside for any use in progress in this process.
 */
export class FsContentStore implements ContentStore {
  private readonly root: string;
  private pending = new Set<string>();
  /** Uses (`missing`, `put`) in progress, per hash. */
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
    const found = await Promise.all(hashes.map((h) => this.use(h, () => this.touch(this.fileOf(h)))));
    return hashes.filter((_, i) => !found[i]);
  }

  async put(hash: string, data: Uint8Array): Promise<void> {
    if (sha256Hex(data) !== hash) {
      throw new KeepsyncError('CHUNK_HASH_MISMATCH', 'chunk content does not match its hash');
    }
    const file = this.fileOf(hash);
    await this.use(hash, async () => {
      if (await this.touch(file)) return;
      const tmp = path.join(this.root, 'tmp', `${hash}.${randomBytes(6).toString('hex')}`);
      await fs.writeFile(tmp, data);
      await fs.mkdir(path.dirname(file), { recursive: true });
      // Two puts of the same new chunk may race here; the rename keeps one whole file.
      const existed = await fs.stat(file).then(() => true, () => false);
      await fs.rename(tmp, file);
      this.pending.add(file);
      if (!existed) this.counted(1, data.byteLength);
    });
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
      await fs.utimes(file, now, now);
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
    if (this.pending.size === 0) return;
    const files = [...this.pending];
    this.pending = new Set();
    const dirs = new Set(files.map((f) => path.dirname(f)));
    await parallel([...files, ...dirs], FSYNC_PARALLEL, syncPath);
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

async function parallel<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}
