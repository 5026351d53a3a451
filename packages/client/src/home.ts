import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KeepsyncError } from '@keepsync/protocol';

/** What pairing stores about the server and this device. */
export interface Pairing {
  /** `https://host:port` of the server. */
  server: string;
  /**
   * Pinned SHA-256 fingerprint of the server certificate, 64 lowercase hex;
   * '' when paired through a link without one (a publicly valid certificate is required).
   */
  fingerprint: string;
  /**
   * The server's public address when it differs from `server` (learned at
   * pairing and on every connection): tried when `server` cannot be reached,
   * e.g. a laptop paired at home and now away. The pin applies to both.
   */
  publicUrl?: string;
  token: string;
  deviceId: number;
  deviceName: string;
  folder: string;
  /** Absolute path of the synced folder on this device. */
  dir: string;
  pairedAt: string;
}

/** The live state a running `keepsync sync` publishes for `keepsync status`. */
export interface SyncState {
  pid: number;
  connected: boolean;
  pendingUp: number;
  pendingDown: number;
  lastSyncAt: string | null;
  lastError: string | null;
  updatedAt: string;
}

/**
 * Refuses a state directory inside the synced folder: its token and index
 * would be synced to the server and every other device, and the index,
 * rewritten by every cycle, would never settle.
 */
export function assertHomeOutside(homeDir: string, dir: string): void {
  const real = (p: string) => {
    try {
      return fs.realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  };
  const rel = path.relative(real(dir), real(homeDir));
  if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) {
    throw new KeepsyncError(
      'USAGE',
      `the device's state directory ${path.resolve(homeDir)} is inside the synced folder ${path.resolve(dir)}, which would sync its token; use a --home outside it`,
    );
  }
}

/** The default home: the user's config dir + /keepsync. */
export function defaultHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KEEPSYNC_HOME) return path.resolve(env.KEEPSYNC_HOME);
  const base = process.platform === 'win32'
    ? (env.APPDATA ?? path.join(os.homedir(), 'AppData', 'Roaming'))
    : process.platform === 'darwin'
      ? path.join(os.homedir(), 'Library', 'Application Support')
      : (env.XDG_CONFIG_HOME ?? path.join(os.homedir(), '.config'));
  return path.join(base, 'keepsync');
}

/**
 * The device's state directory: pairing (with the token, mode 0600), the
 * local index database and the live sync state. Never inside the synced folder.
 */
export class ClientHome {
  constructor(readonly dir: string) {}

  get pairingFile(): string {
    return path.join(this.dir, 'pairing.json');
  }
  get indexFile(): string {
    return path.join(this.dir, 'index.db');
  }
  get lockFile(): string {
    return path.join(this.dir, 'sync.lock');
  }
  get stateFile(): string {
    return path.join(this.dir, 'state.json');
  }

  readPairing(): Pairing | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.pairingFile, 'utf8')) as Pairing;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new KeepsyncError('NOT_PAIRED', `cannot read ${this.pairingFile}: ${(err as Error).message}`);
    }
  }

  /** The pairing, or NOT_PAIRED with what to do. */
  requirePairing(): Pairing {
    const p = this.readPairing();
    if (!p) throw new KeepsyncError('NOT_PAIRED', `this device is not paired (home ${this.dir}); run "keepsync pair LINK --dir DIR" first`);
    return p;
  }

  writePairing(p: Pairing): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.pairingFile}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(p, null, 2), { mode: 0o600 });
    fs.renameSync(tmp, this.pairingFile);
  }

  /** Forgets the pairing and the index; the synced folder is not touched. */
  forget(): boolean {
    const had = fs.existsSync(this.pairingFile);
    for (const f of [this.pairingFile, this.indexFile, `${this.indexFile}-wal`, `${this.indexFile}-shm`, this.stateFile, this.lockFile]) {
      fs.rmSync(f, { force: true });
    }
    return had;
  }

  readState(): SyncState | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.stateFile, 'utf8')) as SyncState;
    } catch {
      return undefined;
    }
  }

  writeState(s: SyncState): void {
    const tmp = `${this.stateFile}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(s));
    fs.renameSync(tmp, this.stateFile);
  }

  /** The process id of the `keepsync sync` running on this home, or undefined. */
  syncProcess(): number | undefined {
    let pid: number;
    try {
      pid = Number(fs.readFileSync(this.lockFile, 'utf8'));
    } catch {
      return undefined;
    }
    return Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid) ? pid : undefined;
  }

  /**
   * Makes this process the only `keepsync sync` of the home: two engines on
   * one index and folder would undo each other's work. A lock left by a
   * process that is gone is taken over. Answers the release function.
   */
  lockSync(): () => void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.writeFileSync(this.lockFile, String(process.pid), { flag: 'wx', mode: 0o600 });
        return () => fs.rmSync(this.lockFile, { force: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const pid = this.syncProcess();
        // An empty lock a moment old is another process between creating and writing it.
        if (pid !== undefined || this.lockIsBeingWritten()) {
          throw new KeepsyncError('USAGE', `keepsync sync is already running for this device${pid ? ` (process ${pid})` : ''}; stop it first, or use another --home`);
        }
        fs.rmSync(this.lockFile, { force: true });
      }
    }
    throw new KeepsyncError('USAGE', 'another keepsync sync is starting for this device; stop it first, or use another --home');
  }

  private lockIsBeingWritten(): boolean {
    try {
      const st = fs.statSync(this.lockFile);
      return st.size === 0 && Date.now() - st.mtimeMs < 5000;
    } catch {
      return false;
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
