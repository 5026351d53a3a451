import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  CloseCode, HANDSHAKE_TIMEOUT_MS, HEARTBEAT_INTERVAL_MS, KEEPSYNC_VERSION, MAX_FRAME, PROTOCOL_VERSION,
  decodeClientMessage, encodeMessage, errorMessage, type HelloMsg,
} from '@keepsync/protocol';
import type { ContentStore } from '../storage/ContentStore.js';
import type { MetadataStore } from '../sync/MetadataStore.js';
import type { SyncService } from '../sync/SyncService.js';
import { DeviceSession } from '../sessions/DeviceSession.js';
import type { FolderOps } from '../sessions/FolderOps.js';
import type { SessionRegistry } from '../sessions/SessionRegistry.js';

/** The WebSocket endpoint devices connect to. */
export const SYNC_PATH = '/api/v1/sync';
/** Connections that have not yet said hello, at most. */
export const MAX_UNAUTHENTICATED = 256;
/**
 * Of those, at most this many from one address (behind a proxy: the address
 * it names), so that one machine flooding upgrades cannot keep devices out.
 */
export const MAX_UNAUTHENTICATED_PER_ADDRESS = 16;
/** Live connections per device; a newer one replaces the oldest (a half-open socket not yet reaped). */
const MAX_SESSIONS_PER_DEVICE = 4;
/** How long `close` waits for the connections it cut to finish closing, at most. */
const CLOSE_WAIT_MS = 2000;

/** What the gateway needs to know about device tokens. */
export interface DeviceAuthenticator {
  authenticate(token: string): Promise<
    { status: 'ok'; device: { id: number; name: string } } | { status: 'revoked' } | { status: 'unknown' }
  >;
  touch(id: number, info: { address: string | null }): Promise<void>;
}

export interface GatewayDeps {
  meta: MetadataStore;
  sync: SyncService;
  content: ContentStore;
  folderOps: FolderOps;
  sessions: SessionRegistry;
  devices: DeviceAuthenticator;
  /** The public URL setting, sent in welcome so devices know where to go from outside the LAN. */
  publicUrl: () => Promise<string | null>;
  /** Plain HTTP behind a TLS-terminating proxy: the device's address comes from X-Forwarded-For. */
  behindProxy?: boolean;
  log: (line: string) => void;
}

/**
 * Upgrades HTTP connections on SYNC_PATH to WebSockets, authenticates the
 * hello, and hands the socket to a DeviceSession. Heartbeats find dead peers;
 * unauthenticated connections are bounded and time out.
 */
