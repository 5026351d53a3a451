import { decode, encode } from '@msgpack/msgpack';
import { ProtocolError } from './errors.js';
import { MAX_CHUNK_SIZE, MAX_CONTROL_FRAME, MAX_FRAME, MAX_HASHES_PER_REQUEST, MAX_OPS_PER_PUSH, MAX_VERSION_ID } from './limits.js';
import { manifestSize, validateManifest } from './manifest.js';
import type { ClientMessage, Entry, EntryKind, ManifestRef, Op, OpResult, ServerMessage } from './messages.js';
import { parseRelPath, type RelPath } from './paths.js';

/** Room before the bytes of a `chunkDataBuffer` for the header of the frame that sends them. */
const CHUNK_HEADROOM = 128;
/** Views made by `chunkDataBuffer` whose headroom no frame has used yet. */
const withHeadroom = new WeakSet<Uint8Array>();
const EMPTY = new Uint8Array(0);

/**
 * A buffer for `size` bytes of chunk data, with room before it for a frame
 * header: a chunk read into it goes out as a `put-chunk` or `chunk-data`
 * frame without being copied (a copy per chunk is a second allocation of
 * its size, and the garbage collector's work).
 */
export function chunkDataBuffer(size: number): Buffer {
  const view = Buffer.allocUnsafe(CHUNK_HEADROOM + size).subarray(CHUNK_HEADROOM);
  withHeadroom.add(view);
  return view;
}

/** Encodes a message as one msgpack frame. */
export function encodeMessage(msg: ClientMessage | ServerMessage): Uint8Array {
  const data = (msg as { data?: Uint8Array }).data;
  if (data && withHeadroom.has(data)) {
    const frame = frameAroundData(msg as ClientMessage & { data: Uint8Array });
    if (frame) return frame;
  }
  // Sized for the chunk up front: no growing and copying of a large buffer per chunk.
  return encode(msg, { ignoreUndefined: true, initialBufferSize: data ? data.byteLength + 512 : 2048 });
}

/**
 * The frame of a message whose data lies in a `chunkDataBuffer`: its header is
 * written into the headroom, the data stays where it is. The data goes
 * last, as a bin 32 (whatever its size), so the header is the message
 * encoded with empty data and that empty bin's two bytes replaced. Each
 * buffer's headroom serves one frame (a frame still queued keeps it).
 */
function frameAroundData(msg: { data: Uint8Array }): Uint8Array | undefined {
  const { data, ...rest } = msg;
  withHeadroom.delete(data);
  const empty = encode({ ...rest, data: EMPTY }, { ignoreUndefined: true });
  const headerLength = empty.byteLength - 2 + 5;
  if (empty[empty.byteLength - 2] !== 0xc4 || empty[empty.byteLength - 1] !== 0 || headerLength > CHUNK_HEADROOM) return undefined;
  const frame = new Uint8Array(data.buffer, data.byteOffset - headerLength, headerLength + data.byteLength);
  frame.set(empty.subarray(0, empty.byteLength - 2));
  const bin = headerLength - 5;
  frame[bin] = 0xc6;
  new DataView(frame.buffer, frame.byteOffset + bin + 1, 4).setUint32(0, data.byteLength);
  return frame;
}

type Obj = Record<string, unknown>;

function fail(message: string): never {
  throw new ProtocolError('FRAME_INVALID', message);
}

function parseFrame(bytes: Uint8Array): Obj {
  if (bytes.byteLength > MAX_FRAME) throw new ProtocolError('FRAME_TOO_LARGE', 'frame too large');
  let value: unknown;
  try {
    value = decode(bytes, { maxStrLength: MAX_CONTROL_FRAME, maxBinLength: MAX_CHUNK_SIZE, maxArrayLength: 100_000, maxMapLength: 64, maxExtLength: 0 });
  } catch {
    fail('frame is not valid msgpack');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) fail('frame is not a map');
  const msg = value as Obj;
  if (typeof msg.type !== 'string') fail('frame has no type');
  // Everything but chunk data must fit a control frame.
  if (msg.type !== 'put-chunk' && msg.type !== 'chunk-data' && bytes.byteLength > MAX_CONTROL_FRAME) {
    throw new ProtocolError('FRAME_TOO_LARGE', `${msg.type} frame too large`);
  }
  return msg;
}

