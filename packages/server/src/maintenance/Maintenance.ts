import { errorMessage } from '@keepsync/protocol';
import type { ContentStore } from '../storage/ContentStore.js';
import type { ServerSettings } from '../settings/Settings.js';
import { ChunkCollector, type CollectionReport } from './ChunkCollector.js';
import type { MaintenanceStore, RetentionResult } from './MaintenanceStore.js';

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * How long an unreferenced chunk is kept after its last use: room for an
 * upload whose push is still to come (a large file over a slow link uploads
 * for hours before its push names its first chunks).
 */
export const DEFAULT_GC_GRACE_MS = 24 * 60 * 60 * 1000;
/** How often retention and collection run (and once at start). */
export const DEFAULT_MAINTENANCE_INTERVAL_MS = 60 * 60 * 1000;

/** What one maintenance run did. */
export interface MaintenanceReport {
  retention: RetentionResult;
  collection: CollectionReport;
  startedAt: number;
  durationMs: number;
}

/** The `storage` object of GET /api/v1/status. */
export interface StorageFigures {
  currentBytes: number;
  versionBytes: number;
  trashBytes: number;
  /** Chunk bytes on disk: every file's content once, however many files, versions and trash items share it. */
  diskBytes: number;
  chunks: number;
  /** Earlier versions kept (not counting current files). */
  versions: number;
  trashItems: number;
}

export interface MaintenanceOptions {
  store: MaintenanceStore;
  content: ContentStore;
  settings: { get(): Promise<ServerSettings> };
  /** The server's clock: retention ages are measured with it. */
  clock: () => number;
  graceMs?: number;
  intervalMs?: number;
  log: (line: string) => void;
}

/**
 * The background job: applies retention to every folder, then collects the
 * chunks nothing refers to any more. Runs at start, every interval, and on
 * demand (after a settings change). One run at a time; asking while a run
 * is going schedules one more after it, so a change is never missed.
 */
export class Maintenance {
  private readonly collector: ChunkCollector;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<MaintenanceReport> | undefined;
  private next: Promise<MaintenanceReport> | undefined;
  /** The last finished run, for the status figures. */
  last: MaintenanceReport | undefined;

  constructor(private readonly opts: MaintenanceOptions) {
    this.collector = new ChunkCollector(opts.store, opts.content, opts.graceMs ?? DEFAULT_GC_GRACE_MS);
  }

  /** Runs now in the background, then every interval until `stop`. */
  start(): void {
    const tick = () => {
      this.run().catch(() => {});
      this.timer = setTimeout(tick, this.opts.intervalMs ?? DEFAULT_MAINTENANCE_INTERVAL_MS);
      this.timer.unref();
    };
    tick();
  }

  /** Runs retention and collection; resolves with what this run (or the one queued behind the current run) did. */
  run(): Promise<MaintenanceReport> {
    if (!this.current) {
      this.current = this.once().finally(() => {
        this.current = undefined;
      });
      return this.current;
    }
    this.next ??= this.current.catch(() => undefined).then(() => {
      this.next = undefined;
      return this.run();
    });
    return this.next;
  }

  /**
   * Bytes of current files, of earlier versions and of the trash (file
   * sizes, before deduplication), and the bytes the chunk store holds on
   * disk after deduplication.
   */
  async figures(): Promise<StorageFigures> {
    const [index, disk] = await Promise.all([this.opts.store.figures(), this.opts.content.usage()]);
    return {
      currentBytes: index.currentBytes,
      versionBytes: index.versionBytes,
      trashBytes: index.trashBytes,
      diskBytes: disk.bytes,
      chunks: disk.chunks,
      versions: index.versions,
      trashItems: index.trashItems,
    };
  }

  /** Stops the schedule and waits for a run in progress to stop at its next step. */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.abort.abort();
    await Promise.allSettled([this.current, this.next]);
  }

  private async once(): Promise<MaintenanceReport> {
    const signal = this.abort.signal;
    signal.throwIfAborted();
    const startedAt = Date.now();
    try {
      const settings = await this.opts.settings.get();
      const now = this.opts.clock();
      const policy = {
        keep: settings.versions.keep,
        versionsReplacedBefore: now - settings.versions.maxAgeDays * DAY_MS,
        trashDeletedBefore: now - settings.trashDays * DAY_MS,
      };
      const retention: RetentionResult = { trashItems: 0, versions: 0, versionBytes: 0 };
      for (const folder of await this.opts.store.folders()) {
        signal.throwIfAborted();
        const r = await this.opts.store.applyRetention(folder.id, policy, now);
        retention.trashItems += r.trashItems;
        retention.versions += r.versions;
        retention.versionBytes += r.versionBytes;
      }
      const collection = await this.collector.collect(signal);
      const report = { retention, collection, startedAt, durationMs: Date.now() - startedAt };
      this.last = report;
      if (retention.versions || retention.trashItems || collection.removed) {
        this.opts.log(
          `maintenance: removed ${retention.versions} earlier versions, purged ${retention.trashItems} trash items, ` +
            `freed ${collection.removed} chunks (${collection.freedBytes} bytes) in ${report.durationMs} ms`,
        );
      }
      return report;
    } catch (err) {
      if (!signal.aborted) this.opts.log(`maintenance failed (it runs again later): ${errorMessage(err)}`);
      throw err;
    }
  }
}
