import os from 'node:os';
import { CloseCode, KeepsyncError, errorMessage, isKeepsyncError } from '@keepsync/protocol';
import { assertHomeOutside, type ClientHome, type Pairing } from './home.js';
import { LocalIndex } from './index/LocalIndex.js';
import { LocalFolder } from './folder/LocalFolder.js';
import { Scanner } from './scanner/Scanner.js';
import { Connection } from './transport/Connection.js';
import { TokenBucket } from './transport/TokenBucket.js';
import { Engine } from './sync/Engine.js';
import { isDownloadTemp } from './sync/transfers.js';
import { Progress } from './progress.js';
import { watchFolder, type Watcher } from './watcher/Watcher.js';

export interface SyncOptions {
  /** Stop once both sides agree. */
  once?: boolean;
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** Show progress lines on stderr for long work. */
  progress?: boolean;
  /** Debounce for watcher events, ms. */
  debounceMs?: number;
  /** Upload and download rate limits, bytes per second (none when unset). */
  maxUpload?: number;
  maxDownload?: number;
}

/** Errors after which retrying cannot help: stop and tell the user. */
const FATAL = new Set(['TOKEN_REVOKED', 'TOKEN_INVALID', 'FOLDER_UNKNOWN', 'PROTOCOL_VERSION', 'FINGERPRINT_MISMATCH', 'FOLDER_ROOT_MISSING']);
/**
 * The server broke the protocol or sent content that is not what it named:
 * `--once` stops with the error; a running sync reconnects, waiting longer each time.
 */
const SERVER_FAULT = new Set(['FRAME_INVALID', 'FRAME_TOO_LARGE', 'CHUNK_HASH_MISMATCH', 'SERVER_SILENT']);
/** A disk that cannot take more (this device's, or the server's content store): retried after a growing wait, on the same connection. */
const WAIT_AND_RETRY = new Set(['LOCAL_WRITE_FAILED', 'STORAGE']);
/** A full scan catches what the watcher missed this often. */
const FULL_SCAN_MS = 5 * 60_000;
/**
 * While the folder cannot be watched, full scans find its changes: as often
 * as this, and no more than a twentieth of the time (a scan that took 2 s
 * comes every 40 s).
 */
const UNWATCHED_SCAN_MIN_MS = 10_000;
const UNWATCHED_SCAN_SHARE = 20;

/**
 * Runs sync for a paired device: connects (reconnecting with exponential
 * backoff and jitter), watches the folder, and runs engine cycles whenever
 * something changed on either side. Resolves when stopped (signal) or, with
 * `once`, when both sides agree; rejects on a fatal error.
 */