const str = (o: Obj, k: string, max = 1024): string => {
  const v = o[k];
  if (typeof v !== 'string' || v.length > max) fail(`${k} must be a string of at most ${max} characters`);
  return v;
};
const int = (o: Obj, k: string, min = 0, max = Number.MAX_SAFE_INTEGER): number => {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) fail(`${k} must be an integer`);
  return v;
};
const num = (o: Obj, k: string): number => {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${k} must be a number`);
  return v;
};
const bool = (o: Obj, k: string): boolean => {
  const v = o[k];
  if (typeof v !== 'boolean') fail(`${k} must be a boolean`);
  return v;
};
const bytes = (o: Obj, k: string, max: number): Uint8Array => {
  const v = o[k];
  if (!(v instanceof Uint8Array) || v.byteLength > max) fail(`${k} must be bytes`);
  return v;
};
const obj = (o: Obj, k: string): Obj => {
  const v = o[k];
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) fail(`${k} must be a map`);
  return v as Obj;
};
const arr = (o: Obj, k: string, max: number): unknown[] => {
  const v = o[k];
  if (!Array.isArray(v) || v.length > max) fail(`${k} must be a list of at most ${max}`);
  return v;
};
const path = (o: Obj, k: string): RelPath => parseRelPath(o[k]);
const kind = (o: Obj, k: string): EntryKind => {
  const v = o[k];
  if (v !== 'file' && v !== 'dir') fail(`${k} must be "file" or "dir"`);
  return v;
};
const hex64 = (o: Obj, k: string, allowEmpty = false): string => {
  const v = o[k];
  if (typeof v !== 'string' || !(/^[0-9a-f]{64}$/.test(v) || (allowEmpty && v === ''))) fail(`${k} must be a SHA-256 in hex`);
  return v;
};
const hashList = (o: Obj, k: string): Uint8Array => {
  const v = bytes(o, k, 32 * MAX_HASHES_PER_REQUEST);
  if (v.byteLength % 32 !== 0) fail(`${k} must be whole 32-byte hashes`);
  return v;
};
const hash32 = (o: Obj, k: string): Uint8Array => {
  const v = bytes(o, k, 32);
  if (v.byteLength !== 32) fail(`${k} must be a 32-byte hash`);
  return v;
};

function manifestRef(o: Obj): ManifestRef {
  if (o.full !== undefined) return { full: validateManifest(o.full) };
  const d = obj(o, 'delta');
  return { delta: { base: int(d, 'base', 1, MAX_VERSION_ID), head: int(d, 'head'), tail: int(d, 'tail'), middle: validateManifest(d.middle) } };
}

function op(v: unknown): Op {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('op must be a map');
  const o = v as Obj;
  switch (o.op) {
    case 'put':
      return {
        op: 'put', path: path(o, 'path'), base: int(o, 'base', 0, MAX_VERSION_ID), size: int(o, 'size'), hash: hex64(o, 'hash'),
        mtime: num(o, 'mtime'), exec: bool(o, 'exec'), manifest: manifestRef(obj(o, 'manifest')),
      };
    case 'mkdir':
      return { op: 'mkdir', path: path(o, 'path') };
    case 'delete':
      return { op: 'delete', path: path(o, 'path'), kind: kind(o, 'kind'), base: int(o, 'base', 0, MAX_VERSION_ID), seq: int(o, 'seq') };
    case 'move':
      return { op: 'move', from: path(o, 'from'), to: path(o, 'to'), kind: kind(o, 'kind'), base: int(o, 'base', 0, MAX_VERSION_ID) };
    default:
      fail('unknown op');
  }
}

/**
 * Decodes and validates a frame from a device. Throws ProtocolError for
 * anything malformed, oversized, unknown or carrying a hostile path.
 */
export function decodeClientMessage(frame: Uint8Array): ClientMessage {
  const o = parseFrame(frame);
  switch (o.type) {
    case 'hello':
      return {
        type: 'hello', protocol: int(o, 'protocol'), token: str(o, 'token', 256), folder: str(o, 'folder', 255),
        epoch: str(o, 'epoch', 64), seq: int(o, 'seq'), platform: str(o, 'platform', 64), client: str(o, 'client', 64),
      };
    case 'list':
      return { type: 'list', id: int(o, 'id'), since: int(o, 'since') };
    case 'get-manifest':
      return { type: 'get-manifest', id: int(o, 'id'), version: int(o, 'version', 1, MAX_VERSION_ID), base: int(o, 'base', 0, MAX_VERSION_ID) };
    case 'has-chunks':
      return { type: 'has-chunks', id: int(o, 'id'), hashes: hashList(o, 'hashes') };
    case 'put-chunk': {
      const data = bytes(o, 'data', MAX_CHUNK_SIZE);
      if (data.byteLength === 0) fail('empty chunk');
      return { type: 'put-chunk', id: int(o, 'id'), hash: hash32(o, 'hash'), data };
    }
    case 'get-chunks':
      return { type: 'get-chunks', id: int(o, 'id'), hashes: hashList(o, 'hashes') };
    case 'push':
      return { type: 'push', id: int(o, 'id'), ops: arr(o, 'ops', MAX_OPS_PER_PUSH).map(op) };
    case 'versions':
      return { type: 'versions', id: int(o, 'id'), path: path(o, 'path') };
    case 'restore':
      return { type: 'restore', id: int(o, 'id'), path: path(o, 'path'), version: int(o, 'version', 0, MAX_VERSION_ID) };
    case 'restore-at':
      return { type: 'restore-at', id: int(o, 'id'), ...(o.path !== undefined ? { path: path(o, 'path') } : {}), at: int(o, 'at', 1) };
    case 'trash':
      return { type: 'trash', id: int(o, 'id') };
    case 'trash-restore':
      return { type: 'trash-restore', id: int(o, 'id'), path: path(o, 'path') };
    default:
      fail(`unknown message type ${JSON.stringify(String(o.type).slice(0, 40))}`);
  }
}

function entry(v: unknown): Entry {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('entry must be a map');
  const o = v as Obj;
  const e: Entry = {
    path: path(o, 'path'), kind: kind(o, 'kind'), deleted: bool(o, 'deleted'), seq: int(o, 'seq'),
    version: int(o, 'version'), size: int(o, 'size'), hash: hex64(o, 'hash', true), mtime: num(o, 'mtime'), exec: bool(o, 'exec'),
  };
  if (o.from !== undefined) e.from = path(o, 'from');
  if (o.manifest !== undefined) {
    e.manifest = validateManifest(o.manifest);
    if (manifestSize(e.manifest) !== e.size) fail(`entry ${e.path}: its size ${e.size} is not what its chunks add up to`);
  }
  return e;
}

function opResult(v: unknown): OpResult {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('result must be a map');
  const o = v as Obj;
  switch (o.status) {
    case 'ok': {
      const r: OpResult = { status: 'ok', version: int(o, 'version'), seq: int(o, 'seq') };
      if (o.held === true) r.held = true;
      if (o.mtime !== undefined) r.mtime = num(o, 'mtime');
      if (o.path !== undefined) r.path = path(o, 'path');
      return r;
    }
    case 'conflict':
      return { status: 'conflict', path: path(o, 'path'), version: int(o, 'version'), seq: int(o, 'seq') };
    case 'stale':
      return { status: 'stale', reason: str(o, 'reason') };
    case 'error':
      return { status: 'error', code: str(o, 'code', 64), message: str(o, 'message') };
    default:
      fail('unknown result status');
  }
}

/** Decodes and validates a frame from the server (a device trusts no peer). */
export function decodeServerMessage(frame: Uint8Array): ServerMessage {
  const o = parseFrame(frame);
  switch (o.type) {
    case 'welcome': {
      const f = obj(o, 'folder');
      return {
        type: 'welcome', deviceId: int(o, 'deviceId'), deviceName: str(o, 'deviceName', 255), server: str(o, 'server', 64),
        folder: { id: int(f, 'id'), name: str(f, 'name', 255), epoch: str(f, 'epoch', 64), seq: int(f, 'seq') },
        ...(o.publicUrl !== undefined ? { publicUrl: str(o, 'publicUrl', 2048) } : {}),
      };
    }
    case 'changed':
      return { type: 'changed', seq: int(o, 'seq') };
    case 'changes':
      return { type: 'changes', id: int(o, 'id'), entries: arr(o, 'entries', 100_000).map(entry), seq: int(o, 'seq'), more: bool(o, 'more') };
    case 'manifest':
      return { type: 'manifest', id: int(o, 'id'), version: int(o, 'version'), manifest: manifestRef(obj(o, 'manifest')) };
    case 'missing':
      return { type: 'missing', id: int(o, 'id'), hashes: hashList(o, 'hashes') };
    case 'chunk-ok':
      return { type: 'chunk-ok', id: int(o, 'id') };
    case 'chunk-data':
      return { type: 'chunk-data', id: int(o, 'id'), hash: hash32(o, 'hash'), data: bytes(o, 'data', MAX_CHUNK_SIZE) };
    case 'pushed':
      return { type: 'pushed', id: int(o, 'id'), results: arr(o, 'results', MAX_OPS_PER_PUSH).map(opResult) };
    case 'versions-list':
      return {
        type: 'versions-list', id: int(o, 'id'),
        versions: arr(o, 'versions', 100_000).map((v) => {
          const x = v as Obj;
          return {
            id: int(x, 'id'), size: int(x, 'size'), hash: hex64(x, 'hash', true), modifiedAt: str(x, 'modifiedAt', 64),
            createdAt: str(x, 'createdAt', 64), device: str(x, 'device', 255), current: bool(x, 'current'),
          };
        }),
      };
    case 'trash-list':
      return {
        type: 'trash-list', id: int(o, 'id'),
        items: arr(o, 'items', 100_000).map((v) => {
          const x = v as Obj;
          return {
            id: int(x, 'id'), path: path(x, 'path'), kind: kind(x, 'kind'), size: int(x, 'size'),
            deletedAt: str(x, 'deletedAt', 64), deletedBy: str(x, 'deletedBy', 255),
          };
        }),
      };
    case 'done':
      return { type: 'done', id: int(o, 'id'), message: str(o, 'message'), ...(o.path !== undefined ? { path: str(o, 'path', 4096) } : {}) };
    case 'error':
      return { type: 'error', id: int(o, 'id'), code: str(o, 'code', 64), message: str(o, 'message') };
    default:
      fail(`unknown message type ${JSON.stringify(String(o.type).slice(0, 40))}`);
  }
}

/** Packs hex hashes into 32-byte records. */
export function packHashes(hashes: readonly string[]): Uint8Array {
  const out = new Uint8Array(hashes.length * 32);
  hashes.forEach((h, i) => out.set(Buffer.from(h, 'hex'), i * 32));
  return out;
}

/** Unpacks 32-byte records into hex hashes. */
export function unpackHashes(packed: Uint8Array): string[] {
  const out: string[] = [];
  for (let o = 0; o < packed.byteLength; o += 32) out.push(Buffer.from(packed.subarray(o, o + 32)).toString('hex'));
  return out;
}
