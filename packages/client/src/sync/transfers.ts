import { createHash, type Hash } from 'node:crypto';
import { KeepsyncError, errorMessage, isKeepsyncError, sha256Hex, unpackManifest, type Manifest, type RelPath } from '@keepsync/protocol';
import type { LocalIndex } from '../index/LocalIndex.js';
import type { LocalFolder, PendingWrite, Expected } from '../folder/LocalFolder.js';
import type { Connection } from '../transport/Connection.js';
import type { Progress } from '../progress.js';
import { ChunkFetcher } from './ChunkFetcher.js';

const WRITE_PARALLEL = 16;

/** A file to write from the server's content. */
export interface DownloadJob {
  path: RelPath;
  localPath: string;
  manifest: Manifest;
  hash: string;
  mtime: number;
  exec: boolean;
  /** What the target must still be when the file is renamed into place. */
  expect: Expected;
  onDone(result: { ino: number; mtime: number } | undefined): void;
}

/** A file being written: its temp file, the hash of what is in it, and how many chunks that is. */
interface Partial {
  /** Hash of the whole content being downloaded. */
  hash: string;
  w: PendingWrite;
  h: Hash;
  /** Chunks written, and their bytes (where the next one goes). */
  pieces: number;
  bytes: number;
}

/**
 * Downloads cut off by a lost connection, kept so that the next attempt
 * (after reconnecting) goes on from the last chunk written instead of from
 * the start. Every chunk in a partial file was verified against its hash.
 */
export class PartialDownloads {
  private readonly byPath = new Map<string, Partial>();

  constructor(private readonly folder: LocalFolder) {}

  /** The partial file for `localPath` when it is the same content; any other is dropped. */
  async take(localPath: string, hash: string): Promise<Partial | undefined> {
    const p = this.byPath.get(localPath);
    if (!p) return undefined;
    this.byPath.delete(localPath);
    if (p.hash === hash) return p;
    await this.folder.abort(p.w);
    return undefined;
  }

  keep(localPath: string, p: Partial): void {
    this.byPath.set(localPath, p);
  }

  /** True when `absTemp` is the temporary file of a kept partial download. */
  holds(absTemp: string): boolean {
    for (const p of this.byPath.values()) if (p.w.tmp === absTemp) return true;
    return false;
  }

  /** Drops the partial files of paths not in `keep` (their download is no longer wanted). */
  async retain(keep: Set<string>): Promise<void> {
    for (const [path, p] of this.byPath) {
      if (keep.has(path)) continue;
      this.byPath.delete(path);
      await this.folder.abort(p.w);
    }
  }

  /** Removes every partial file (the sync is stopping). */
  async clear(): Promise<void> {
    await this.retain(new Set());
  }
}

/**
 * Writes files from manifests: chunks this device already holds are copied
 * from local files (verified), the rest are streamed from the server, a
 * window of requests ahead of the writer so that latency does not stall it,
 * each verified by hash and appended in order; every file is checked whole
 * before it is renamed in. When the connection is lost, what was written is
 * kept in `partials` and the next attempt resumes after it.
 */
