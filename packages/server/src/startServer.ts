import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { KEEPSYNC_VERSION, KeepsyncError, errorMessage } from '@keepsync/protocol';
import { resolveConfig, type ServerConfig } from './config.js';
import { openDatabase } from './storage/db.js';
import { FsContentStore } from './storage/FsContentStore.js';
import { KnexMetadataStore } from './storage/KnexMetadataStore.js';
import { KnexMaintenanceStore } from './storage/KnexMaintenanceStore.js';
import { Maintenance } from './maintenance/Maintenance.js';
import { SyncService } from './sync/SyncService.js';
import { Restorer } from './sync/Restorer.js';
import { DeleteHolds } from './sync/DeleteHolds.js';
import { SessionRegistry } from './sessions/SessionRegistry.js';
import { WsGateway } from './transport/WsGateway.js';
import { SERVER_LIMITS, limitConnectionsPerAddress } from './transport/connectionLimits.js';
import { loadCertificate, watchCertificate, type ServerCertificate } from './tls/certificates.js';
import { DeviceRegistry } from './auth/DeviceRegistry.js';
import { AdminAuth } from './auth/AdminAuth.js';
import { Settings } from './settings/Settings.js';
import { writeServerState } from './settings/serverState.js';
import { createApp } from './http/app.js';

/**
 * Refuses to start on a database that refers to content when the content
 * store is missing or empty (a data directory restored without it, a disk
 * not mounted): serving such an index would hand devices files that cannot
 * be downloaded, and a fresh store would hide what happened.
 */
async function assertContentPresent(content: FsContentStore, store: KnexMaintenanceStore, dataDir: string): Promise<void> {
  const refs = await store.chunkReferences();
  if (refs === 0 || (await content.holdsChunks())) return;
  const dir = path.join(dataDir, 'chunks');
  throw new KeepsyncError(
    'STORAGE',
    `the content store ${dir} is missing or empty, but the database refers to ${refs} chunks; mount the disk that holds it or restore it from a backup, then start again`,
  );
}

/** A running server. */
export interface RunningServer {
  /** `https://HOST:PORT` as bound (HOST as configured). */
  url: string;
  /** The address put in pairing links when no public URL is set. */
  linkUrl: string;
  port: number;
  fingerprint: string;
  /** Set on the first start when the admin password was generated. */
  adminPassword?: string;
  sessions: SessionRegistry;
  /** Retention and chunk collection: `run()` applies them now. */
  maintenance: Maintenance;
  close(): Promise<void>;
}

/**
 * The composition root: opens the index and the content store, loads the
 * certificate, and serves the admin page, the API and the sync WebSocket on
 * one port. No logic lives here; only the wiring and the shutdown order.
 */
