import { createHash } from 'node:crypto';
import {
  KeepsyncError, MAX_HASHES_PER_REQUEST, errorMessage, packHashes, sha256Hex, unpackManifest, type Manifest, type RelPath,
} from '@keepsync/protocol';
import type { LocalIndex } from '../index/LocalIndex.js';
import type { LocalFolder, PendingWrite, Expected } from '../folder/LocalFolder.js';
import type { Connection } from '../transport/Connection.js';
import type { Progress } from '../progress.js';

/** Bytes of chunk data fetched per round before they are written. */
const DOWNLOAD_WINDOW = 16 * 1024 * 1024;
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

interface Piece {
  job: number;
  hash: string;
  size: number;
  last: boolean;
}

/**
 * Writes files from manifests: chunks this device already holds are copied
 * from local files (verified), the rest fetched from the server in windows,
 * each verified by hash; every file is checked whole before it is renamed in.
 */
export async function downloadFiles(jobs: DownloadJob[], conn: Connection, index: LocalIndex, folder: LocalFolder, progress: Progress): Promise<void> {
  const writes = new Map<number, { w: PendingWrite; h: ReturnType<typeof createHash>; failed: boolean }>();
  let full: { path: string; err: unknown } | undefined;
  try {
    await download(jobs, conn, index, folder, progress, writes, (path, err) => (full ??= { path, err }));
  } finally {
    // Cut short (a lost connection, a full disk): no temporary file stays behind.
    for (const st of writes.values()) await folder.abort(st.w);
    writes.clear();
  }
  if (full) {
    throw new KeepsyncError('DISK_FULL', `no space left on the disk for ${full.path} (${errorMessage(full.err)}); free some space, the download resumes on the next sync`);
  }
}

/** Errors that mean the disk (or quota) is full: the download is dropped and reported. */
const FULL = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

async function download(
  jobs: DownloadJob[], conn: Connection, index: LocalIndex, folder: LocalFolder, progress: Progress,
  writes: Map<number, { w: PendingWrite; h: ReturnType<typeof createHash>; failed: boolean }>,
  onFull: (path: string, err: unknown) => void,
): Promise<void> {
  const pieces: Piece[] = [];
  jobs.forEach((job, i) => {
    const chunks = unpackManifest(job.manifest);
    chunks.forEach((c, k) => pieces.push({ job: i, hash: c.hash, size: c.size, last: k === chunks.length - 1 }));
  });
  const finish = async (i: number) => {
    const job = jobs[i];
    const st = writes.get(i);
    writes.delete(i);
    if (!st) return;
    if (st.failed || st.h.digest('hex') !== job.hash) {
      await folder.abort(st.w);
      job.onDone(undefined);
      return;
    }
    const stat = await folder.commit(st.w, job.localPath, job.mtime, job.exec, job.expect);
    job.onDone(stat ? { ino: stat.ino, mtime: stat.mtimeMs } : undefined);
  };
  const open = async (i: number) => {
    if (!writes.has(i)) writes.set(i, { w: await folder.begin(jobs[i].localPath), h: createHash('sha256'), failed: false });
    return writes.get(i)!;
  };
  // Empty files have no pieces.
  await parallel(jobs.map((j, i) => ({ j, i })).filter(({ j }) => j.manifest.byteLength === 0), WRITE_PARALLEL, async ({ i }) => {
    try {
      await open(i);
    } catch (err) {
      if (!FULL.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
      onFull(jobs[i].path, err);
      jobs[i].onDone(undefined);
      return;
    }
    await finish(i);
  });

  let start = 0;
  while (start < pieces.length) {
    // A window: pieces whose remote bytes fit the budget.
    const remote = new Map<string, number>();
    let bytes = 0;
    let end = start;
    const local = new Map<string, Buffer>();
    while (end < pieces.length) {
      const p = pieces[end];
      if (!remote.has(p.hash) && !local.has(p.hash)) {
        const data = await readLocal(p.hash, p.size, index, folder);
        if (data) local.set(p.hash, data);
        else {
          if (bytes + p.size > DOWNLOAD_WINDOW && remote.size > 0) break;
          if (remote.size >= MAX_HASHES_PER_REQUEST) break;
          remote.set(p.hash, p.size);
          bytes += p.size;
        }
      }
      end++;
    }
    const fetched = new Map<string, Uint8Array>(local);
    if (remote.size > 0) {
      await conn.getChunks(packHashes([...remote.keys()]), (hash, data) => {
        // A chunk that does not match its hash is dropped: its file fails and is retried later.
        if (!remote.has(hash) || sha256Hex(data) !== hash) return;
        fetched.set(hash, data);
        progress.down(data.byteLength);
      });
    }
    // Append the window's pieces: files in parallel, each file's pieces in order.
    const byJob = new Map<number, Piece[]>();
    for (const p of pieces.slice(start, end)) {
      let list = byJob.get(p.job);
      if (!list) byJob.set(p.job, (list = []));
      list.push(p);
    }
    await parallel([...byJob], WRITE_PARALLEL, async ([i, list]) => {
      let st;
      try {
        st = await open(i);
      } catch (err) {
        if (FULL.has((err as NodeJS.ErrnoException).code ?? '')) onFull(jobs[i].path, err);
        jobs[i].onDone(undefined);
        return;
      }
      for (const p of list) {
        const data = fetched.get(p.hash);
        if (!data) {
          st.failed = true;
        } else if (!st.failed) {
          st.h.update(data);
          try {
            await st.w.fh.write(data);
          } catch (err) {
            st.failed = true;
            if (!FULL.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
            onFull(jobs[i].path, err);
          }
        }
        if (p.last) await finish(i);
      }
    });
    start = end;
  }
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
