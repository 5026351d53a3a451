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
 * A file that cannot be written here (a full disk, a read-only folder) is
 * dropped with its temporary file while the others go on; the first such
 * failure is then thrown as LOCAL_WRITE_FAILED, and the file comes down
 * again on a later cycle.
 */
export async function downloadFiles(jobs: DownloadJob[], conn: Connection, index: LocalIndex, folder: LocalFolder, progress: Progress): Promise<void> {
  let writeError: { path: string; err: unknown } | undefined;
  const failed = (i: number, err: unknown) => {
    // The disk's trouble is reported; anything else (the target's place taken meanwhile) is retried quietly.
    if (DISK_ERRORS.has((err as NodeJS.ErrnoException).code ?? '')) writeError ??= { path: jobs[i].path, err };
  };
  const pieces: Piece[] = [];
  jobs.forEach((job, i) => {
    const chunks = unpackManifest(job.manifest);
    chunks.forEach((c, k) => pieces.push({ job: i, hash: c.hash, size: c.size, last: k === chunks.length - 1 }));
  });
  const writes = new Map<number, { w: PendingWrite; h: ReturnType<typeof createHash>; failed: boolean }>();
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
    let stat;
    try {
      stat = await folder.commit(st.w, job.localPath, job.mtime, job.exec, job.expect);
    } catch (err) {
      failed(i, err);
    }
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
      failed(i, err);
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
        failed(i, err);
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
            // Out of space or no longer writable: drop the temporary file now, not at the end.
            st.failed = true;
            failed(i, err);
            await folder.abort(st.w);
          }
        }
        if (p.last) await finish(i);
      }
    });
    start = end;
  }
  if (writeError) {
    throw new KeepsyncError('LOCAL_WRITE_FAILED', `cannot write ${writeError.path}: ${describeWriteError(writeError.err)}; it is downloaded again on the next try`);
  }
}

/** Errors of the disk itself, which no retry within this cycle can fix. */
const DISK_ERRORS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EIO']);

function describeWriteError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return 'no space left on the disk; free some space';
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