export async function startServer(options: Partial<ServerConfig> = {}): Promise<RunningServer> {
  const cfg = resolveConfig(options);
  const log = cfg.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const clock = cfg.clock ?? Date.now;
  const db = await openDatabase({ databaseUrl: cfg.databaseUrl, dataDir: cfg.dataDir });
  const closers: Array<() => Promise<void> | void> = [() => db.destroy()];
  try {
    const store = new FsContentStore(cfg.dataDir);
    await assertContentPresent(store, new KnexMaintenanceStore(db), cfg.dataDir);
    const readOnly = await store.init();
    if (readOnly) log(`warning: ${readOnly}`);
    const content = cfg.wrapContent ? cfg.wrapContent(store) : store;
    const meta = new KnexMetadataStore(db);
    await meta.ensureFolder('Sync', randomBytes(16).toString('hex'), clock());
    const settings = new Settings(db);
    const sync = new SyncService(meta, content, clock, async () => (await settings.get()).deleteHold);
    const restorer = new Restorer(meta, sync, clock);
    const holds = new DeleteHolds(meta, sync);
    const sessions = new SessionRegistry();
    sync.on('changed', (folderId, seq) => sessions.notifyFolder(folderId, seq));
    const devices = new DeviceRegistry(db, clock);
    const admin = new AdminAuth(db, clock);
    const adminPassword = await admin.ensurePassword(cfg.adminPassword);
    if (cfg.publicUrl) await settings.update({ publicUrl: cfg.publicUrl });
    const maintenance = new Maintenance({
      store: new KnexMaintenanceStore(db), content, settings, clock, log, graceMs: cfg.gcGraceMs, intervalMs: cfg.maintenanceIntervalMs,
    });

    const certOpts = { certsDir: cfg.certsDir, certFile: cfg.certFile, keyFile: cfg.keyFile, hostnames: publicHost(cfg.publicUrl) };
    let certificate: ServerCertificate | undefined = cfg.insecureHttp ? undefined : await loadCertificate(certOpts);
    const scheme = cfg.insecureHttp ? 'http' : 'https';
    let url = '';
    let linkUrl = '';
    const app = createApp({
      db, devices, admin, settings, presence: sessions, version: KEEPSYNC_VERSION, clock, log, behindProxy: cfg.insecureHttp,
      certificate: () => certificate ?? { cert: '', key: '', fingerprint: '', subject: '', validFrom: '', validTo: '', selfSigned: false },
      serverUrl: () => linkUrl,
      folders: { meta, content, restorer, holds },
      storage: () => maintenance.figures(),
      retentionChanged: () => void maintenance.run().catch(() => {}),
    });
    const server = certificate
      ? https.createServer({ cert: certificate.cert, key: certificate.key, minVersion: 'TLSv1.2', ...SERVER_LIMITS }, app)
      : http.createServer(SERVER_LIMITS, app);
    if (!cfg.insecureHttp) limitConnectionsPerAddress(server);
    const gateway = new WsGateway({
      meta, sync, content, folderOps: restorer, sessions, devices, log, behindProxy: cfg.insecureHttp,
      publicUrl: async () => (await settings.get()).publicUrl,
    });
    gateway.attach(server);
    if (certificate && server instanceof https.Server) {
      const https_ = server;
      const stop = watchCertificate(certOpts, (next) => {
        certificate = next;
        https_.setSecureContext({ cert: next.cert, key: next.key, minVersion: 'TLSv1.2' });
        // New pairing links (made by `keepsync server pair` too) must carry the new fingerprint.
        void writeServerState(cfg.dataDir, { url: linkUrl, fingerprint: next.fingerprint })
          .then(() => log(`certificate reloaded: sha256/${next.fingerprint}`))
          .catch((err) => log(`certificate reloaded: sha256/${next.fingerprint}, but ${cfg.dataDir}/server.json could not be updated: ${errorMessage(err)}`));
      });
      closers.push(stop);
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(cfg.port, cfg.host, () => resolve());
    });
    const port = (server.address() as AddressInfo).port;
    url = `${scheme}://${formatHost(cfg.host)}:${port}`;
    linkUrl = `${scheme}://${formatHost(reachableHost(cfg.host))}:${port}`;
    await writeServerState(cfg.dataDir, { url: linkUrl, fingerprint: certificate?.fingerprint ?? '' });
    // Closed in reverse: sockets first, then the listener, the watcher, the database.
    closers.push(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
      () => sessions.closeAll(),
      () => gateway.close(),
      () => maintenance.stop(),
    );
    maintenance.start();
    return {
      url, linkUrl, port, fingerprint: certificate?.fingerprint ?? '', adminPassword, sessions, maintenance,
      close: async () => {
        for (const c of closers.reverse().splice(0)) {
          try {
            await c();
          } catch (err) {
            log(`shutdown step failed: ${errorMessage(err)}`);
          }
        }
      },
    };
  } catch (err) {
    for (const c of closers.reverse()) await Promise.resolve(c()).catch(() => {});
    throw err;
  }
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** A wildcard bind address is not something a device can dial: use a LAN address. */
function reachableHost(host: string): string {
  if (host !== '0.0.0.0' && host !== '::') return host;
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

function publicHost(publicUrl: string | undefined): string[] {
  if (!publicUrl) return [];
  try {
    return [new URL(publicUrl).hostname];
  } catch {
    return [];
  }
}
