import { createHash, type Hash } from 'node:crypto';
import fsp from 'node:fs/promises';
import { KeepsyncError, TEMP_PREFIX, errorMessage, isKeepsyncError, parallel, sha256Hex, unpackManifest, type Manifest, type RelPath } from '@keepsync/protocol';
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
  onDone(result: { ino: number; mtime: number; ctime: number } | undefined): void;
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

/** KEEPSYNC_TRACE=1 logs each download resumed from a temporary file an earlier run left, and each one given up with why. */
const TRACE = process.env.KEEPSYNC_TRACE === '1';

/**
 * The name (after `.keepsync-`) of the temporary file that downloads `hash`
 * to `localPath`. The same in every run, so that a run after a crash (a
 * killed process, a power cut) finds the chunks the last one wrote.
 */
export function downloadTempName(localPath: string, hash: string): string {
  return sha256Hex(Buffer.from(`${localPath}\0${hash}`, 'utf8')).slice(0, 32);
}

/** True for a file name `downloadTempName` gives (with its `.keepsync-` prefix). */
export function isDownloadTemp(fileName: string): boolean {
  return fileName.startsWith(TEMP_PREFIX) && /^[0-9a-f]{32}$/.test(fileName.slice(TEMP_PREFIX.length));
}

/**
 * Downloads cut off by a lost connection, kept so that the next attempt
 * (after reconnecting) goes on from the last chunk written instead of from
 * the start. Every chunk in a partial file was verified against its hash.
 * Temporary files an earlier process left (it was killed) are resumed too,
 * once the chunks at their start are verified again; those no download of
 * the next cycle wants are removed.
 */
export class PartialDownloads {
  private readonly byPath = new Map<string, Partial>();
  /** Temporary files of an earlier run (absolute paths), not yet resumed or removed. */
  private readonly leftovers = new Set<string>();

  constructor(private readonly folder: LocalFolder) {}

  /** Takes in download temporary files an earlier run left (absolute paths, see `LocalFolder.cleanTemps`). */
  adoptLeftovers(absTemps: string[]): void {
    for (const t of absTemps) this.leftovers.add(t);
  }

  /** The partial file for this download when it holds the same content; any other is dropped. */
  async take(job: DownloadJob): Promise<Partial | undefined> {
    const p = this.byPath.get(job.localPath);
    if (!p) return this.resumeLeftover(job);
    this.byPath.delete(job.localPath);
    if (p.hash === job.hash) return p;
    await this.folder.abort(p.w);
    return this.resumeLeftover(job);
  }

  /**
   * The temporary file an earlier run left for this very download, with the
   * chunks at its start that match the manifest; the bytes after the first
   * chunk that does not match are cut off (nothing unverified is kept).
   */
  private async resumeLeftover(job: DownloadJob): Promise<Partial | undefined> {
    if (this.leftovers.size === 0) return undefined;
    const name = downloadTempName(job.localPath, job.hash);
    if (!this.leftovers.delete(this.folder.tempPath(job.localPath, name))) return undefined;
    const w = await this.folder.reopen(job.localPath, name);
    if (!w) return undefined;
    try {
      const size = (await w.fh.stat()).size;
      const p: Partial = { hash: job.hash, w, h: createHash('sha256'), pieces: 0, bytes: 0 };
      for (const c of unpackManifest(job.manifest)) {
        if (p.bytes + c.size > size) break;
        const data = Buffer.allocUnsafe(c.size);
        const { bytesRead } = await w.fh.read(data, 0, c.size, p.bytes);
        if (bytesRead !== c.size || sha256Hex(data) !== c.hash) break;
        p.h.update(data);
        p.pieces++;
        p.bytes += c.size;
      }
      await w.fh.truncate(p.bytes);
      if (TRACE) process.stderr.write(`keepsync trace: resuming ${job.path} after ${p.pieces} verified chunks (${p.bytes} of ${size} bytes kept)\n`);
      return p;
    } catch {
      await this.folder.abort(w);
      return undefined;
    }
  }

  keep(localPath: string, p: Partial): void {
    this.byPath.set(localPath, p);
  }

