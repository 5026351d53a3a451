import type { WebSocket } from 'ws';
import {
  CloseCode, KeepsyncError, MAX_HASHES_PER_REQUEST, ProtocolError, decodeClientMessage, encodeMessage, errorMessage,
  crashPoint, packHashes, unpackHashes, type ClientMessage, type ClientMessageOf, type ClientMessageType, type ServerMessage,
} from '@keepsync/protocol';
import type { ContentStore } from '../storage/ContentStore.js';
import type { Folder } from '../sync/model.js';
import type { SyncService } from '../sync/SyncService.js';
import type { FolderOps } from './FolderOps.js';
import { Semaphore } from '../sync/Mutex.js';

/** Bytes queued towards a device before the session waits for the socket to drain (and stops reading chunks from disk). */
const HIGH_WATER = 4 * 1024 * 1024;
/** Chunk uploads stored concurrently per device. */
const UPLOAD_PARALLEL = 8;
/**
 * Bytes of received frames not yet handled before the session stops reading
 * from the socket (TCP then slows the device down); it reads again below half.
 */
const INBOUND_HIGH_WATER = 8 * 1024 * 1024;
/**
 * What a received message costs while it waits besides its bytes (the
 * decoded message, its place in the queue): counted with them, so that a
 * flood of tiny requests from a device that does not read its answers
 * stops being read after some thousands, not after millions.
 */
const MESSAGE_COST = 2048;
/** KEEPSYNC_TRACE=1 logs every chunk stored, received again or sent, and each stop of reading (checks in tests). */
const TRACE = process.env.KEEPSYNC_TRACE === '1';

export interface SessionDevice {
  id: number;
  name: string;
}

type Handlers = { [T in Exclude<ClientMessageType, 'hello'>]: (msg: ClientMessageOf<T>) => Promise<void> };

/**
 * One authenticated device connection on one folder. Messages are handled in
 * order (chunk uploads overlap, but anything else waits for them); a
 * malformed frame closes only this connection.
 */
export class DeviceSession {
  private queue: Promise<void> = Promise.resolve();
  private readonly uploads = new Set<Promise<void>>();
  private readonly uploadSlots = new Semaphore(UPLOAD_PARALLEL);
  private buffered = 0;
  private inbound = 0;
  private readingPaused = false;
  /** Chunk uploads being written to the content store now. */
  private storing = 0;
  private drainWaiters: Array<() => void> = [];
  /** The latest change not told yet because the device had no room (0: none). */
  private changedLater = 0;
  closed = false;

  constructor(
    private readonly ws: WebSocket,
    readonly device: SessionDevice,
    readonly folder: Folder,
    private readonly sync: SyncService,
    private readonly content: ContentStore,
    private readonly folderOps: FolderOps,
    private readonly log: (line: string) => void,
  ) {
    ws.on('message', (data, isBinary) => this.enqueue(data as Buffer, isBinary));
    ws.on('close', () => {
      this.closed = true;
      for (const w of this.drainWaiters.splice(0)) w();
    });
  }

  /**
   * Tells the device that the folder changed up to `seq`. A device that is
   * not taking what is sent gets one notice of the latest change once it
   * has room again, not one per change meanwhile.
   */
  notifyChanged(seq: number): void {
    if (this.buffered >= HIGH_WATER) {
      this.changedLater = Math.max(this.changedLater, seq);
      return;
    }
    this.send({ type: 'changed', seq });
  }

  /**
   * True while the session has stopped reading the device because its
   * chunks are still being stored: the device's bytes wait unread in the
   * socket, so its silence says nothing about the link (a slow disk is the
   * server's doing). A device that is not reading its answers stalls the
   * session with nothing being stored, and gets no such excuse.
   */
  get waitingForStorage(): boolean {
    return this.readingPaused && this.storing > 0;
  }

