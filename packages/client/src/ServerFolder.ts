import os from 'node:os';
import path from 'node:path';
import { KeepsyncError, parseRelPath, type RelPath, type TrashInfo, type VersionInfo } from '@keepsync/protocol';
import type { ClientHome, Pairing } from './home.js';
import { Connection } from './transport/Connection.js';

/** What a restore did, as the server tells it. */
export interface RestoreAnswer {
  message: string;
  /** Where the restored item is now (beside its place when that was taken). */
  path: string;
}

/**
 * The server's versions and trash of this device's folder, over the
 * device's own authenticated connection (the pinned certificate and the
 * stored token). Each call opens a connection, asks, and closes it; a
 * running `keepsync sync` learns of a restore from the server like any
 * other change.
 */
export class ServerFolder {
  readonly pairing: Pairing;

  constructor(home: ClientHome) {
    this.pairing = home.requirePairing();
  }

  /**
   * The folder-relative path for what the user typed: a path inside the
   * synced folder (absolute, or relative to the current directory), or else
   * a path relative to the folder root. PATH_INVALID for anything else.
   */
  relPath(input: string, cwd = process.cwd()): RelPath {
    const root = path.resolve(this.pairing.dir);
    const abs = path.resolve(cwd, input);
    const inside = path.relative(root, abs);
    if (inside === '') throw new KeepsyncError('PATH_INVALID', `${input} is the synced folder itself; name a file or folder inside it`);
    if (inside !== '..' && !inside.startsWith(`..${path.sep}`) && !path.isAbsolute(inside)) return parseRelPath(inside.split(path.sep).join('/'));
    if (path.isAbsolute(input)) throw new KeepsyncError('PATH_INVALID', `${input} is not inside the synced folder ${root}`);
    return parseRelPath(input.split(path.sep).join('/').replace(/\/+$/, ''));
  }

  versions(p: RelPath): Promise<VersionInfo[]> {
    return this.ask(async (c) => (await c.request({ type: 'versions', id: c.id(), path: p }, 'versions-list')).versions);
  }

  restoreVersion(p: RelPath, version: number): Promise<RestoreAnswer> {
    return this.ask(async (c) => done(await c.request({ type: 'restore', id: c.id(), path: p, version }, 'done'), p));
  }

  /** Restores a folder or file (the whole synced folder when `p` is undefined) to how it was at `at`. */
  restoreAt(p: RelPath | undefined, at: Date): Promise<RestoreAnswer> {
    const msg = { type: 'restore-at' as const, id: 0, at: at.getTime(), ...(p ? { path: p } : {}) };
    return this.ask(async (c) => done(await c.request({ ...msg, id: c.id() }, 'done'), p ?? ('' as RelPath)));
  }

  trash(): Promise<TrashInfo[]> {
    return this.ask(async (c) => (await c.request({ type: 'trash', id: c.id() }, 'trash-list')).items);
  }

  restoreTrash(p: RelPath): Promise<RestoreAnswer> {
    return this.ask(async (c) => done(await c.request({ type: 'trash-restore', id: c.id(), path: p }, 'done'), p));
  }

  private async ask<T>(fn: (c: Connection) => Promise<T>): Promise<T> {
    const p = this.pairing;
    const conn = await Connection.open({
      server: p.server, fingerprint: p.fingerprint, token: p.token, folder: p.folder, epoch: '', seq: 0,
      platform: `${os.platform()}-${os.arch()}`,
    });
    try {
      return await fn(conn);
    } finally {
      conn.close();
    }
  }
}

function done(m: { message: string; path?: string }, fallback: RelPath): RestoreAnswer {
  return { message: m.message, path: m.path ?? fallback };
}
