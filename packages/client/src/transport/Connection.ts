import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';
import {
  CloseCode, DEAD_PEER_MS, crashPoint, HEARTBEAT_INTERVAL_MS, KEEPSYNC_VERSION, KeepsyncError, MAX_FRAME, PROTOCOL_VERSION, REQUEST_SILENCE_MS, decodeServerMessage,
  encodeMessage, errorMessage, type ClientMessage, type ServerMessage, type ServerMessageOf, type WelcomeMsg,
} from '@keepsync/protocol';
import { connectPinned, networkError } from './pinnedTls.js';
import type { TokenBucket } from './TokenBucket.js';

/**
 * Bytes of chunk uploads sent but not yet acknowledged before `putChunk`
 * waits: enough to fill a long, fast link (8 MiB is 100 ms at 670 Mbit/s),
 * few enough that memory stays low on both sides and an interruption costs little.
 */
const UPLOAD_WINDOW = 8 * 1024 * 1024;
/** How often the watchdog looks at the link. */
const WATCHDOG_MS = 2000;
/** KEEPSYNC_TRACE=1 logs every frame on stderr (chunks with their hash). */
const TRACE = process.env.KEEPSYNC_TRACE === '1';
/** How long a request may see nothing move toward its answer (KEEPSYNC_REQUEST_SILENCE_MS shortens it in tests). */
const SILENCE_MS = Number(process.env.KEEPSYNC_REQUEST_SILENCE_MS) > 0 ? Number(process.env.KEEPSYNC_REQUEST_SILENCE_MS) : REQUEST_SILENCE_MS;

export interface ConnectOptions {
  server: string;
  fingerprint: string;
  token: string;
  folder: string;
  epoch: string;
  seq: number;
  platform: string;
  /** Optional upload and download rate limits, shared by every connection of this device. */
  uploadLimit?: TokenBucket;
  downloadLimit?: TokenBucket;
}

type Pending = { resolve: (m: ServerMessage) => void; reject: (e: Error) => void; expect: ServerMessage['type']; request: ClientMessage['type'] };

export interface ConnectionEvents {
  changed: [seq: number];
  close: [code: number, reason: string];
}

/**
 * One authenticated WebSocket to the server. Requests carry ids that answers
 * echo; chunk uploads are pipelined within a byte window; chunk downloads
 * arrive as chunk-data frames for the request's id.
 */
export class Connection extends EventEmitter<ConnectionEvents> {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly chunkSinks = new Map<number, (m: ServerMessageOf<'chunk-data'> | ServerMessageOf<'error'>) => void>();
  private inFlight = 0;
  private windowWaiters: Array<() => void> = [];
  private lastHeard = Date.now();
  private lastPing = Date.now();
  /**
   * Progress toward answers (see REQUEST_SILENCE_MS). Bytes read from the
   * socket, minus those of heartbeats and of whole frames that answered
   * nothing (a server that only pings or only sends notices is silent); and
   * bytes of ours that left the send buffer. Each compared with its
   * high-water mark, so a notice trickling in counts once at most.
   */
  private readonly progress = { bytesIn: 0, ignoredIn: 0, bytesOut: 0, inMark: 0, outMark: 0, at: Date.now(), tick: Date.now() };
  private readonly countsSocket: boolean;
  /** The highest sequence the server announced (welcome, then changed): how far a pull may page. */
  announcedSeq: number;
  private readonly watchdog: NodeJS.Timeout;
  closed = false;
  closeCode = 0;
  /** Set when the server broke the WebSocket protocol (an oversized or malformed frame): the reason the connection ends. */
  private violation: KeepsyncError | undefined;

