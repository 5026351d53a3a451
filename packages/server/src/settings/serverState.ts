import fs from 'node:fs/promises';
import path from 'node:path';
import { KeepsyncError, errorMessage } from '@keepsync/protocol';

/**
 * What a running server tells other processes on the same data directory
 * (`keepsync server pair`): where it listens and which certificate it serves.
 * Stored as DATA/server.json.
 */
export interface ServerState {
  /** `https://HOST:PORT` as listening. */
  url: string;
  /** SHA-256 of the certificate's DER, 64 lowercase hex; '' over plain HTTP behind a proxy. */
  fingerprint: string;
}

const FILE = 'server.json';

/** Writes DATA/server.json atomically (temp file, then rename). */
export async function writeServerState(dataDir: string, state: ServerState): Promise<void> {
  await fs.mkdir(dataDir, { recursive: true });
  const target = path.join(dataDir, FILE);
  const temp = `${target}.${process.pid}.tmp`;
  await fs.writeFile(temp, `${JSON.stringify({ url: state.url, fingerprint: state.fingerprint }, null, 2)}\n`);
  await fs.rename(temp, target);
}

/**
 * Reads DATA/server.json; undefined when the server never started with this
 * data directory. A damaged file is a KeepsyncError saying how to recover.
 */
export async function readServerState(dataDir: string): Promise<ServerState | undefined> {
  const file = path.join(dataDir, FILE);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new KeepsyncError('UNAVAILABLE', `cannot read ${file}: ${errorMessage(err)}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const s = parsed as Partial<ServerState> | undefined;
  if (!s || typeof s.url !== 'string' || typeof s.fingerprint !== 'string' || !/^([0-9a-f]{64})?$/.test(s.fingerprint)) {
    throw new KeepsyncError('UNAVAILABLE', `${file} is damaged; start "keepsync server" again to rewrite it`);
  }
  return { url: s.url, fingerprint: s.fingerprint };
}