  /** Closes the connection now (removal, shutdown). */
  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.ws.close(code, reason);
    // A device that does not answer the close handshake is cut off.
    setTimeout(() => this.ws.terminate(), 500).unref();
  }

  private enqueue(data: Buffer, isBinary: boolean): void {
    if (this.closed) return;
    // Whatever the device sends, at most INBOUND_HIGH_WATER bytes of it wait in memory.
    const size = data.byteLength + MESSAGE_COST;
    this.inbound += size;
    if (this.inbound > INBOUND_HIGH_WATER && !this.readingPaused) {
      this.readingPaused = true;
      this.ws.pause();
      if (TRACE) this.log(`trace: reading paused for ${this.device.name} (${this.inbound} bytes pending)`);
    }
    const handled = () => {
      this.inbound -= size;
      if (this.readingPaused && this.inbound < INBOUND_HIGH_WATER / 2) {
        this.readingPaused = false;
        this.ws.resume();
      }
    };
    let msg: ClientMessage;
    try {
      if (!isBinary) throw new ProtocolError('FRAME_INVALID', 'text frames are not part of the protocol');
      msg = decodeClientMessage(data);
    } catch (err) {
      handled();
      this.protocolError(err);
      return;
    }
    if (msg.type === 'hello') {
      handled();
      this.protocolError(new ProtocolError('FRAME_INVALID', 'hello was already received'));
      return;
    }
    if (msg.type === 'put-chunk' || msg.type === 'has-chunks') {
      // Uploads overlap each other (a few at a time) and whatever else runs (a push of files whose
      // chunks went up before); anything else waits for the uploads before it.
      const upload = msg;
      const p = this.uploadSlots.run(() => this.dispatch(upload));
      this.uploads.add(p);
      p.finally(() => {
        this.uploads.delete(p);
        handled();
      }).catch(() => {});
      return;
    }
    // Wait for the uploads started before this message (not later ones).
    const earlier = [...this.uploads];
    this.queue = this.queue
      .then(() => Promise.allSettled(earlier))
      .then(() => this.dispatch(msg))
      .catch((err) => this.protocolError(err))
      .finally(handled);
  }

  private async dispatch(msg: ClientMessage): Promise<void> {
    if (this.closed) return;
    const id = 'id' in msg ? msg.id : 0;
    try {
      await (this.handlers[msg.type as Exclude<ClientMessageType, 'hello'>] as (m: ClientMessage) => Promise<void>)(msg);
    } catch (err) {
      if (err instanceof KeepsyncError) {
        if (err.code === 'TOKEN_REVOKED') return this.close(CloseCode.TOKEN_REVOKED, 'device removed');
        this.send({ type: 'error', id, code: err.code, message: err.message });
      } else {
        this.log(`error handling ${msg.type} from ${this.device.name}: ${errorMessage(err)}`);
        this.send({ type: 'error', id, code: 'INTERNAL', message: 'the server failed to handle this request; see the server log' });
      }
    }
  }

  private protocolError(err: unknown): void {
    const message = errorMessage(err).slice(0, 200);
    this.log(`closing connection of ${this.device.name}: ${message}`);
    this.send({ type: 'error', id: 0, code: err instanceof KeepsyncError ? err.code : 'FRAME_INVALID', message });
    this.close(CloseCode.PROTOCOL_ERROR, 'protocol error');
  }

  /** Sends a message; resolves once the device has room for more. */
  send(msg: ServerMessage): Promise<void> {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return Promise.resolve();
    const frame = encodeMessage(msg);
    this.buffered += frame.byteLength;
    this.ws.send(frame, { binary: true }, () => {
      this.buffered -= frame.byteLength;
      if (this.buffered >= HIGH_WATER / 2) return;
      if (this.changedLater > 0) {
        const seq = this.changedLater;
        this.changedLater = 0;
        void this.send({ type: 'changed', seq });
      }
      for (const w of this.drainWaiters.splice(0)) w();
    });
    if (this.buffered < HIGH_WATER) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private readonly handlers: Handlers = {
    list: async (m) => {
      const page = await this.sync.changes(this.folder, m.since);
      await this.send({ type: 'changes', id: m.id, ...page });
    },
    'get-manifest': async (m) => {
      const manifest = await this.sync.manifest(this.folder, m.version, m.base);
      await this.send({ type: 'manifest', id: m.id, version: m.version, manifest });
    },
    'has-chunks': async (m) => {
      const missing = await this.content.missing(unpackHashes(m.hashes));
      await this.send({ type: 'missing', id: m.id, hashes: packHashes(missing) });
    },
    'put-chunk': async (m) => {
      try {
        const hash = Buffer.from(m.hash).toString('hex');
        if (TRACE) {
          const again = (await this.content.missing([hash])).length === 0;
          this.log(`trace: put-chunk ${hash} ${m.data.byteLength} ${again ? 'received again' : 'stored'}`);
        }
        this.storing++;
        try {
          await this.content.put(hash, m.data);
        } finally {
          this.storing--;
        }
        crashPoint('server:chunk-stored');
        await this.send({ type: 'chunk-ok', id: m.id });
      } catch (err) {
        const code = err instanceof KeepsyncError ? err.code : 'INTERNAL';
        if (code === 'INTERNAL') this.log(`storing a chunk failed: ${errorMessage(err)}`);
        await this.send({ type: 'error', id: m.id, code, message: err instanceof KeepsyncError ? err.message : 'the server could not store a chunk' });
      }
    },
    'get-chunks': async (m) => {
      const hashes = unpackHashes(m.hashes);
      if (hashes.length > MAX_HASHES_PER_REQUEST) throw new ProtocolError('FRAME_TOO_LARGE', 'too many hashes');
      // Read ahead a few chunks while earlier ones are being sent.
      const reads = hashes.map((h, i) => (i < 4 ? this.content.get(h) : undefined));
      for (let i = 0; i < hashes.length && !this.closed; i++) {
        if (i + 4 < hashes.length) reads[i + 4] = this.content.get(hashes[i + 4]);
        const data = await reads[i]!;
        reads[i] = undefined;
        if (!data) {
          await this.send({ type: 'error', id: m.id, code: 'CHUNK_MISSING', message: `chunk ${hashes[i]} is missing on the server` });
          continue;
        }
        if (TRACE) this.log(`trace: chunk-data ${hashes[i]} ${data.byteLength} to ${this.device.name}`);
        await this.send({ type: 'chunk-data', id: m.id, hash: Buffer.from(hashes[i], 'hex'), data });
      }
    },
    push: async (m) => {
      const results = await this.sync.push(this.folder, this.device, m.ops, () => !this.closed);
      await this.send({ type: 'pushed', id: m.id, results });
    },
    versions: async (m) => {
      const versions = await this.folderOps.versions(this.folder, m.path);
      await this.send({ type: 'versions-list', id: m.id, versions });
    },
    restore: async (m) => {
      const r = await this.folderOps.restoreVersion(this.folder, m.path, m.version, this.device);
      await this.send({ type: 'done', id: m.id, message: r.message, path: r.path });
    },
    'restore-at': async (m) => {
      const r = await this.folderOps.restoreAt(this.folder, m.path, m.at, this.device);
      await this.send({ type: 'done', id: m.id, message: r.message, ...(r.path ? { path: r.path } : {}) });
    },
    trash: async (m) => {
      const items = await this.folderOps.trash(this.folder);
      await this.send({ type: 'trash-list', id: m.id, items });
    },
    'trash-restore': async (m) => {
      const r = await this.folderOps.restoreTrashPath(this.folder, m.path, this.device);
      await this.send({ type: 'done', id: m.id, message: r.message, path: r.path });
    },
  };
}
