import type { ContentStore } from '../storage/ContentStore.js';
import { ChunkMarks } from './ChunkMarks.js';
import type { MaintenanceStore } from './MaintenanceStore.js';

/** Versions read per query while marking. */
const MARK_PAGE = 500;

/** What one collection did. */
export interface CollectionReport {
  /** Distinct chunks the index refers to. */
  referenced: number;
  /** Chunk files found in the store. */
  stored: number;
  /** Unreferenced chunks left alone because they were used within the grace period. */
  young: number;
  removed: number;
  freedBytes: number;
}

/**
 * Mark and sweep over the chunk store, with no reference counts to drift:
 * mark every chunk that any version row's manifest names (current files,
 * history and trash all point at version rows), then remove the chunks not
 * marked and not used within the grace period.
 *
 * Why a push or restore running at the same time is safe: a push names only
 * chunks that `missing` or `put` touched just before (so they are young), and
 * a restore copies the manifest of a version row that already existed before
 * the mark read past its id (ids only grow). Removal goes through
 * `deleteUnused`, which steps aside for a use in progress. A crash mid-way
 * leaves some garbage for the next run and never a referenced chunk removed.
 */
export class ChunkCollector {
  constructor(
    private readonly store: MaintenanceStore,
    private readonly content: ContentStore,
    /** Unreferenced chunks used within this many ms are kept (uploads whose push is still to come). */
    private readonly graceMs: number,
  ) {}

  async collect(signal?: AbortSignal): Promise<CollectionReport> {
    // File times are wall-clock times: compare them with the wall clock.
    const unusedSince = Date.now() - this.graceMs;
    const marks = await this.mark(signal);
    const report: CollectionReport = { referenced: marks.size, stored: 0, young: 0, removed: 0, freedBytes: 0 };
    for await (const chunk of this.content.list()) {
      signal?.throwIfAborted();
      report.stored++;
      if (marks.has(chunk.hash)) continue;
      if (chunk.usedAt >= unusedSince) {
        report.young++;
        continue;
      }
      const freed = await this.content.deleteUnused(chunk.hash, unusedSince);
      if (freed > 0) {
        report.removed++;
        report.freedBytes += freed;
      } else report.young++;
    }
    return report;
  }

  private async mark(signal?: AbortSignal): Promise<ChunkMarks> {
    const marks = new ChunkMarks(await this.store.chunkReferences());
    for (let after = 0; ;) {
      signal?.throwIfAborted();
      const page = await this.store.versionsAfter(after, MARK_PAGE);
      for (const v of page) marks.addManifest(v.manifest);
      if (page.length < MARK_PAGE) break;
      after = page[page.length - 1].id;
    }
    marks.seal();
    return marks;
  }
}