  private constructor(
    private readonly ws: WebSocket,
    readonly welcome: WelcomeMsg,
    private readonly limits: { upload?: TokenBucket; download?: TokenBucket } = {},
    /** The address this connection reached. */
    readonly server = '',
    socket?: Duplex,
  ) {
    super();
    this.announcedSeq = welcome.folder.seq;
    this.countsSocket = socket !== undefined;
    // Any byte from the server shows the link is alive (a large chunk arrives whole only after minutes on a slow line).
    socket?.on('data', (b: Buffer) => {
      this.lastHeard = Date.now();
      this.progress.bytesIn += b.byteLength;
    });
    ws.on('message', (data) => this.onMessage(data as Buffer));
    // A heartbeat frame from the server: a 2-byte header and its payload, unmasked.
    const heartbeat = (data: Buffer) => {
      this.lastHeard = Date.now();
      this.progress.ignoredIn += 2 + data.byteLength;
    };
    ws.on('pong', heartbeat);
    ws.on('ping', heartbeat);
    ws.on('close', (code, reason) => this.onClose(code, reason.toString()));
    // ws reports a frame it refuses to read (too large, bad opcode, bad masking) as an error, then closes.
    ws.on('error', (err: Error & { code?: string }) => {
      if (err.code?.startsWith('WS_ERR_')) this.violation ??= violationOf(err);
    });
    // A link that silently drops everything (sleeping router, lost Wi-Fi) is cut after DEAD_PEER_MS.
    this.watchdog = setInterval(() => {
      const now = Date.now();
      if (now - this.lastHeard > DEAD_PEER_MS) {
        if (TRACE) process.stderr.write(`keepsync trace: nothing from the server for ${now - this.lastHeard} ms; dropping the connection\n`);
        ws.terminate();
        return;
      }
      if (ws.readyState === ws.OPEN && now - this.lastPing >= HEARTBEAT_INTERVAL_MS) {
        this.lastPing = now;
        ws.ping();
      }
      this.checkSilence(now);
    }, WATCHDOG_MS);
    this.watchdog.unref();
  }

  /**
   * Ends the connection when requests wait and nothing moved toward an
   * answer for SILENCE_MS: a server that keeps the socket up (answering
   * pings) but never answers would otherwise hold a sync forever (F3).
   */
  private checkSilence(now: number): void {
    const p = this.progress;
    // This process stalled (a long hash, a suspended laptop): the server is not to blame.
    const late = now - p.tick > 3 * WATCHDOG_MS;
    p.tick = now;
    const waiting = this.pending.size + this.chunkSinks.size > 0;
    const answerBytes = p.bytesIn - p.ignoredIn;
    const sent = p.bytesOut - this.ws.bufferedAmount;
    if (!waiting || late || answerBytes > p.inMark || sent > p.outMark) p.at = now;
    p.inMark = Math.max(p.inMark, answerBytes);
    p.outMark = Math.max(p.outMark, sent);
    if (!waiting || now - p.at <= SILENCE_MS || this.closed) return;
    const what = [...this.pending.values()].map((x) => x.request)[0] ?? 'get-chunks';
    this.violation ??= new KeepsyncError('SERVER_SILENT', `the server has not answered (a ${what} request) for ${Math.round((now - p.at) / 1000)} s though the connection is up; it may be overloaded or not a Keepsync server: check it, then sync again`);
    this.ws.terminate();
  }

  /** Connects, checks the pinned certificate, says hello and waits for welcome. */
  static open(opts: ConnectOptions): Promise<Connection> {
    const limits = { upload: opts.uploadLimit, download: opts.downloadLimit };
    const url = new URL('/api/v1/sync', opts.server.replace(/^http/, 'ws'));
    return new Promise((resolve, reject) => {
      const secure = url.protocol === 'wss:';
      let socket: Duplex | undefined;
      const ws = new WebSocket(url, {
        maxPayload: MAX_FRAME,
        perMessageDeflate: false,
        handshakeTimeout: 10_000,
        // Masking defends browsers' intermediaries from scripted requests; inside TLS
        // from a non-browser client it only costs a pass over every byte sent.
        generateMask: (mask: Buffer) => mask.fill(0),
        ...(secure ? { createConnection: (o: object) => (socket = connectPinned(o, opts.fingerprint)) } : {}),
      } as WebSocket.ClientOptions);
      let done = false;
      const fail = (err: Error) => {
        if (done) return;
        done = true;
        ws.terminate();
        reject(err);
      };
      ws.once('error', (err: Error & { code?: string }) => fail(err instanceof KeepsyncError ? err : err.code?.startsWith('WS_ERR_') ? violationOf(err) : networkError(url.toString(), err)));
      ws.once('close', (code, reason) => fail(closeError(code, reason.toString())));
      ws.once('open', () => {
        // A server that takes the socket and never welcomes would hold the device forever.
        const silent = setTimeout(() => fail(new KeepsyncError('SERVER_SILENT', `the server did not answer this device's hello within ${Math.round(SILENCE_MS / 1000)} s; it may be overloaded or not a Keepsync server: check it, then sync again`)), SILENCE_MS);
        silent.unref();
        ws.once('close', () => clearTimeout(silent));
        ws.once('message', () => clearTimeout(silent));
        ws.send(encodeMessage({
          type: 'hello', protocol: PROTOCOL_VERSION, token: opts.token, folder: opts.folder, epoch: opts.epoch,
          seq: opts.seq, platform: opts.platform, client: KEEPSYNC_VERSION,
        }));
      });
      ws.once('message', (data) => {
        let msg: ServerMessage;
        try {
          msg = decodeServerMessage(data as Buffer);
        } catch (err) {
          return fail(new KeepsyncError('FRAME_INVALID', `the server sent an invalid answer: ${errorMessage(err)}`));
        }
        if (msg.type === 'error') return fail(new KeepsyncError(msg.code as never, msg.message));
        if (msg.type !== 'welcome') return fail(new KeepsyncError('FRAME_INVALID', 'the server did not welcome this device'));
        done = true;
        ws.removeAllListeners('error');
        ws.removeAllListeners('close');
        ws.removeAllListeners('message');
        resolve(new Connection(ws, msg, limits, opts.server, socket));
      });
    });
  }

