import {
  KeepsyncError, MAX_HASHES_PER_REQUEST, isKeepsyncError, packHashes, unpackHashes, type ChunkRef,
} from '@keepsync/protocol';
import type { LocalFolder } from '../folder/LocalFolder.js';
import type { Connection } from '../transport/Connection.js';
import type { Progress } from '../progress.js';

/** Chunk reads started ahead of the one being sent: at most this many, and this many bytes. */
const READ_AHEAD = 16;
const READ_AHEAD_BYTES = 4 * 1024 * 1024;

/** A file whose chunks must be on the server before its put is pushed. */
export interface UploadJob {
  localPath: string;
  /** The file's inode when it was hashed: a file replaced since is not read. */
  ino: number;
  chunks: ChunkRef[];
}

/**
 * Uploads the chunks the server lacks, pipelined within the connection's
 * window. Answers the jobs whose chunks all arrived; a job whose file could
 * not be read, or changed so that a chunk no longer matches, is left out.
 * `refused` tells when the server could not store chunks (its storage
 * failed): nothing to retry at once.
 * An interrupted upload resumes by asking again what is missing.
 */
export async function uploadChunks(
  jobs: UploadJob[], conn: Connection, folder: LocalFolder, progress: Progress,
): Promise<{ uploaded: Set<UploadJob>; refused?: KeepsyncError }> {
  let refused: KeepsyncError | undefined;
  const all = [...new Set(jobs.flatMap((j) => j.chunks.map((c) => c.hash)))];
  const missing = new Set<string>();
  for (let i = 0; i < all.length; i += MAX_HASHES_PER_REQUEST) {
    const batch = all.slice(i, i + MAX_HASHES_PER_REQUEST);
    const answer = await conn.request({ type: 'has-chunks', id: conn.id(), hashes: packHashes(batch) }, 'missing');
    for (const h of unpackHashes(answer.hashes)) missing.add(h);
  }
  const ok = new Set<UploadJob>(jobs);
  const sent = new Map<string, Promise<void>>();
  const jobAcks = new Map<UploadJob, Promise<void>[]>(jobs.map((j) => [j, []]));
  // Each missing chunk once, in job order; reads run a little ahead of the sends.
  const reads: Array<{ job: UploadJob; chunk: ChunkRef; data?: Promise<Buffer | undefined> }> = [];
  const queued = new Set<string>();
  for (const job of jobs) {
    for (const c of job.chunks) {
      if (!missing.has(c.hash)) continue;
      if (queued.has(c.hash)) continue;
      queued.add(c.hash);
      reads.push({ job, chunk: c });
    }
  }
  // One open handle per file, closed after its last chunk is read.
  const left = new Map<UploadJob, number>();
  for (const r of reads) left.set(r.job, (left.get(r.job) ?? 0) + 1);
  const files = new Map<UploadJob, ReturnType<LocalFolder['openRead']>>();
  const readChunk = async (job: UploadJob, c: ChunkRef): Promise<Buffer | undefined> => {
    let file = files.get(job);
    if (!file) files.set(job, (file = folder.openRead(job.localPath, job.ino)));
    try {
      return await (await file)?.read(c.offset, c.size);
    } finally {
      const n = left.get(job)! - 1;
      left.set(job, n);
      if (n === 0) {
        files.delete(job);
        await (await file)?.close();
      }
    }
  };
  let ahead = 0;
  let aheadBytes = 0;
  const readAhead = (from: number) => {
    for (let k = from + ahead; k < reads.length && ahead < READ_AHEAD && (ahead === 0 || aheadBytes < READ_AHEAD_BYTES); k++) {
      const r = reads[k];
      r.data = readChunk(r.job, r.chunk);
      ahead++;
      aheadBytes += r.chunk.size;
    }
  };
  for (let i = 0; i < reads.length; i++) {
    readAhead(i);
    const r = reads[i];
    const data = await r.data!;
    r.data = undefined;
    ahead--;
    aheadBytes -= r.chunk.size;
    if (!ok.has(r.job)) continue;
    if (!data) {
      ok.delete(r.job);
      continue;
    }
    const { acked } = await conn.putChunk(r.chunk.hash, data);
    const counted = acked.then(() => progress.up(r.chunk.size));
    counted.catch(() => {}); // handled below, once every chunk is queued
    sent.set(r.chunk.hash, counted);
  }
  for (const job of jobs) {
    for (const c of job.chunks) {
      const p = sent.get(c.hash);
      if (p) jobAcks.get(job)!.push(p);
      else if (missing.has(c.hash)) ok.delete(job); // its read failed in another job
    }
  }
  const acks = jobs.map((job) =>
    Promise.all(jobAcks.get(job)!).then(
      () => undefined,
      (err: unknown) => {
        ok.delete(job);
        if (isKeepsyncError(err) && err.code === 'STORAGE') refused ??= err;
      },
    ),
  );
  await Promise.all(acks);
  return { uploaded: ok, refused };
}
