import {
  MAX_HASHES_PER_REQUEST, packHashes, unpackHashes, type ChunkRef,
} from '@keepsync/protocol';
import type { LocalFolder } from '../folder/LocalFolder.js';
import type { Connection } from '../transport/Connection.js';
import type { Progress } from '../progress.js';

/** A file whose chunks must be on the server before its put is pushed. */
export interface UploadJob {
  localPath: string;
  chunks: ChunkRef[];
}

/**
 * Uploads the chunks the server lacks, pipelined within the connection's
 * window. Answers the jobs whose chunks all arrived; a job whose file could
 * not be read, or changed so that a chunk no longer matches, is left out.
 * An interrupted upload resumes by asking again what is missing.
 */
export async function uploadChunks(jobs: UploadJob[], conn: Connection, folder: LocalFolder, progress: Progress): Promise<Set<UploadJob>> {
  const all = [...new Set(jobs.flatMap((j) => j.chunks.map((c) => c.hash)))];
  const missing = new Set<string>();
  for (let i = 0; i < all.length; i += MAX_HASHES_PER_REQUEST) {
    const batch = all.slice(i, i + MAX_HASHES_PER_REQUEST);
    const answer = await conn.request({ type: 'has-chunks', id: conn.id(), hashes: packHashes(batch) }, 'missing');
    for (const h of unpackHashes(answer.hashes)) missing.add(h);
  }
  const ok = new Set<UploadJob>(jobs);
  const sent = new Map<string, Promise<void>>();
  const acks: Promise<void>[] = [];
  for (const job of jobs) {
    const jobAcks: Promise<void>[] = [];
    const needed = job.chunks.filter((c) => missing.has(c.hash));
    const file = needed.length > 0 ? await folder.openRead(job.localPath) : undefined;
    if (needed.length > 0 && !file) ok.delete(job);
    try {
      for (const c of file ? needed : []) {
        const already = sent.get(c.hash);
        if (already) {
          jobAcks.push(already);
          continue;
        }
        const data = await file!.read(c.offset, c.size);
        if (!data) {
          ok.delete(job);
          break;
        }
        const { acked } = await conn.putChunk(c.hash, data);
        const counted = acked.then(() => progress.up(c.size));
        counted.catch(() => {}); // handled below, once the job's chunks are all queued
        sent.set(c.hash, counted);
        jobAcks.push(counted);
      }
    } finally {
      await file?.close();
    }
    acks.push(
      Promise.all(jobAcks).then(
        () => undefined,
        () => {
          ok.delete(job);
        },
      ),
    );
  }
  await Promise.all(acks);
  return ok;
}