  private onMessage(data: Buffer): void {
    this.lastHeard = Date.now();
    // Without TLS the socket is ws's own: count whole frames (a header of 2, 4 or 10 bytes).
    const frameBytes = data.byteLength + (data.byteLength < 126 ? 2 : data.byteLength < 65536 ? 4 : 10);
    if (!this.countsSocket) this.progress.bytesIn += frameBytes;
    let msg: ServerMessage;
    try {
      msg = decodeServerMessage(data);
    } catch (err) {
      this.ws.close(CloseCode.PROTOCOL_ERROR, 'invalid frame');
      this.failAll(new KeepsyncError('FRAME_INVALID', `the server sent an invalid frame: ${errorMessage(err)}`));
      return;
    }
    if (TRACE) process.stderr.write(`< ${msg.type} ${traceOf(msg)}\n`);
    // A whole frame that answers nothing is no progress toward an answer.
    const ignore = () => (this.progress.ignoredIn += frameBytes);
    if (msg.type === 'changed') {
      ignore();
      this.announcedSeq = Math.max(this.announcedSeq, msg.seq);
      this.emit('changed', msg.seq);
      return;
    }
    if (msg.type === 'chunk-data' || (msg.type === 'error' && this.chunkSinks.has(msg.id))) {
      const sink = this.chunkSinks.get(msg.id);
      if (!sink) ignore();
      sink?.(msg as never);
      return;
    }
    const id = 'id' in msg ? msg.id : 0;
    const p = this.pending.get(id);
    if (!p) {
      ignore();
      if (msg.type === 'error' && id === 0) this.failAll(new KeepsyncError(msg.code as never, msg.message));
      return;
    }
    this.pending.delete(id);
    if (msg.type === 'error') p.reject(new KeepsyncError(msg.code as never, msg.message));
    else if (msg.type !== p.expect) p.reject(new KeepsyncError('FRAME_INVALID', `expected ${p.expect}, got ${msg.type}`));
    else p.resolve(msg);
  }

