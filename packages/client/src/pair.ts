import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KeepsyncError } from '@keepsync/protocol';
import { assertHomeOutside, type ClientHome, type Pairing } from './home.js';
import { mismatchError, pairingMismatchError, pinnedJson } from './transport/pinnedTls.js';

/** A parsed pairing link: `https://HOST:PORT/pair?code=…&fp=…`. */
export interface PairingLink {
  server: string;
  code: string;
  /** The certificate to pin; '' when the link has none (a publicly valid certificate is required then). */
  fingerprint: string;
}

export function parsePairingLink(link: string): PairingLink {
  let url: URL;
  try {
    url = new URL(link);
  } catch {
    throw new KeepsyncError('PAIRING_INVALID', 'that is not a pairing link; copy the whole https://…/pair?code=…&fp=… link');
  }
  const code = url.searchParams.get('code') ?? '';
  const fp = (url.searchParams.get('fp') ?? '').toLowerCase().replace(/^sha256\//, '').replace(/:/g, '');
  if (url.protocol === 'http:') {
    throw new KeepsyncError('PAIRING_INVALID', 'the pairing link is plain http, which would expose this device\'s token; pair through the https address of the reverse proxy (set it as the server\'s public URL)');
  }
  if (url.protocol !== 'https:' || !code || (fp !== '' && !/^[0-9a-f]{64}$/.test(fp))) {
    throw new KeepsyncError('PAIRING_INVALID', 'the pairing link is incomplete; it needs code= and, for a self-signed server, fp= (64 hex digits)');
  }
  const base = url.pathname.replace(/\/pair\/?$/, '');
  return { server: `${url.origin}${base === '/' ? '' : base}`, code, fingerprint: fp };
}

export interface PairOptions {
  link: string;
  dir: string;
  name?: string;
  folder?: string;
}

/**
 * Pairs this device: checks the server certificate against the fingerprint
 * in the link (refusing a mismatch before anything is sent), redeems the
 * code for a device token and binds DIR to the folder. DIR's existing files
 * are merged by the first sync: nothing in it is overwritten or deleted.
 */
export async function pairDevice(home: ClientHome, opts: PairOptions): Promise<Pairing> {
  if (home.readPairing()) {
    throw new KeepsyncError('USAGE', `this device is already paired (home ${home.dir}); run "keepsync unpair" first or use another --home`);
  }
  const link = parsePairingLink(opts.link);
  const dir = path.resolve(opts.dir);
  if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) throw new KeepsyncError('USAGE', `${dir} is not a folder`);
  assertHomeOutside(home.dir, dir);
  const name = (opts.name ?? os.hostname()).slice(0, 64);
  const request = { code: link.code, name, platform: `${os.platform()}-${os.arch()}`, ...(opts.folder ? { folder: opts.folder } : {}) };
  const res = await pinnedJson(`${link.server}/api/v1/pair`, link.fingerprint, 'POST', request, link.fingerprint ? pairingMismatchError : mismatchError);
  if (res.status !== 200 && res.status !== 201) {
    const why = typeof res.body === 'object' && res.body?.error ? res.body.error : `the server answered ${res.status}`;
    throw new KeepsyncError('PAIRING_INVALID', why);
  }
  const body = res.body as { deviceId: number; token: string; folder: string; deviceName: string; publicUrl?: unknown };
  fs.mkdirSync(dir, { recursive: true });
  const pairing: Pairing = {
    server: link.server, fingerprint: link.fingerprint, token: body.token, deviceId: body.deviceId, deviceName: body.deviceName,
    folder: opts.folder ?? body.folder, dir, pairedAt: new Date().toISOString(),
    ...(typeof body.publicUrl === 'string' && body.publicUrl !== link.server ? { publicUrl: body.publicUrl } : {}),
  };
  home.forget();
  home.writePairing(pairing);
  return pairing;
}
