import path from 'node:path';
import type { ContentStore } from './storage/ContentStore.js';

/** Everything `keepsync server` can be told, after defaults. */
export interface ServerConfig {
  dataDir: string;
  certsDir: string;
  host: string;
  port: number;
  databaseUrl?: string;
  publicUrl?: string;
  certFile?: string;
  keyFile?: string;
  adminPassword?: string;
  /** Plain HTTP for a TLS-terminating reverse proxy (explicit opt-in). */
  insecureHttp?: boolean;
  log?: (line: string) => void;
  clock?: () => number;
  /** How long an unreferenced chunk survives its last use before the collector may remove it (default one day). */
  gcGraceMs?: number;
  /** How often retention and chunk collection run (default hourly, and once at start). */
  maintenanceIntervalMs?: number;
  /** Wraps the content store the server uses (tests: a slow or failing disk around the real store). */
  wrapContent?: (store: ContentStore) => ContentStore;
}

/** Fills defaults from the environment, as the SPEC's table gives them. */
export function resolveConfig(opts: Partial<ServerConfig>, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const portText = opts.port ?? env.KEEPSYNC_PORT;
  return {
    dataDir: path.resolve(opts.dataDir ?? env.KEEPSYNC_DATA ?? './data'),
    certsDir: path.resolve(opts.certsDir ?? env.KEEPSYNC_CERTS ?? './certs'),
    host: opts.host ?? env.KEEPSYNC_HOST ?? '0.0.0.0',
    port: portText === undefined ? 8443 : Number(portText),
    databaseUrl: opts.databaseUrl ?? env.DATABASE_URL ?? undefined,
    publicUrl: opts.publicUrl ?? env.KEEPSYNC_PUBLIC_URL ?? undefined,
    certFile: opts.certFile,
    keyFile: opts.keyFile,
    adminPassword: opts.adminPassword ?? env.KEEPSYNC_ADMIN_PASSWORD ?? undefined,
    insecureHttp: opts.insecureHttp ?? false,
    log: opts.log,
    clock: opts.clock,
    gcGraceMs: opts.gcGraceMs,
    maintenanceIntervalMs: opts.maintenanceIntervalMs,
    wrapContent: opts.wrapContent,
  };
}
