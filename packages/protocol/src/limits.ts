/** Protocol version spoken by this build. A peer with another version is refused. */
export const PROTOCOL_VERSION = 1;

/** Largest control frame (everything but chunk data). */
export const MAX_CONTROL_FRAME = 1024 * 1024;
/** Largest chunk the chunker can produce (the largest size class). */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
/** Largest frame of any kind: a chunk plus its envelope. */
export const MAX_FRAME = MAX_CHUNK_SIZE + 64 * 1024;
/** Longest path on the wire, in UTF-8 bytes. */
export const MAX_PATH_BYTES = 2048;
/** Longest single name (path segment), in UTF-8 bytes, as on common file systems. */
export const MAX_NAME_BYTES = 255;
/** Most operations in one push. */
export const MAX_OPS_PER_PUSH = 2000;
/** Most hashes in one chunk query or chunk request. */
export const MAX_HASHES_PER_REQUEST = 4096;
/** Most entries in one page of changes. */
export const CHANGES_PAGE_SIZE = 2000;
/** Manifests with at most this many chunks travel inline in the changes feed. */
export const INLINE_MANIFEST_CHUNKS = 16;
/** Most chunks in one manifest (about 100 GiB at the largest size class). */
export const MAX_MANIFEST_CHUNKS = 25000;
/**
 * Both sides ping this often. The server cuts a device it received no byte
 * from over a whole interval (a dead peer is found within two intervals, 20 s).
 */
export const HEARTBEAT_INTERVAL_MS = 10_000;
/**
 * A device drops a connection on which no byte arrived for this long (under
 * 30 s with its check). Bytes, not frames: a 16 MiB chunk on a slow line
 * takes minutes to arrive whole, and the link is alive all along.
 */
export const DEAD_PEER_MS = 20_000;
/**
 * A device gives up on a request when, for this long, nothing moved toward
 * its answer: no byte of a frame other than heartbeats and notices arrived,
 * and none of the device's own bytes left for the server. Silence, not total
 * time: a large chunk over a slow line takes minutes and is never cut while
 * its bytes flow. Generous, for a busy NAS committing a large push.
 */
export const REQUEST_SILENCE_MS = 120_000;
/** A handshake (hello) must arrive within this time. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Largest version id a peer may name: ids are 32-bit integers in the index database. */
export const MAX_VERSION_ID = 2 ** 31 - 1;