export class WsGateway {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME, perMessageDeflate: false, clientTracking: true });
  private unauthenticated = 0;
  private readonly unauthenticatedFrom = new Map<string, number>();
  private readonly heartbeat: NodeJS.Timeout;
  private readonly alive = new WeakMap<WebSocket, boolean>();
  private readonly sessionOf = new WeakMap<WebSocket, DeviceSession>();
  /** Database writes a closing connection started (the device's last-seen time): `close` waits for them. */
  private readonly closingWrites = new Set<Promise<void>>();

  constructor(private readonly deps: GatewayDeps) {
    this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_INTERVAL_MS);
    this.heartbeat.unref();
  }

  attach(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket, head));
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'https://x');
    const refuse = (status: string) => {
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (url.pathname !== SYNC_PATH) return refuse('404 Not Found');
    // Browsers always send Origin; devices never do. A cross-site page cannot open a sync socket.
    if (req.headers.origin !== undefined) return refuse('403 Forbidden');
    const address = this.addressOf(req) ?? '';
    if (this.unauthenticated >= MAX_UNAUTHENTICATED || (this.unauthenticatedFrom.get(address) ?? 0) >= MAX_UNAUTHENTICATED_PER_ADDRESS) {
      return refuse('503 Service Unavailable');
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, req, address));
  }

  private accept(ws: WebSocket, req: IncomingMessage, address: string): void {
    this.unauthenticated++;
    this.unauthenticatedFrom.set(address, (this.unauthenticatedFrom.get(address) ?? 0) + 1);
    this.alive.set(ws, true);
    // Any byte from the device shows the link is alive, not only pongs: a pong
    // waits behind a large chunk that a slow line takes minutes to carry.
    ws.on('pong', () => this.alive.set(ws, true));
    req.socket.on('data', () => this.alive.set(ws, true));
    ws.on('error', () => {});
    let settled = false;
    const settle = () => {
      if (!settled) {
        settled = true;
        this.unauthenticated--;
        const left = (this.unauthenticatedFrom.get(address) ?? 1) - 1;
        if (left <= 0) this.unauthenticatedFrom.delete(address);
        else this.unauthenticatedFrom.set(address, left);
      }
    };
    const timer = setTimeout(() => {
      settle();
      ws.close(CloseCode.HANDSHAKE_TIMEOUT, 'no hello');
    }, HANDSHAKE_TIMEOUT_MS);
    ws.once('close', () => {
      clearTimeout(timer);
      settle();
    });
    ws.once('message', (data, isBinary) => {
      clearTimeout(timer);
      ws.pause();
      this.hello(ws, data as Buffer, isBinary, this.addressOf(req))
        .catch((err) => {
          this.deps.log(`handshake failed: ${errorMessage(err)}`);
          ws.close(CloseCode.PROTOCOL_ERROR, 'handshake failed');
        })
        .finally(() => {
          settle();
          ws.resume();
        });
    });
  }

  /** The device's address: the socket's, or behind the proxy the hop the proxy appended. */
  private addressOf(req: IncomingMessage): string | null {
    const forwarded = this.deps.behindProxy ? req.headers['x-forwarded-for'] : undefined;
    const last = (Array.isArray(forwarded) ? forwarded.join(',') : forwarded ?? '').split(',').pop()?.trim();
    return (last || req.socket.remoteAddress || '').slice(0, 128) || null;
  }

  private async hello(ws: WebSocket, data: Buffer, isBinary: boolean, address: string | null): Promise<void> {
    const deny = (code: number, errCode: string, message: string) => {
      ws.send(encodeMessage({ type: 'error', id: 0, code: errCode, message }));
      ws.close(code, errCode);
    };
    let hello: HelloMsg;
    try {
      const msg = isBinary ? decodeClientMessage(data) : undefined;
      if (msg?.type !== 'hello') return deny(CloseCode.PROTOCOL_ERROR, 'FRAME_INVALID', 'the first message must be hello');
      hello = msg;
    } catch (err) {
      return deny(CloseCode.PROTOCOL_ERROR, 'FRAME_INVALID', errorMessage(err));
    }
    if (hello.protocol !== PROTOCOL_VERSION) {
      return deny(CloseCode.PROTOCOL_VERSION, 'PROTOCOL_VERSION', `this server speaks protocol ${PROTOCOL_VERSION}, the device ${hello.protocol}; update Keepsync on the older side`);
    }
    const auth = await this.deps.devices.authenticate(hello.token);
    if (auth.status === 'revoked') {
      return deny(CloseCode.TOKEN_REVOKED, 'TOKEN_REVOKED', 'this device was removed from the server; pair it again to resume syncing');
    }
    if (auth.status !== 'ok') {
      return deny(CloseCode.TOKEN_INVALID, 'TOKEN_INVALID', 'the server does not know this device; pair it again');
    }
    const folder = await this.deps.meta.folderByName(hello.folder);
    if (!folder) return deny(CloseCode.FOLDER_UNKNOWN, 'FOLDER_UNKNOWN', `the server has no folder named ${hello.folder}`);
    if (ws.readyState !== ws.OPEN) return;
    const live = this.deps.sessions.sessionsOf(auth.device.id);
    for (const old of live.slice(0, Math.max(0, live.length - MAX_SESSIONS_PER_DEVICE + 1))) {
      old.close(CloseCode.REPLACED, 'replaced by a newer connection');
    }
    const publicUrl = await this.deps.publicUrl();
    const session = new DeviceSession(ws, auth.device, folder, this.deps.sync, this.deps.content, this.deps.folderOps, this.deps.log);
    this.deps.sessions.add(session);
    this.sessionOf.set(ws, session);
    ws.once('close', () => {
      this.deps.sessions.delete(session);
      const write = this.deps.devices.touch(auth.device.id, { address }).catch(() => {});
      this.closingWrites.add(write);
      void write.finally(() => this.closingWrites.delete(write));
    });
    await this.deps.devices.touch(auth.device.id, { address });
    await session.send({
      type: 'welcome', deviceId: auth.device.id, deviceName: auth.device.name, server: KEEPSYNC_VERSION,
      folder: { id: folder.id, name: folder.name, epoch: folder.epoch, seq: folder.seq },
      ...(publicUrl ? { publicUrl } : {}),
    });
  }

  private beat(): void {
    for (const ws of this.wss.clients) {
      // Silent because the server stopped reading it while its uploads are stored: not dead.
      if (this.alive.get(ws) === false && !this.sessionOf.get(ws)?.waitingForStorage) {
        ws.terminate();
        continue;
      }
      this.alive.set(ws, false);
      ws.ping();
    }
  }

  /**
   * Cuts every connection and waits until they are closed and what their
   * closing wrote is done, so that the database is closed after the last
   * write, not under it (on PostgreSQL a write that waits for a connection
   * of a pool being destroyed held the shutdown for a minute).
   */
  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    const closed = [...this.wss.clients].map((ws) => new Promise<void>((resolve) => {
      if (ws.readyState === ws.CLOSED) resolve();
      else ws.once('close', () => resolve());
    }));
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS)));
    await Promise.race([Promise.all(closed).then(() => Promise.all([...this.closingWrites])), bound]);
    clearTimeout(timer);
  }
}