export async function runSync(home: ClientHome, opts: SyncOptions = {}): Promise<void> {
  let pairing = home.requirePairing();
  assertHomeOutside(home.dir, pairing.dir);
  const unlock = home.lockSync();
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const limits = {
    uploadLimit: opts.maxUpload ? new TokenBucket(opts.maxUpload) : undefined,
    downloadLimit: opts.maxDownload ? new TokenBucket(opts.maxDownload) : undefined,
  };
  const folder = new LocalFolder(pairing.dir);
  const scanner = new Scanner(pairing.dir, folder.real);
  const index = new LocalIndex(home.indexFile);
  const state = { connected: false, pendingUp: 0, pendingDown: 0, lastSyncAt: null as string | null, lastError: null as string | null };
  const publish = () => home.writeState({ pid: process.pid, ...state, updatedAt: new Date().toISOString() });
  // `keepsync status` shows what a long cycle (the first sync of a big folder) still has to do.
  const onPlan = (up: number, down: number) => {
    state.pendingUp = up;
    state.pendingDown = down;
    publish();
  };
  let wake: (() => void) | undefined;
  let kicked = true;
  const kick = () => {
    kicked = true;
    wake?.();
  };
  const engine = new Engine(index, folder, scanner, { log, progress: new Progress(process.stderr, opts.progress !== false), onPlan, wake: kick, holdWhileWritten: !opts.once });
  opts.signal?.addEventListener('abort', kick);
  let watcher: Watcher | undefined;
  /** The folder cannot be watched now (the system's limits): changes are found by scanning more often. */
  let unwatched = false;
  /** How long the last cycle with a full scan took. */
  let fullScanMs = 0;
  let debounce: NodeJS.Timeout | undefined;
  /** The server fault last reported: the same one again (a server that stays broken) is not repeated. */
  let reportedFault: string | undefined;
  try {
    // A download's temporary file from a run that was killed is resumed, not fetched again.
    engine.adoptLeftovers(await folder.cleanTemps(isDownloadTemp));
    if (!opts.once) {
      watcher = await watchFolder(
        pairing.dir,
        (rels) => {
          for (const r of rels) engine.markLocal(r);
          clearTimeout(debounce);
          debounce = setTimeout(kick, opts.debounceMs ?? 10);
        },
        () => {
          engine.markFullScan();
          kick();
        },
        (rel) => engine.wasFolder(rel),
        (why) => {
          unwatched = why !== undefined;
          if (why) log(`cannot watch ${pairing.dir} for changes: ${why}; until then its changes are found by scanning it every ${Math.round(unwatchedScanMs() / 1000)} s or so`);
          else log(`watching ${pairing.dir} for changes again`);
          kick();
        },
      );
    }
    let backoff = 500;
    let faultBackoff = 2_000;
    while (!opts.signal?.aborted) {
      let conn: Connection;
      try {
        conn = await connect(pairing, index, limits);
      } catch (err) {
        if (isKeepsyncError(err) && FATAL.has(err.code)) throw err;
        state.lastError = errorMessage(err);
        publish();
        if (opts.once) throw err;
        log(`${errorMessage(err)}; retrying in ${Math.round(backoff / 1000)} s`);
        await sleep(backoff * (0.5 + Math.random()), opts.signal);
        backoff = Math.min(backoff * 2, 60_000);
        continue;
      }
      backoff = 500;
      pairing = learnAddresses(home, pairing, conn);
      engine.adoptEpoch(conn.welcome.folder.epoch, conn.welcome.folder.seq);
      state.connected = true;
      state.lastError = null;
      publish();
      conn.on('changed', (seq) => {
        if (seq > index.seq) kick();
      });
      conn.on('close', () => kick());
      try {
        await engine.checkHistory(conn);
        const done = await loop(conn);
        if (done) return;
      } catch (err) {
        if (conn.closeCode === CloseCode.TOKEN_REVOKED || (isKeepsyncError(err) && FATAL.has(err.code))) {
          throw conn.closeCode === CloseCode.TOKEN_REVOKED ? new KeepsyncError('TOKEN_REVOKED', 'this device was removed from the server; its files here are kept. To sync again, run "keepsync unpair", then "keepsync pair LINK --dir DIR" with a new link') : err;
        }
        const fault = isKeepsyncError(err) && SERVER_FAULT.has(err.code);
        if (opts.once && (!conn.closed || fault)) throw err;
        const sameFault = fault && reportedFault === errorMessage(err).replace(/\d+/g, 'N');
        if (!sameFault) log(`sync interrupted: ${errorMessage(err)}; ${fault ? 'trying again later, waiting longer each time' : 'reconnecting'}`);
        if (fault) {
          reportedFault = errorMessage(err).replace(/\d+/g, 'N');
          backoff = faultBackoff;
          faultBackoff = Math.min(faultBackoff * 2, 60_000);
        }
      } finally {
        conn.close();
        state.connected = false;
        publish();
      }
      if (!opts.signal?.aborted) await sleep(backoff * (0.5 + Math.random()), opts.signal);
    }
  } catch (err) {
    // `keepsync status` tells why sync stopped.
    state.lastError = errorMessage(err);
    throw err;
  } finally {
    clearTimeout(debounce);
    await engine.close();
    await watcher?.close();
    index.close();
    state.connected = false;
    publish();
    unlock();
  }

  /** How often the folder is scanned whole while it cannot be watched. */
  function unwatchedScanMs(): number {
    return Math.min(FULL_SCAN_MS, Math.max(UNWATCHED_SCAN_MIN_MS, fullScanMs * UNWATCHED_SCAN_SHARE));
  }

  /** Runs cycles on this connection; answers true when `once` is satisfied. */
  async function loop(conn: Connection): Promise<boolean> {
    let idleRounds = 0;
    let writeBackoff = 2_000;
    let unreadableRetry = 5_000;
    for (;;) {
      if (opts.signal?.aborted) return true;
      if (conn.closed) throw new KeepsyncError('UNAVAILABLE', 'the connection to the server was lost');
      if (!kicked && !opts.once) {
        // A periodic full scan catches what the watcher missed, and soon (then less often) what could not be read.
        const unreadable = engine.hasUnreadable;
        if (!unreadable) unreadableRetry = 5_000;
        await new Promise<void>((r) => {
          const t = setTimeout(() => {
            engine.markFullScan();
            if (unreadable) unreadableRetry = Math.min(unreadableRetry * 2, FULL_SCAN_MS);
            kick();
          }, Math.min(FULL_SCAN_MS, unreadable ? unreadableRetry : Infinity, unwatched ? unwatchedScanMs() : Infinity));
          t.unref();
          // Woken by something else first: this timer is not needed any more.
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
        wake = undefined;
        continue;
      }
      kicked = false;
      let result;
      try {
        const full = engine.fullScanDue;
        const started = performance.now();
        result = await engine.cycle(conn);
        if (full) fullScanMs = performance.now() - started;
      } catch (err) {
        // Nothing a reconnect would fix (a full disk): wait longer each time, then try again.
        if (opts.once || !isKeepsyncError(err) || !WAIT_AND_RETRY.has(err.code)) throw err;
        state.lastError = errorMessage(err);
        publish();
        log(`${errorMessage(err)}; retrying in ${Math.round(writeBackoff / 1000)} s`);
        await sleep(writeBackoff, opts.signal);
        writeBackoff = Math.min(writeBackoff * 2, 60_000);
        kicked = true;
        continue;
      }
      writeBackoff = 2_000;
      reportedFault = undefined;
      state.pendingUp = result.pendingUp;
      state.pendingDown = result.pendingDown;
      if (!result.worked) {
        state.lastSyncAt = new Date().toISOString();
        state.pendingUp = state.pendingDown = 0;
        publish();
        if (opts.once) {
          // Settled when a cycle found nothing to do and nothing new arrived meanwhile.
          if (++idleRounds >= 1 && !engine.hasLocalWork) return true;
        } else if (engine.hasLocalWork) {
          // Paths to look at again (gone while a folder was walked): at once, not at the next scan.
          kicked = true;
        }
      } else {
        idleRounds = 0;
        kicked = true;
        publish();
      }
    }
  }
}

/**
 * Connects through the first address that answers: the one that worked last,
 * then the paired one, then the server's public URL. Every address is held
 * to the same pinned certificate, so trying one more is safe.
 */
async function connect(p: Pairing, index: LocalIndex, limits: { uploadLimit?: TokenBucket; downloadLimit?: TokenBucket }): Promise<Connection> {
  const addresses = [...new Set([p.server, p.publicUrl].filter((a): a is string => !!a))];
  let failure: unknown;
  for (const server of addresses) {
    try {
      return await Connection.open({
        server, fingerprint: p.fingerprint, token: p.token, folder: p.folder, epoch: index.epoch, seq: index.seq,
        platform: `${os.platform()}-${os.arch()}`, ...limits,
      });
    } catch (err) {
      // Another address is tried when this one cannot be reached or is someone else
      // (a LAN address away from home); a refusal by our server is final.
      const code = isKeepsyncError(err) ? err.code : '';
      if (code !== 'UNAVAILABLE' && code !== 'FINGERPRINT_MISMATCH') throw err;
      // A certificate that does not match says more than an address that did not answer.
      if (failure === undefined || code === 'FINGERPRINT_MISMATCH') failure = err;
    }
  }
  throw failure;
}

/**
 * Remembers the server's public URL from welcome, and the address that
 * worked first from now on, so a laptop away from home does not wait for the
 * LAN address to time out on every reconnect.
 */
function learnAddresses(home: ClientHome, p: Pairing, conn: Connection): Pairing {
  const publicUrl = conn.welcome.publicUrl;
  const others = [p.server, p.publicUrl, publicUrl].filter((a): a is string => !!a && a !== conn.server);
  const next: Pairing = { ...p, server: conn.server || p.server };
  const alternative = publicUrl && publicUrl !== next.server ? publicUrl : others.find((a) => a !== next.server);
  if (alternative) next.publicUrl = alternative;
  else delete next.publicUrl;
  if (next.server === p.server && next.publicUrl === p.publicUrl) return p;
  home.writePairing(next);
  return next;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