export async function downloadFiles(
  jobs: DownloadJob[], conn: Connection, index: LocalIndex, folder: LocalFolder, progress: Progress, partials: PartialDownloads,
): Promise<void> {
  await partials.retain(new Set(jobs.map((j) => j.localPath)));
  const resumed = new Map<number, Partial>();
  for (const [i, job] of jobs.entries()) {
    const p = await partials.take(job.localPath, job.hash);
    if (p) resumed.set(i, p);
  }
  // Chunks the index knows a local copy of are read here; the rest come from the server, in file order.
  const fetcher = new ChunkFetcher(conn, (data) => progress.down(data.byteLength));
  const pieces = jobs.map((job, i) =>
    unpackManifest(job.manifest).map((c, k) => ({
      ...c,
      occ: k < (resumed.get(i)?.pieces ?? 0) || index.chunkSources(c.hash).length > 0 ? -1 : fetcher.plan(c.hash, c.size),
    })),
  );
  fetcher.start();

  let lost: unknown;
  let writeError: { path: string; err: unknown } | undefined;
  /** Content from the server that is not what it named: a damaged or hostile server, never written. */
  let badContent: string | undefined;
  const failedWrite = (i: number, err: unknown) => {
    // The disk's trouble is reported; anything else (the target's place taken meanwhile) is retried quietly.
    if (DISK_ERRORS.has((err as NodeJS.ErrnoException).code ?? '')) writeError ??= { path: jobs[i].path, err };
  };
  const one = async (i: number) => {
    const job = jobs[i];
    let st: Partial | undefined = resumed.get(i);
    let failed = false;
    try {
      st ??= { hash: job.hash, w: await folder.begin(job.localPath), h: createHash('sha256'), pieces: 0, bytes: 0 };
      for (const c of pieces[i].slice(st.pieces)) {
        const data = c.occ >= 0 ? await fetcher.get(c.occ) : (await readLocal(c.hash, c.size, index, folder)) ?? (await fetcher.fetchOne(c.hash));
        await st.w.fh.write(data, 0, data.byteLength, st.bytes);
        st.h.update(data);
        st.pieces++;
        st.bytes += data.byteLength;
      }
    } catch (err) {
      if ((conn.closed || lost !== undefined) && !DISK_ERRORS.has((err as NodeJS.ErrnoException).code ?? '')) {
        lost ??= err;
        // Resumable: what is in the file was verified chunk by chunk.
        if (st) partials.keep(job.localPath, st);
        return;
      }
      if (isKeepsyncError(err) && err.code === 'CHUNK_HASH_MISMATCH') badContent ??= job.path;
      else failedWrite(i, err);
      failed = true;
    } finally {
      for (const c of pieces[i].slice(st?.pieces ?? 0)) if (c.occ >= 0) fetcher.release(c.occ);
    }
    if (!st) return job.onDone(undefined);
    if (failed || st.h.digest('hex') !== job.hash) {
      if (!failed) badContent ??= job.path;
      await folder.abort(st.w);
      job.onDone(undefined);
      return;
    }
    let stat;
    try {
      stat = await folder.commit(st.w, job.localPath, job.mtime, job.exec, job.expect);
    } catch (err) {
      failedWrite(i, err);
    }
    job.onDone(stat ? { ino: stat.ino, mtime: stat.mtimeMs } : undefined);
  };
  try {
    await parallel(jobs.map((_, i) => i), WRITE_PARALLEL, one);
  } finally {
    fetcher.stop();
  }
  if (lost !== undefined) throw lost instanceof Error ? lost : new KeepsyncError('UNAVAILABLE', 'the connection to the server was lost');
  if (badContent !== undefined) {
    throw new KeepsyncError(
      'CHUNK_HASH_MISMATCH',
      `the server sent content for ${badContent} that does not match its hash; nothing was written. Its storage may be damaged: run "keepsync server verify" on the server`,
    );
  }
  if (writeError) {
    throw new KeepsyncError('LOCAL_WRITE_FAILED', `cannot write ${writeError.path}: ${describeWriteError(writeError.err)}; it is downloaded again on the next try`);
  }
}

/** Errors of the disk itself, which no retry within this cycle can fix. */
const DISK_ERRORS = new Set(['ENOSPC', 'EDQUOT', 'EFBIG', 'EROFS', 'EACCES', 'EPERM', 'EIO']);

function describeWriteError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') return 'no space left on the disk; free some space';
  if (code === 'EROFS') return 'the disk is read-only';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return errorMessage(err);
}

async function readLocal(hash: string, size: number, index: LocalIndex, folder: LocalFolder): Promise<Buffer | undefined> {
  for (const src of index.chunkSources(hash)) {
    if (src.size !== size) continue;
    const data = await folder.read(src.path, src.offset, size);
    if (data && sha256Hex(data) === hash) return data;
  }
  return undefined;
}

/** Runs `fn` over items with at most `width` at a time. */
export async function parallel<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}
