import https from 'node:https';
import os from 'node:os';
import WebSocket from 'ws';
import {
  KEEPSYNC_VERSION, PROTOCOL_VERSION, decodeServerMessage, encodeMessage, packManifest, sha256Hex,
  type ClientMessage, type Op, type RelPath, type ServerMessage, type WelcomeMsg,
} from '@keepsync/protocol';
import type { TestServer } from './cluster.js';
import { waitFor } from './wait.js';

/** The test servers' certificates are self-signed; these helpers talk to them without a CA. */
const insecure = new https.Agent({ rejectUnauthorized: false, keepAlive: false });

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** One HTTPS request with an optional JSON body; answers status, headers and the raw bytes of the answer. */
export function httpsRaw(url: string, method: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpAnswer & { body: Buffer }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = https.request(url, {
      method, agent: insecure, timeout: 15_000,
      headers: { ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}), ...headers },
    }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer within 15 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** One HTTPS request with an optional JSON body; answers status, headers and the parsed body. */
export async function httpsJson(url: string, method: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  const r = await httpsRaw(url, method, body, headers);
  const text = r.body.toString('utf8');
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text
  }
  return { ...r, body: parsed };
}

/** A logged-in admin session on a test server (cookie + CSRF token). */
export class AdminClient {
  private constructor(readonly base: string, private readonly cookie: string, private readonly csrf: string) {}

  static async login(server: TestServer): Promise<AdminClient> {
    const r = await httpsJson(`${server.url}/api/v1/session`, 'POST', { password: server.adminPassword });
    if (r.status !== 200) throw new Error(`admin login answered ${r.status}: ${JSON.stringify(r.body)}`);
    const setCookie = ([] as string[]).concat(r.headers['set-cookie'] ?? []);
    const cookie = setCookie.map((c) => c.split(';')[0]).find((c) => c.startsWith('keepsync_session='));
    if (!cookie) throw new Error(`admin login set no session cookie: ${setCookie.join(' | ')}`);
    return new AdminClient(server.url, cookie, r.body.csrfToken);
  }

  request(method: string, apiPath: string, body?: unknown): Promise<HttpAnswer> {
    return httpsJson(`${this.base}/api/v1${apiPath}`, method, body, { cookie: this.cookie, 'x-csrf-token': this.csrf });
  }

  /** A request whose answer is kept as raw bytes (a download). */
  requestRaw(method: string, apiPath: string, body?: unknown): Promise<HttpAnswer & { body: Buffer }> {
    return httpsRaw(`${this.base}/api/v1${apiPath}`, method, body, { cookie: this.cookie, 'x-csrf-token': this.csrf });
  }

  async devices(): Promise<Array<{ id: number; name: string; online: boolean }>> {
    const r = await this.request('GET', '/devices');
    if (r.status !== 200) throw new Error(`GET /devices answered ${r.status}: ${JSON.stringify(r.body)}`);
    return r.body;
  }

  async deviceId(name: string): Promise<number> {
    const d = (await this.devices()).find((x) => x.name === name);
    if (!d) throw new Error(`no device named ${name}`);
    return d.id;
  }

  /** DELETE /devices/:id; throws unless 204. */
  async removeDevice(id: number): Promise<void> {
    const r = await this.request('DELETE', `/devices/${id}`);
    if (r.status !== 204) throw new Error(`DELETE /devices/${id} answered ${r.status}: ${JSON.stringify(r.body)}`);
  }

  /** GET /folders: the folders with their file counts and bytes (the server index, as the admin sees it). */
  async folders(): Promise<Array<{ id: number; name: string; files: number; bytes: number }>> {
    const r = await this.request('GET', '/folders');
    if (r.status !== 200) throw new Error(`GET /folders answered ${r.status}: ${JSON.stringify(r.body)}`);
    return r.body;
  }
}

export interface RawPairing {
  deviceId: number;
  token: string;
  folder: string;
}