  private onClose(code: number, reason: string): void {
    this.closed = true;
    this.closeCode = code;
    clearInterval(this.watchdog);
    this.failAll(this.violation ?? closeError(code, reason));
    this.emit('close', code, reason);
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const sink of this.chunkSinks.values()) sink({ type: 'error', id: 0, code: (err as KeepsyncError).code ?? 'UNAVAILABLE', message: err.message });
    this.chunkSinks.clear();
    for (const w of this.windowWaiters.splice(0)) w();
  }

  private send(msg: ClientMessage): void {
    if (this.closed) throw new KeepsyncError('UNAVAILABLE', 'the connection to the server was lost');
    if (TRACE) process.stderr.write(`> ${msg.type} ${traceOf(msg)}\n`);
    const frame = encodeMessage(msg);
    this.progress.bytesOut += frame.byteLength;
    this.ws.send(frame);
  }

  /** Sends a request and waits for its answer of type `expect`. */
  request<T extends ServerMessage['type']>(msg: ClientMessage, expect: T): Promise<ServerMessageOf<T>> {
    return new Promise((resolve, reject) => {
      const id = (msg as { id: number }).id;
      this.pending.set(id, { resolve: resolve as (m: ServerMessage) => void, reject, expect, request: msg.type });
      try {
        this.send(msg);
      } catch (err) {
        this.pending.delete(id);
        reject(err);
      }
    });
  }

  id(): number {
    return this.nextId++;
  }

  /**
   * Uploads one chunk. Resolves once the upload is queued within the window;
   * the returned `acked` promise settles when the server stored it.
   */
  async putChunk(hash: string, data: Uint8Array): Promise<{ acked: Promise<void> }> {
    while (this.inFlight + data.byteLength > UPLOAD_WINDOW && this.inFlight > 0 && !this.closed) {
      await new Promise<void>((r) => this.windowWaiters.push(r));
    }
    const wait = this.limits.upload?.take(data.byteLength) ?? 0;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    // Only its size is kept until the server answers: the bytes go once they are sent.
    const size = data.byteLength;
    this.inFlight += size;
    const id = this.id();
    const acked = this.request({ type: 'put-chunk', id, hash: Buffer.from(hash, 'hex'), data }, 'chunk-ok')
      .then(() => crashPoint('client:chunk-acked'))
      .finally(() => {
        this.inFlight -= size;
        for (const w of this.windowWaiters.splice(0)) w();
      });
    acked.catch(() => {});
    return { acked };
  }

  /** Asks for chunks; `onChunk` gets each one (unverified: the caller verifies). */
  getChunks(hashes: Uint8Array, onChunk: (hash: string, data: Uint8Array) => void): Promise<void> {
    const id = this.id();
    let left = hashes.byteLength / 32;
    return new Promise((resolve, reject) => {
      if (left === 0) return resolve();
      this.chunkSinks.set(id, (m) => {
        if (m.type === 'error') {
          this.chunkSinks.delete(id);
          reject(new KeepsyncError(m.code as never, m.message));
          return;
        }
        onChunk(Buffer.from(m.hash).toString('hex'), m.data);
        if (--left === 0) {
          this.chunkSinks.delete(id);
          resolve();
        }
      });
      try {
        this.send({ type: 'get-chunks', id, hashes });
      } catch (err) {
        this.chunkSinks.delete(id);
        reject(err);
      }
    });
  }

  /** The download rate limit, which chunk requests wait for (the socket itself keeps flowing, pings included). */
  get downloadLimit(): TokenBucket | undefined {
    return this.limits.download;
  }

  close(): void {
    if (!this.closed) this.ws.close(1000, 'bye');
    setTimeout(() => this.ws.terminate(), 500).unref();
  }
}

function traceOf(msg: ClientMessage | ServerMessage): string {
  const id = 'id' in msg ? msg.id : '';
  if (msg.type === 'chunk-data' || msg.type === 'put-chunk') return `${id} ${Buffer.from(msg.hash).toString('hex')} ${msg.data.byteLength}`;
  return String(id);
}

/** A frame the server sent that breaks the WebSocket protocol. */
function violationOf(err: Error & { code?: string }): KeepsyncError {
  const what = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'a frame too large' : 'a malformed frame';
  return new KeepsyncError('FRAME_INVALID', `the server sent an invalid frame: ${what} (${err.message}); is it a Keepsync server of the same version?`);
}

/** Turns a close code into the error a user should see. */
export function closeError(code: number, reason: string): KeepsyncError {
  switch (code) {
    case CloseCode.TOKEN_REVOKED:
      return new KeepsyncError('TOKEN_REVOKED', 'this device was removed from the server; its files here are kept. To sync again, run "keepsync unpair", then "keepsync pair LINK --dir DIR" with a new link');
    case CloseCode.TOKEN_INVALID:
      return new KeepsyncError('TOKEN_INVALID', 'the server does not know this device; pair it again');
    case CloseCode.FOLDER_UNKNOWN:
      return new KeepsyncError('FOLDER_UNKNOWN', 'the server no longer has this folder; pair again with an existing folder');
    case CloseCode.PROTOCOL_VERSION:
      return new KeepsyncError('PROTOCOL_VERSION', 'the server speaks another protocol version; update Keepsync on the older side');
    default:
      return new KeepsyncError('UNAVAILABLE', `the connection to the server was closed (${code}${reason ? ` ${reason}` : ''})`);
  }
}
