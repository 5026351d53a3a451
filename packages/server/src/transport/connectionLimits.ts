import type { Server } from 'node:net';
import { HANDSHAKE_TIMEOUT_MS } from '@keepsync/protocol';

/**
 * Connections one address may hold at once. A household behind one NAT
 * address holds a few per device and per browser tab; a machine flooding
 * the server is cut here, before a TLS handshake costs anything (F5).
 */
export const MAX_CONNECTIONS_PER_ADDRESS = 256;

/**
 * The limits every listening socket gets, HTTP and WebSocket alike. The
 * TLS handshake, the request headers and a whole request each have a
 * deadline; headers are at most 16 KiB (Node's default, stated here).
 * Deadlines are checked every second, not Node's 30 s, so a slowloris
 * connection lasts about as long as the deadline says.
 */
export const SERVER_LIMITS = {
  handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
  maxHeaderSize: 16 * 1024,
  connectionsCheckingInterval: 1000,
  headersTimeout: 10_000,
  requestTimeout: 30_000,
} as const;

/**
 * Closes at once a connection from an address that already holds
 * `max`. Not behind a reverse proxy: there every connection comes from the
 * proxy's address (the proxy limits instead).
 */
export function limitConnectionsPerAddress(server: Server, max = MAX_CONNECTIONS_PER_ADDRESS): void {
  const held = new Map<string, number>();
  server.on('connection', (socket) => {
    const address = socket.remoteAddress ?? '';
    const n = held.get(address) ?? 0;
    if (n >= max) {
      socket.destroy();
      return;
    }
    held.set(address, n + 1);
    socket.once('close', () => {
      const left = (held.get(address) ?? 1) - 1;
      if (left <= 0) held.delete(address);
      else held.set(address, left);
    });
  });
}
