import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { KeepsyncError, errorMessage } from '@keepsync/protocol';

/** The certificate the server presents, with what the admin page and devices need to know. */
export interface ServerCertificate {
  cert: string;
  key: string;
  /** SHA-256 of the certificate's DER, 64 lowercase hex: what devices pin. */
  fingerprint: string;
  subject: string;
  /** ISO 8601. */
  validFrom: string;
  /** ISO 8601. */
  validTo: string;
  selfSigned: boolean;
}

/** Where the certificate comes from: the user's own files, or a generated pair in `certsDir`. */
export interface CertificateOptions {
  certsDir: string;
  certFile?: string;
  keyFile?: string;
  /** Extra names for the generated certificate's SAN (e.g. the public host name). */
  hostnames?: string[];
}

const TEN_YEARS_MS = 10 * 365.25 * 24 * 60 * 60_000;

/** The files in use: the user's own when given, else certsDir/server.crt and server.key. */
export function certificatePaths(opts: CertificateOptions): { certFile: string; keyFile: string; own: boolean } {
  if (opts.certFile || opts.keyFile) {
    if (!opts.certFile || !opts.keyFile) throw new KeepsyncError('USAGE', 'give both --cert FILE and --key FILE, or neither');
    return { certFile: opts.certFile, keyFile: opts.keyFile, own: true };
  }
  return { certFile: path.join(opts.certsDir, 'server.crt'), keyFile: path.join(opts.certsDir, 'server.key'), own: false };
}

/** 64 lowercase hex SHA-256 of a PEM certificate's DER. */
export function fingerprintOf(certPem: string): string {
  return createHash('sha256').update(new X509Certificate(certPem).raw).digest('hex');
}

/**
 * Loads the server certificate. With certFile/keyFile those are read and must
 * match; otherwise certsDir/server.crt and server.key are used, generated
 * (self-signed, 10 years) on first start and reused afterwards, so the
 * fingerprint devices pinned stays the same.
 */
export async function loadCertificate(opts: CertificateOptions): Promise<ServerCertificate> {
  const { certFile, keyFile, own } = certificatePaths(opts);
  if (!own && !fs.existsSync(certFile)) {
    // A key without its certificate is a leftover of an interrupted generation: replace both.
    await generateCertificate(opts.certsDir, certFile, keyFile, opts.hostnames ?? []);
  }
  const [cert, key] = await Promise.all([readPem(certFile, 'certificate', own), readPem(keyFile, 'private key', own)]);
  return parseCertificate(cert, key, certFile, keyFile);
}

async function readPem(file: string, what: string, own: boolean): Promise<string> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (err) {
    const fix = own
      ? 'check the --cert and --key paths and their permissions'
      : `restore it, or move ${path.dirname(file)} aside to generate a new certificate (devices must then pair again)`;
    throw new KeepsyncError('UNAVAILABLE', `cannot read the ${what} ${file} (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}); ${fix}`);
  }
}

/** Parses a certificate and key and checks that they belong together. */
export function parseCertificate(cert: string, key: string, certFile = 'certificate', keyFile = 'key'): ServerCertificate {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw new KeepsyncError('UNAVAILABLE', `${certFile} is not a PEM certificate; give a PEM file (-----BEGIN CERTIFICATE-----)`);
  }
  let matches: boolean;
  try {
    matches = x509.checkPrivateKey(createPrivateKey(key));
  } catch {
    throw new KeepsyncError('UNAVAILABLE', `${keyFile} is not an unencrypted PEM private key; give the key of ${certFile}`);
  }
  if (!matches) throw new KeepsyncError('UNAVAILABLE', `${keyFile} is not the private key of ${certFile}; give the matching pair`);
  return {
    cert,
    key,
    fingerprint: createHash('sha256').update(x509.raw).digest('hex'),
    subject: x509.subject,
    validFrom: new Date(x509.validFrom).toISOString(),
    validTo: new Date(x509.validTo).toISOString(),
    selfSigned: x509.issuer === x509.subject && x509.verify(x509.publicKey),
  };
}

async function generateCertificate(dir: string, certFile: string, keyFile: string, hostnames: string[]): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  const now = Date.now();
  const dns = [...new Set(['localhost', os.hostname(), ...hostnames].filter((h) => h && !isIp(h)))];
  const ips = [...new Set(['127.0.0.1', '::1', ...hostnames.filter(isIp)])];
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: `Keepsync server ${os.hostname()}`.slice(0, 64) }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now - 60 * 60_000),
    notAfterDate: new Date(now + TEN_YEARS_MS),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [...dns.map((value) => ({ type: 2 as const, value })), ...ips.map((ip) => ({ type: 7 as const, ip }))] },
    ],
  });
  // Key first, certificate last: a certificate on disk always has its key.
  await writeAtomically(keyFile, pems.private, 0o600);
  await writeAtomically(certFile, pems.cert, 0o644);
}

async function writeAtomically(file: string, text: string, mode: number): Promise<void> {
  const temp = `${file}.${process.pid}.tmp`;
  await fsp.writeFile(temp, text, { mode });
  await fsp.chmod(temp, mode);
  await fsp.rename(temp, file);
}

function isIp(host: string): boolean {
  return /^[0-9.]+$/.test(host) || host.includes(':');
}

/**
 * Watches the certificate files in use and calls `onChange` with the new
 * certificate when a complete, matching pair with another fingerprint
 * appears (hot reload after a renewal). Half-written or mismatched states
 * are ignored: the old certificate stays. Returns a function that stops watching.
 */
export function watchCertificate(opts: CertificateOptions & { pollMs?: number }, onChange: (c: ServerCertificate) => void): () => void {
  const { certFile, keyFile } = certificatePaths(opts);
  let last: string | undefined;
  try {
    last = fingerprintOf(fs.readFileSync(certFile, 'utf8'));
  } catch {
    last = undefined;
  }
  const check = () => {
    let next: ServerCertificate;
    try {
      next = parseCertificate(fs.readFileSync(certFile, 'utf8'), fs.readFileSync(keyFile, 'utf8'), certFile, keyFile);
    } catch {
      return; // mid-write or mismatched: keep serving the old one
    }
    if (next.fingerprint === last) return;
    last = next.fingerprint;
    onChange(next);
  };
  const interval = opts.pollMs ?? 2000;
  fs.watchFile(certFile, { interval, persistent: false }, check);
  fs.watchFile(keyFile, { interval, persistent: false }, check);
  return () => {
    fs.unwatchFile(certFile, check);
    fs.unwatchFile(keyFile, check);
  };
}
