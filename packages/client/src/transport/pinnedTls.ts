import https from 'node:https';
import tls from 'node:tls';
import { KeepsyncError } from '@keepsync/protocol';

/** SHA-256 fingerprint of a peer certificate as 64 lowercase hex. */
export function fingerprintHex(cert: tls.PeerCertificate): string {
  return (cert.fingerprint256 ?? '').replace(/:/g, '').toLowerCase();
}

export function mismatchError(expected: string, actual: string): KeepsyncError {
  if (!expected) {
    return new KeepsyncError(
      'FINGERPRINT_MISMATCH',
      `the server's certificate (sha256/${actual}) is not publicly valid for this address; nothing was sent. ` +
        'Fix the certificate of the server or its proxy, or pair again with a link that carries fp=',
    );
  }
  return new KeepsyncError(
    'FINGERPRINT_MISMATCH',
    `the server's certificate changed (now sha256/${actual}, pinned sha256/${expected}); nothing was sent. ` +
      'If the server\'s certificate was replaced on purpose (its admin page shows the fingerprint), re-pin with "keepsync unpair", ' +
      'then "keepsync pair LINK --dir DIR" with a new link from "keepsync server pair"; your files stay',
  );
}

/** The certificate a pairing link's fingerprint was checked against did not match it. */
export function pairingMismatchError(expected: string, actual: string): KeepsyncError {
  return new KeepsyncError(
    'FINGERPRINT_MISMATCH',
    `the server's certificate (sha256/${actual}) does not match the fingerprint in the pairing link (sha256/${expected}); nothing was sent. ` +
      'Check that the link is complete and its address is your server\'s, or make a new link with "keepsync server pair"',
  );
}

/**
 * A TLS connection that is trusted when the server's certificate has the
 * pinned fingerprint, or when it is valid for the host under the system's
 * CAs (a Let's Encrypt certificate renewed after pairing). Anything else is
 * destroyed before a byte of ours is trusted to it; the device token is only
 * sent after this check, in the hello.
 */
export function connectPinned(
  options: tls.ConnectionOptions & { host?: string },
  fingerprint: string,
  mismatch: (expected: string, actual: string) => KeepsyncError = mismatchError,
): tls.TLSSocket {
  const socket = tls.connect({ ...options, rejectUnauthorized: false, minVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] });
  socket.once('secureConnect', () => {
    const cert = socket.getPeerCertificate();
    const actual = fingerprintHex(cert);
    if (fingerprint && actual === fingerprint) return;
    const host = options.servername || options.host || '';
    if (socket.authorized && tls.checkServerIdentity(host, cert) === undefined) return;
    socket.destroy(mismatch(fingerprint, actual));
  });
  return socket;
}

/** An https agent whose connections are pinned like connectPinned. */
export function pinnedAgent(fingerprint: string, mismatch = mismatchError): https.Agent {
  const agent = new https.Agent({ keepAlive: false });
  (agent as unknown as { createConnection: typeof connectPinned }).createConnection = (opts) => connectPinned(opts, fingerprint, mismatch);
  return agent;
}

/**
 * One JSON request over a pinned connection; answers status and parsed body.
 * `mismatch` words the refusal of another certificate (pairing has nothing pinned yet).
 */
export function pinnedJson(url: string, fingerprint: string, method: string, body?: unknown, mismatch = mismatchError): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = https.request(
      url,
      {
        method,
        agent: pinnedAgent(fingerprint, mismatch),
        headers: payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {},
        timeout: 15_000,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            // not JSON; keep the text
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new KeepsyncError('UNAVAILABLE', `no answer from ${new URL(url).host} within 15 s`)));
    req.on('error', (err) => reject(err instanceof KeepsyncError ? err : networkError(url, err)));
    req.end(payload);
  });
}

export function networkError(url: string, err: Error): KeepsyncError {
  const code = (err as NodeJS.ErrnoException).code;
  const host = new URL(url).host;
  const why = code === 'ECONNREFUSED' ? 'connection refused (is the server running?)'
    : code === 'ENOTFOUND' ? 'unknown host'
    : code === 'ETIMEDOUT' ? 'timed out'
    : err.message;
  return new KeepsyncError('UNAVAILABLE', `cannot reach the server at ${host}: ${why}`);
}
