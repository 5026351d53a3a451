import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { decodeClientMessage, encodeMessage, type ClientMessage, type ServerMessage } from '@keepsync/protocol';
import { loadCertificate } from '@keepsync/server';
import { tempDir, type TestDevice } from './cluster.js';

/** What the fake server sends back: a message, raw bytes (any frame at all), or nothing. */
export type Answer = ServerMessage | Uint8Array | Record<string, unknown> | undefined;

/** Answers one request of the device; `send` may send more frames (chunk data). */
export type Handler = (msg: ClientMessage, send: (a: Answer) => void, ws: WebSocket) => Answer | Answer[];

/**
 * A Keepsync server that is not one: TLS with its own self-signed
 * certificate, a WebSocket on /api/v1/sync speaking the protocol package's
 * codec, answering each request through `handler`. It welcomes any hello,
 * so a device configured to trust its certificate syncs against it (F3).
 */
export class HostileServer {
  readonly root = tempDir('hostile');
  url = '';
  fingerprint = '';
  /** False: hello is never answered (a server that takes the socket and says nothing). */
  welcomes = true;
  /** Every request the device sent. */
  readonly received: ClientMessage[] = [];
  private https?: https.Server;
  wss?: WebSocketServer;

  constructor(public handler: Handler) {}

  async start(): Promise<this> {
    const cert = await loadCertificate({ certsDir: path.join(this.root, 'certs') });
    this.fingerprint = cert.fingerprint;
    this.https = https.createServer({ cert: cert.cert, key: cert.key });
    this.wss = new WebSocketServer({ server: this.https, path: '/api/v1/sync', perMessageDeflate: false });
    this.wss.on('connection', (ws) => {
      const send = (a: Answer) => {
        if (a === undefined || ws.readyState !== ws.OPEN) return;
        ws.send(a instanceof Uint8Array ? a : encodeMessage(a as ServerMessage));
      };
      ws.on('message', (data) => {
        let msg: ClientMessage;
        try {
          msg = decodeClientMessage(data as Buffer);
        } catch {
          ws.terminate();
          return;
        }
        this.received.push(msg);
        if (msg.type === 'hello') {
          if (this.welcomes) send({ type: 'welcome', deviceId: 1, deviceName: 'victim', folder: { id: 1, name: 'Sync', epoch: 'hostile-epoch', seq: 1 }, server: 'keepsync 0.1.0' });
          return;
        }
        const out = this.handler(msg, send, ws);
        for (const a of Array.isArray(out) ? out : [out]) send(a);
      });
    });
    await new Promise<void>((resolve) => this.https!.listen(0, '127.0.0.1', resolve));
    this.url = `https://127.0.0.1:${(this.https.address() as AddressInfo).port}`;
    return this;
  }

  /** Makes `device` paired with this server: its state holds this address and certificate, as pairing writes them. */
  adopt(device: TestDevice): void {
    fs.mkdirSync(device.home, { recursive: true, mode: 0o700 });
    fs.rmSync(path.join(device.home, 'index.db'), { force: true });
    fs.writeFileSync(path.join(device.home, 'pairing.json'), JSON.stringify({
      server: this.url, fingerprint: this.fingerprint, token: 'a'.repeat(64), deviceId: 1, deviceName: device.name,
      folder: 'Sync', dir: device.dir, pairedAt: new Date().toISOString(),
    }), { mode: 0o600 });
  }

  async stop(): Promise<void> {
    for (const c of this.wss?.clients ?? []) c.terminate();
    await new Promise<void>((r) => (this.wss ? this.wss.close(() => r()) : r()));
    await new Promise<void>((r) => (this.https ? this.https.close(() => r()) : r()));
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}