/** Redeems a fresh pairing code over the API, as a device would (no client code involved). */
export async function redeemPairing(server: TestServer, name: string): Promise<RawPairing> {
  const link = new URL(await server.pairingLink());
  const code = link.searchParams.get('code');
  if (!code) throw new Error(`no code in ${link}`);
  const r = await httpsJson(`${server.url}/api/v1/pair`, 'POST', { code, name, platform: `${os.platform()}-${os.arch()}` });
  if (r.status !== 201) throw new Error(`POST /pair answered ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body as RawPairing;
}

/** A put op for `content` whose single chunk is `content` itself. Unchecked: hostile paths are sent on purpose. */
export function putOp(p: string, content: Buffer, base = 0): Op {
  const hash = sha256Hex(content);
  return {
    op: 'put', path: p as RelPath, base, size: content.length, hash, mtime: Date.now(), exec: false,
    manifest: { full: packManifest([{ hash, size: content.length }]) },
  };
}

/** The device WebSocket URL of a test server. */
export function syncUrl(server: TestServer): string {
  return `${server.url.replace(/^http/, 'ws')}/api/v1/sync`;
}

/**
 * A hand-driven device connection: sends whatever frames a test wants and
 * records every server frame (validated by the protocol decoder) and the close.
 */
export class RawSocket {
  readonly ws: WebSocket;
  readonly received: ServerMessage[] = [];
  /** Frames from the server that did not decode (a server bug). */
  readonly undecodable: string[] = [];
  closeCode?: number;
  closeReason = '';
  /** The HTTP status when the upgrade was refused. */
  refusedStatus?: number;
  readonly opened: Promise<void>;
  readonly closed: Promise<number>;

  /** `localAddress`: the loopback address to connect from (127.0.0.2 and up look like other machines). */
  constructor(url: string, headers: Record<string, string> = {}, opts: { localAddress?: string } = {}) {
    this.ws = new WebSocket(url, { rejectUnauthorized: false, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024, headers, handshakeTimeout: 10_000, ...opts });
    this.ws.on('error', () => {});
    this.ws.on('message', (data, isBinary) => {
      try {
        if (!isBinary) throw new Error('text frame');
        this.received.push(decodeServerMessage(data as Buffer));
      } catch (err) {
        this.undecodable.push(String(err));
      }
    });
    this.ws.on('unexpected-response', (_req, res) => {
      this.refusedStatus = res.statusCode;
      res.resume();
      this.ws.terminate();
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('close', () => reject(new Error(`socket closed before opening (HTTP ${this.refusedStatus ?? '?'})`)));
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
      resolve(code);
    }));
  }

  static async open(server: TestServer, headers?: Record<string, string>): Promise<RawSocket> {
    const s = new RawSocket(syncUrl(server), headers);
    await s.opened;
    return s;
  }

  /** Opens a socket, says hello with `token` and waits for welcome. */
  static async welcomed(server: TestServer, token: string): Promise<{ sock: RawSocket; welcome: WelcomeMsg }> {
    const sock = await RawSocket.open(server);
    sock.hello(token);
    const welcome = await sock.next('welcome');
    return { sock, welcome };
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  hello(token: string, folder = 'Sync'): void {
    this.send({ type: 'hello', protocol: PROTOCOL_VERSION, token, folder, epoch: '', seq: 0, platform: `${os.platform()}-${os.arch()}`, client: KEEPSYNC_VERSION });
  }

  send(msg: ClientMessage | Record<string, unknown>): void {
    this.ws.send(encodeMessage(msg as ClientMessage), { binary: true });
  }

  sendRaw(data: Buffer | string, binary = typeof data !== 'string'): void {
    this.ws.send(data, { binary });
  }

  /** The first received message of `type` (and matching `where`), waiting for it. */
  async next<T extends ServerMessage['type']>(type: T, where: (m: Extract<ServerMessage, { type: T }>) => boolean = () => true, timeoutMs = 10_000): Promise<Extract<ServerMessage, { type: T }>> {
    return waitFor(`a ${type} frame from the server (got ${this.describe()})`, () => {
      const m = this.received.find((x) => x.type === type && where(x as Extract<ServerMessage, { type: T }>));
      if (m) return m as Extract<ServerMessage, { type: T }>;
      if (this.closeCode !== undefined) throw new Error(`closed with ${this.closeCode} ${this.closeReason}`);
      return undefined;
    }, timeoutMs);
  }

  /** Waits for the server to close the connection; answers the close code. */
  async waitClosed(timeoutMs = 10_000): Promise<number> {
    await waitFor(`the server to close the connection (got ${this.describe()})`, () => this.closeCode !== undefined, timeoutMs);
    return this.closeCode!;
  }

  describe(): string {
    const frames = this.received.map((m) => (m.type === 'error' ? `error ${m.code}` : m.type)).join(', ') || 'no frames';
    return `${frames}${this.closeCode !== undefined ? `; closed ${this.closeCode}` : ''}`;
  }

  terminate(): void {
    this.ws.terminate();
  }
}
