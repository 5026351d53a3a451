import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { KeepsyncError, sha256Hex } from '@keepsync/protocol';
import type { ContentStore } from './ContentStore.js';

const HEX64 = /^[0-9a-f]{64}$/;
const FSYNC_PARALLEL = 32;

/**
 * Chunks as files under `DIR/chunks/ab/abcdef…`. A put writes a temporary file
 * and renames it into place, so a chunk file is whole or absent; `flush`
 * fsyncs the files and their directories before the index refers to them.
 */
export class FsContentStore implements ContentStore {
  private readonly root: string;
  private pending = new Set<string>();
  /** Prefix directories made by this process (a rename recreates one that vanished). */
  private readonly dirs = new Set<string>();

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
    // A stat that finds nothing is cheap; through the thread pool it would cost a round trip and an exception.
    return hashes.filter((h) => !existsSync(this.fileOf(h)));
  }

  async put(hash: string, data: Uint8Array): Promise<void> {
    if (sha256Hex(data) !== hash) {
      throw new KeepsyncError('CHUNK_HASH_MISMATCH', 'chunk content does not match its hash');
    }
    const file = this.fileOf(hash);
    if (existsSync(file)) return;
    const tmp = path.join(this.root, 'tmp', `${hash}.${randomBytes(6).toString('hex')}`);
    await fs.writeFile(tmp, data);
    const dir = path.dirname(file);
    if (!this.dirs.has(dir)) {
      await fs.mkdir(dir, { recursive: true });
      this.dirs.add(dir);
    }
    await fs.rename(tmp, file).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
      await fs.mkdir(dir, { recursive: true });
      await fs.rename(tmp, file);
    });
    this.pending.add(file);
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