  /** True when `absTemp` is the temporary file of a kept partial download or of an earlier run's. */
  holds(absTemp: string): boolean {
    if (this.leftovers.has(absTemp)) return true;
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

  /** Removes the earlier run's temporary files that no download took (a cycle went through without wanting them). */
  async dropLeftovers(): Promise<void> {
    for (const t of [...this.leftovers]) {
      this.leftovers.delete(t);
      await this.folder.removeKeptTemp(t);
    }
  }

  /** Removes every partial file (the sync is stopping). */
  async clear(): Promise<void> {
    await this.retain(new Set());
    await this.dropLeftovers();
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
    const p = await partials.take(job);
    if (p) resumed.set(i, p);
  }
  // Chunks the index knows a local copy of are read here; the rest come from the server, in file order.
  const fetcher = new ChunkFetcher(conn, (data) => progress.down(data.byteLength));
  const manifests = jobs.map((job) => unpackManifest(job.manifest));
  const held = index.chunksHeld(manifests.flatMap((m) => m.map((c) => c.hash)));
  const pieces = manifests.map((chunks, i) =>
    chunks.map((c, k) => ({
      ...c,
      occ: k < (resumed.get(i)?.pieces ?? 0) || held.has(c.hash) ? -1 : fetcher.plan(c.hash, c.size),
    })),
  );
  fetcher.start();

  let lost: unknown;
  let writeError: { path: string; err: unknown } | undefined;
  /** Content from the server that is not what it named: a damaged or hostile server, never written. */
  let badContent: string | undefined;
  /** Files that found the disk full while others were being written at the same time, with the error. */
  const full = new Map<number, unknown>();
  let retrying = false;
  const failedWrite = (i: number, err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (FULL_DISK.has(code) && !retrying) full.set(i, err);
    // The disk's trouble is reported; anything else (the target's place taken meanwhile) is retried quietly.
    else if (DISK_ERRORS.has(code)) writeError ??= { path: jobs[i].path, err };
  };
  const one = async (i: number) => {
    const job = jobs[i];
    let st: Partial | undefined = resumed.get(i);
    let failed = false;
    try {
      st ??= { hash: job.hash, w: await folder.begin(job.localPath, downloadTempName(job.localPath, job.hash)), h: createHash('sha256'), pieces: 0, bytes: 0 };
      for (const c of pieces[i].slice(st.pieces)) {
        const data = c.occ >= 0 ? await fetcher.get(c.occ) : (await readLocal(c.hash, c.size, index, folder)) ?? (await fetcher.fetchOne(c.hash));
        const written = st.w.fh.write(data, 0, data.byteLength, st.bytes);
        st.h.update(data);
        await written;
        st.pieces++;
        st.bytes += data.byteLength;
      }
    } catch (err) {
      if (TRACE) process.stderr.write(`keepsync trace: download of ${job.path} stopped: ${errorMessage(err)}\n`);
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
    const settled = () => !full.has(i) || retrying;
    if (!st) {
      if (settled()) job.onDone(undefined);
      return;
    }
    if (failed || st.h.digest('hex') !== job.hash) {
      if (!failed) badContent ??= job.path;
      await folder.abort(st.w);
      // A full disk: looked at again below, once the others' temporary files are gone.
      if (settled()) job.onDone(undefined);
      return;
    }
    let stat;
    try {
      stat = await folder.commit(st.w, job.localPath, job.mtime, job.exec, job.expect);
      if (TRACE && !stat) process.stderr.write(`keepsync trace: download of ${job.path} not placed: the file there changed meanwhile\n`);
    } catch (err) {
      if (TRACE) process.stderr.write(`keepsync trace: download of ${job.path} not placed: ${errorMessage(err)}\n`);
      failedWrite(i, err);
    }
    if (stat || settled()) job.onDone(stat ? { ino: stat.ino, mtime: stat.mtimeMs, ctime: stat.ctimeMs } : undefined);
  };
  try {
    await parallel(jobs.map((_, i) => i), WRITE_PARALLEL, one);
    // A full disk fails every file being written at that moment, small ones too. With
    // the failed files' temporary files gone, those that fit now are written one at a
    // time, smallest first; the others wait for the next try.
    retrying = true;
    const sizes = new Map([...full.keys()].map((i) => [i, pieces[i].reduce((n, c) => n + c.size, 0)]));
    for (const i of [...full.keys()].sort((a, b) => sizes.get(a)! - sizes.get(b)!)) {
      if (lost !== undefined || badContent !== undefined || writeError || !(await roomFor(folder.root, sizes.get(i)!))) {
        writeError ??= { path: jobs[i].path, err: full.get(i) };
        jobs[i].onDone(undefined);
        continue;
      }
      for (const c of pieces[i]) c.occ = -1;
      resumed.delete(i);
      await one(i);
    }
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

/** The disk is full: a file that failed on it may fit once others' temporary files are gone. */
const FULL_DISK = new Set(['ENOSPC', 'EDQUOT']);

/** Whether the disk holding `dir` has room for `bytes` more, with a margin; yes when it cannot tell. */
async function roomFor(dir: string, bytes: number): Promise<boolean> {
  try {
    const st = await fsp.statfs(dir);
    return st.bavail * st.bsize > bytes + 1024 * 1024;
  } catch {
    return true;
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
