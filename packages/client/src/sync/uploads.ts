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
  /** The file's bytes when they were kept from hashing (the chunks are cut from them). */
  data?: Buffer;
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
  const missing = await missingOf(conn, [...new Set(jobs.flatMap((j) => j.chunks.map((c) => c.hash)))]);
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
    if (job.data) return job.data.subarray(c.offset, c.offset + c.size);
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
    const { stored: counted } = await sendChunk(conn, progress, r.chunk, data);
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

/** Asks the server which of `hashes` it lacks. */
async function missingOf(conn: Connection, hashes: string[]): Promise<Set<string>> {
  const missing = new Set<string>();
  for (let i = 0; i < hashes.length; i += MAX_HASHES_PER_REQUEST) {
    const answer = await conn.request({ type: 'has-chunks', id: conn.id(), hashes: packHashes(hashes.slice(i, i + MAX_HASHES_PER_REQUEST)) }, 'missing');
    for (const h of unpackHashes(answer.hashes)) missing.add(h);
  }
  return missing;
}

/**
 * Sends a chunk once the connection's window has room; `stored` settles
 * when the server has stored it (counted as progress then).
 */
async function sendChunk(conn: Connection, progress: Progress, chunk: ChunkRef, data: Uint8Array): Promise<{ stored: Promise<void> }> {
  const { acked } = await conn.putChunk(chunk.hash, data);
  return { stored: acked.then(() => progress.up(chunk.size)) };
}

/** Chunks gathered before the server is asked which of them it lacks. */
const EAGER_BATCH_BYTES = 2 * 1024 * 1024;
const EAGER_BATCH_CHUNKS = 32;
/** Bytes of chunks asked about and not yet sent, at most: hashing waits beyond. */
const EAGER_AHEAD_BYTES = 64 * 1024 * 1024;

/**
 * Sends a large file's chunks while it is still being hashed, so that reading
 * and hashing overlap the transfer instead of coming before it. The server is
 * asked about batches of chunks as they are found, well ahead of the upload
 * (its answer queues behind the chunks in flight), and the missing ones are
 * read again from the file (from the page cache, usually) and sent, so no
 * chunk waits in memory. What the chunks belong to is decided after planning;
 * a chunk nothing refers to is collected on the server later. Failures only
 * end the head start: the upload after planning sends what is missing.
 */
export class EagerUpload {
  private batch: ChunkRef[] = [];
  private batchBytes = 0;
  /** Batches asked about, in order, with the server's answer to come. */
  private readonly asked: Array<{ chunks: ChunkRef[]; bytes: number; missing: Promise<Set<string> | undefined> }> = [];
  private aheadBytes = 0;
  private aheadWaiters: Array<() => void> = [];
  private sender: Promise<void> | undefined;
  /** Wakes the sender when it waits for a batch. */
  private wake: (() => void) | undefined;
  private readonly acks: Array<Promise<void>> = [];
  /** Sent already, so that content repeated in the file goes once. */
  private readonly sent = new Set<string>();
  private failed = false;
  private done = false;

  constructor(
    private readonly conn: Connection,
    private readonly folder: LocalFolder,
    private readonly localPath: string,
    /** The file's inode when it was looked at: a file replaced since is not read. */
    private readonly ino: number,
    private readonly progress: Progress,
    /** Chunks known to be on the server (those of the version last synced): not asked about. */
    private readonly known: ReadonlySet<string> = new Set(),
  ) {}

  readonly add = async (chunk: ChunkRef): Promise<void> => {
    if (this.failed || this.known.has(chunk.hash)) return;
    this.batch.push(chunk);
    this.batchBytes += chunk.size;
    if (this.batchBytes >= EAGER_BATCH_BYTES || this.batch.length >= EAGER_BATCH_CHUNKS) this.ask();
    while (this.aheadBytes > EAGER_AHEAD_BYTES && !this.failed) await new Promise<void>((r) => this.aheadWaiters.push(r));
  };

  private ask(): void {
    const chunks = this.batch;
    const bytes = this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    const missing = missingOf(this.conn, chunks.map((c) => c.hash)).catch(() => undefined);
    this.asked.push({ chunks, bytes, missing });
    this.aheadBytes += bytes;
    this.sender ??= this.sendAll();
    this.wakeSender();
  }

  private wakeSender(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Sends the missing chunks of the batches asked about, in order, with one file handle. */
  private async sendAll(): Promise<void> {
    const file = await this.folder.openRead(this.localPath, this.ino);
    try {
      for (;;) {
        const next = this.asked.shift();
        if (!next) {
          if (this.done) return;
          await new Promise<void>((r) => (this.wake = r));
          continue;
        }
        const missing = file && !this.failed ? await next.missing : undefined;
        if (!missing) this.failed = true;
        for (const c of next.chunks) {
          if (this.failed || !missing!.has(c.hash) || this.sent.has(c.hash)) continue;
          const data = await file!.read(c.offset, c.size);
          if (!data) {
            this.failed = true;
            break;
          }
          this.sent.add(c.hash);
          this.acks.push((await sendChunk(this.conn, this.progress, c, data)).stored.catch(() => {}));
        }
        this.aheadBytes -= next.bytes;
        for (const w of this.aheadWaiters.splice(0)) w();
      }
    } catch {
      this.failed = true;
      for (const w of this.aheadWaiters.splice(0)) w();
    } finally {
      await file?.close();
    }
  }

  /** Sends what is left and waits until the server has stored every chunk sent. */
  async finish(): Promise<void> {
    if (this.batch.length > 0 && !this.failed) this.ask();
    this.done = true;
    this.wakeSender();
    await this.sender;
    await Promise.all(this.acks);
  }
}
