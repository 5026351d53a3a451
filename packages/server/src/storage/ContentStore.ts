/**
 * Immutable chunks addressed by their SHA-256 (hex). Implementations: the
 * local disk (FsContentStore); an S3-compatible store can follow the same
 * contract (see test/contentStoreContract.ts).
 */
export interface ContentStore {
  /** The hashes among `hashes` that the store does not hold. */
  missing(hashes: readonly string[]): Promise<string[]>;
  /**
   * Stores a chunk after verifying that `data` hashes to `hash`; throws
   * CHUNK_HASH_MISMATCH otherwise. Storing a chunk that exists is a no-op.
   * The chunk is durable once `flush` resolves; until then it may still
   * show as missing.
   */
  put(hash: string, data: Uint8Array): Promise<void>;
  /** Makes every chunk put so far durable (fsync). Called before an index commit. */
  flush(): Promise<void>;
  /** The chunk's bytes, or undefined when absent. Not verified; callers verify. */
  get(hash: string): Promise<Uint8Array | undefined>;
  /** Removes a chunk. Only the garbage collector may call this. */
  delete(hash: string): Promise<void>;
  /** Every stored hash with its size on disk. */
  list(): AsyncIterable<{ hash: string; size: number }>;
}
