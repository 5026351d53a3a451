import type { Knex } from 'knex';
import type { AdminAuth } from '../auth/AdminAuth.js';
import type { DeviceRegistry } from '../auth/DeviceRegistry.js';
import type { Settings } from '../settings/Settings.js';
import type { ContentStore } from '../storage/ContentStore.js';
import type { MetadataStore } from '../sync/MetadataStore.js';
import type { Restorer } from '../sync/Restorer.js';
import type { DeleteHolds } from '../sync/DeleteHolds.js';
import type { ServerCertificate } from '../tls/certificates.js';

/**
 * Which devices have live connections. Implemented by the sessions layer;
 * the HTTP app only asks and, on removal, disconnects.
 */
export interface Presence {
  /** True while the device has at least one open WebSocket. */
  isOnline(deviceId: number): boolean;
  /** Closes every WebSocket of the device at once with close code 4401 (token revoked). */
  disconnect(deviceId: number): void;
  /** How many devices are connected now. */
  online(): number;
}

/** The folder index, content and restores, for browsing files, versions and the trash. */
export interface FolderDeps {
  meta: MetadataStore;
  content: ContentStore;
  restorer: Restorer;
  /** Deletes held for the admin to apply or undo. */
  holds: DeleteHolds;
}

/** Everything the HTTP app needs; startServer.ts builds it. */
export interface AppDeps {
  db: Knex;
  devices: DeviceRegistry;
  admin: AdminAuth;
  settings: Settings;
  presence: Presence;
  /** The certificate served right now (it may be hot-reloaded). */
  certificate: () => ServerCertificate;
  /** `https://host:port` as listening; pairing links use it when no public URL is set. */
  serverUrl: () => string;
  version: string;
  clock?: () => number;
  /**
   * True only when the server speaks plain HTTP behind a TLS-terminating
   * reverse proxy (explicit opt-in): then X-Forwarded-* headers are trusted.
   */
  behindProxy?: boolean;
  /** Storage figures for GET /status (bytes of current files, versions, trash, and on disk). */
  storage?: () => Promise<object>;
  /** Called after the settings changed, so that retention applies them without waiting. */
  retentionChanged?: () => void;
  /** Where unexpected errors are reported; default console.error. */
  log?: (message: string) => void;
  /** Files, versions and trash of the sync folders. */
  folders: FolderDeps;
}
