/**
 * Immutable chunks addressed by their SHA-256 (hex). Implementations: the
 * local disk (FsContentStore); an S3-compatible store can follow the same
 * contract (see test/contentStoreContract.ts).
 */
export interface ContentStore {
  /**
   * The hashes among `hashes` that the store does not hold. Every chunk it
   * finds counts as used now (see `deleteUnused`): a device told that a chunk
   * is present may name it in a push a moment later.
   */
  missing(hashes: readonly string[]): Promise<string[]>;
  /**
   * Stores a chunk after verifying that `data` hashes to `hash`; throws
   * CHUNK_HASH_MISMATCH otherwise. Storing a chunk that exists only marks it
   * as used now.
   * The chunk is durable once `flush` resolves.
   */
  put(hash: string, data: Uint8Array): Promise<void>;
  /** Makes every chunk put so far durable (fsync). Called before an index commit. */
  flush(): Promise<void>;
  /** The chunk's bytes, or undefined when absent. Not verified; callers verify. */
  get(hash: string): Promise<Uint8Array | undefined>;
  /** Removes a chunk. Only the garbage collector may call this. */
  delete(hash: string): Promise<void>;
  /**
   * Removes a chunk unless it was used (stored, or found by `missing`) at or
   * after `unusedSince` (ms since the epoch), or is being used right now.
   * A `missing` or `put` that starts while the removal runs waits for it and
   * then sees the chunk as absent. Answers the bytes freed (0 when kept or
   * already gone). Only the garbage collector may call this.
   */
  deleteUnused(hash: string, unusedSince: number): Promise<number>;
  /** Every stored hash with its size and when it was last used (ms since the epoch). */
  list(): AsyncIterable<StoredChunk>;
  /** How many chunks the store holds and their bytes; exact after a `list` has run to its end. */
  usage(): Promise<{ chunks: number; bytes: number }>;
}

/** A chunk as `ContentStore.list` reports it. */
export interface StoredChunk {
  hash: string;
  size: number;
  usedAt: number;
}
