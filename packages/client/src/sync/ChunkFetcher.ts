import { KeepsyncError, MAX_HASHES_PER_REQUEST, packHashes, sha256Hex } from '@keepsync/protocol';
import type { Connection } from '../transport/Connection.js';

/**
 * Bytes of chunks requested or received but not yet written, at most: a
 * long, fast link stays full (8 MiB is 100 ms at 670 Mbit/s) while memory
 * stays bounded whatever the file size.
 */
const WINDOW = 8 * 1024 * 1024;
/** Bytes asked for in one get-chunks request. */
const BATCH = 1024 * 1024;

interface Held {
  size: number;
  /** Scheduled uses not yet consumed; the data is dropped at 0. */
  uses: number;
  data?: Uint8Array;
  error?: unknown;
  waiters: Array<() => void>;
}

/**
 * Streams chunks from the server in the order they will be written, a
 * window ahead of the writer. Each planned use of a chunk (an occurrence)
 * is consumed once with `get` or skipped with `release`; a chunk used again
 * soon after is fetched once, one used again much later is fetched again
 * rather than held. Every chunk is verified against its hash on arrival.
 */
export class ChunkFetcher {
  /** Every planned occurrence; `skipped` once it was consumed or given up. */
  private readonly order: Array<{ hash: string; size: number; skipped: boolean }> = [];
  /** Occurrences before this index have been scheduled. */
  private scheduled = 0;
  private readonly held = new Map<string, Held>();
  private heldBytes = 0;
  private failed: unknown;
  private stopped = false;
  private scheduleWaiters: Array<() => void> = [];

  constructor(
    private readonly conn: Connection,
    private readonly onArrived: (data: Uint8Array) => void,
  ) {}

  /** Registers the next use of a chunk; answers the occurrence to `get` or `release` later. */
  plan(hash: string, size: number): number {
    this.order.push({ hash, size, skipped: false });
    return this.order.length - 1;
  }

  start(): void {
    this.pump();
  }

  /** Stops scheduling; waiting gets fail. */
  stop(): void {
    this.stopped = true;
    this.fail(new KeepsyncError('UNAVAILABLE', 'the download was stopped'));
  }

  /** The verified bytes of occurrence `occ`; rejects when it cannot be had (lost connection, bad chunk). */
  async get(occ: number): Promise<Uint8Array> {
    while (occ >= this.scheduled) {
      if (this.failed !== undefined) throw this.failed;
      await new Promise<void>((r) => this.scheduleWaiters.push(r));
    }
    const { hash } = this.order[occ];
    const h = this.held.get(hash);
    if (!h) throw new Error(`bug: chunk ${hash} scheduled but not held`);
    while (h.data === undefined && h.error === undefined) await new Promise<void>((r) => h.waiters.push(r));
    const { data, error } = h;
    this.order[occ].skipped = true;
    this.consume(hash, h);
    if (error !== undefined) throw error;
    return data!;
  }

  /** Gives up occurrence `occ` without reading it (its file failed or stopped). */
  release(occ: number): void {
    const o = this.order[occ];
    if (occ >= this.scheduled) {
      o.skipped = true;
      return;
    }
    const h = this.held.get(o.hash);
    if (h && !o.skipped) {
      o.skipped = true;
      this.consume(o.hash, h);
    }
  }

  /** Fetches one chunk outside the plan (a local copy turned out to have changed). */
  async fetchOne(hash: string): Promise<Uint8Array> {
    let got: Uint8Array | undefined;
    await this.conn.getChunks(packHashes([hash]), (h, data) => {
      if (h === hash && sha256Hex(data) === hash) got = data;
    });
    if (!got) throw new KeepsyncError('CHUNK_HASH_MISMATCH', `chunk ${hash} from the server does not match its hash`);
    this.onArrived(got);
    return got;
  }

  private consume(hash: string, h: Held): void {
    if (--h.uses > 0) return;
    this.held.delete(hash);
    this.heldBytes -= h.size;
    this.pump();
  }

  private pump(): void {
    if (this.stopped || this.failed !== undefined) return;
    // Asks again once a batch fits in the window: consuming one small chunk
    // at a time must not turn into one request per chunk.
    if (this.heldBytes > 0 && WINDOW - this.heldBytes < BATCH) return;
    let batch: string[] = [];
    let batchBytes = 0;
    while (this.scheduled < this.order.length && (this.heldBytes < WINDOW || this.heldBytes === 0)) {
      const o = this.order[this.scheduled++];
      if (o.skipped) continue;
      const h = this.held.get(o.hash);
      if (h) {
        h.uses++;
        continue;
      }
      this.held.set(o.hash, { size: o.size, uses: 1, waiters: [] });
      this.heldBytes += o.size;
      batch.push(o.hash);
      batchBytes += o.size;
      if (batchBytes >= BATCH || batch.length >= MAX_HASHES_PER_REQUEST) {
        this.request(batch, batchBytes);
        batch = [];
        batchBytes = 0;
      }
    }
    if (batch.length > 0) this.request(batch, batchBytes);
    for (const w of this.scheduleWaiters.splice(0)) w();
  }

  private request(hashes: string[], bytes: number): void {
    // A download rate limit holds requests back, not the socket: pings still flow.
    const wait = this.conn.downloadLimit?.take(bytes) ?? 0;
    if (wait > 0) {
      setTimeout(() => this.send(hashes), wait);
      return;
    }
    this.send(hashes);
  }

  private send(hashes: string[]): void {
    if (this.failed !== undefined) return;
    const wanted = new Set(hashes);
    const settle = (hash: string, value: { data?: Uint8Array; error?: unknown }) => {
      const h = this.held.get(hash);
      if (!h || h.data !== undefined || h.error !== undefined) return;
      Object.assign(h, value);
      for (const w of h.waiters.splice(0)) w();
    };
    this.conn
      .getChunks(packHashes(hashes), (hash, data) => {
        // A chunk that does not match its hash never reaches a file.
        if (!wanted.has(hash) || sha256Hex(data) !== hash) return;
        wanted.delete(hash);
        this.onArrived(data);
        settle(hash, { data });
      })
      .then(
        () => {
          for (const hash of wanted) settle(hash, { error: new KeepsyncError('CHUNK_HASH_MISMATCH', `chunk ${hash} from the server does not match its hash`) });
        },
        (err) => {
          for (const hash of wanted) settle(hash, { error: err });
          if (this.conn.closed) this.fail(err);
        },
      );
  }

  private fail(err: unknown): void {
    this.failed ??= err;
    for (const h of this.held.values()) {
      if (h.data === undefined && h.error === undefined) {
        h.error = this.failed;
        for (const w of h.waiters.splice(0)) w();
      }
    }
    for (const w of this.scheduleWaiters.splice(0)) w();
  }
}
