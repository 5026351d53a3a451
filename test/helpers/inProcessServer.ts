import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, type MaintenanceReport, type RunningServer, type ServerConfig } from '@keepsync/server';
import { TestServer } from './cluster.js';
import type { TestDatabase } from './databases.js';
import { keepsync, type RunResult } from './processes.js';

/**
 * The server in this test process, so that the test can move its clock
 * (retention counts days) and run its maintenance job at a chosen moment.
 * Devices and `server verify` are still real CLI processes.
 */
export class InProcessServer extends TestServer {
  running?: RunningServer;
  /** Added to the wall clock: how far into the future the server lives. */
  offsetMs = 0;
  readonly log: string[] = [];

  /** `options`: more of the server's configuration (a wrapped content store, say). */
  constructor(db: TestDatabase, private readonly options: Partial<ServerConfig> = {}) {
    super(db);
    this.adminPassword = `admin-${randomBytes(9).toString('hex')}`;
  }

  override async start(): Promise<this> {
    this.running = await startServer({
      dataDir: this.dataDir, certsDir: this.certsDir, host: '127.0.0.1', port: 0, databaseUrl: this.db.url,
      adminPassword: this.adminPassword, clock: () => Date.now() + this.offsetMs, log: (line) => this.log.push(line), ...this.options,
    });
    this.url = this.running.url;
    this.fingerprint = this.running.fingerprint;
    return this;
  }

  override async stop(): Promise<void> {
    await this.running?.close();
    this.running = undefined;
  }

  maintain(): Promise<MaintenanceReport> {
    return this.running!.maintenance.run();
  }

  verify(): Promise<RunResult> {
    return keepsync(['server', 'verify', '--data', this.dataDir, ...(this.db.url ? ['--database-url', this.db.url] : [])]);
  }

  chunkFile(hash: string): string {
    return path.join(this.dataDir, 'chunks', hash.slice(0, 2), hash);
  }

  /** Every chunk file with its size, as `du` would count the store's content. */
  chunkFiles(): Map<string, number> {
    const out = new Map<string, number>();
    const root = path.join(this.dataDir, 'chunks');
    for (const d of fs.readdirSync(root)) {
      if (d.length !== 2) continue;
      for (const f of fs.readdirSync(path.join(root, d))) out.set(f, fs.statSync(path.join(root, d, f)).size);
    }
    return out;
  }

  diskBytes(): number {
    return [...this.chunkFiles().values()].reduce((a, b) => a + b, 0);
  }

  /**
   * Makes every chunk look last used `ms` ago, as if that much time had passed
   * (once new chunks, made durable in groups shortly after they arrive, are in place).
   */
  async ageChunks(ms: number): Promise<void> {
    const tmp = path.join(this.dataDir, 'chunks', 'tmp');
    for (let i = 0; fs.readdirSync(tmp).length > 0; i++) {
      if (i === 500) throw new Error('new chunks were not put in place within 5 s');
      await new Promise((r) => setTimeout(r, 10));
    }
    const then = new Date(Date.now() - ms);
    for (const hash of this.chunkFiles().keys()) fs.utimesSync(this.chunkFile(hash), then, then);
  }
}

