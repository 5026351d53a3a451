import { KeepsyncError } from '@keepsync/protocol';
import type { MetadataStore } from './MetadataStore.js';
import type { DeleteHoldRecord, Folder, HeldDeleteRecord, TrashEntryRecord, TrashItemRecord } from './model.js';
import { ADMIN } from './Restorer.js';
import type { SyncService } from './SyncService.js';

/** A held burst of deletes, as the admin sees it. */
export interface HoldInfo {
  id: number;
  folder: string;
  device: string;
  /** Files the burst deletes. */
  files: number;
  heldAt: string;
  /** The first paths it deletes (folders stand for what they hold), by path. */
  paths: string[];
}

/** How many paths a hold shows. */
const SHOWN_PATHS = 20;

/**
 * The admin's side of held deletes (SAFETY.md E2; PushApplier.holdDeletes
 * holds them): list them, apply them (the deletes happen now, into the
 * trash, on every device) or undo them (the files go back to the device
 * that deleted them). Each decision runs under the folder's lock, and the
 * hold is read again under it, so a hold is decided once.
 */
export class DeleteHolds {
  constructor(private readonly meta: MetadataStore, private readonly sync: SyncService) {}

  async list(): Promise<HoldInfo[]> {
    const out: HoldInfo[] = [];
    for (const h of await this.meta.holds('held')) {
      const folder = await this.meta.folderById(h.folderId);
      const device = h.deviceId === null ? 'admin' : ((await this.meta.deviceName(h.deviceId)) ?? 'removed device');
      const rows = await this.rows(h.id);
      out.push({
        id: h.id, folder: folder?.name ?? String(h.folderId), device, files: h.files, heldAt: new Date(h.heldAt).toISOString(),
        paths: rows.slice(0, SHOWN_PATHS).map((r) => r.path),
      });
    }
    return out;
  }

  /** Applies a held burst: its deletes happen now, as the device made them. */
  async apply(holdId: number): Promise<{ message: string }> {
    const { hold, folder, rows } = await this.load(holdId);
    const device = { id: hold.deviceId, name: hold.deviceId === null ? 'admin' : ((await this.meta.deviceName(hold.deviceId)) ?? 'removed device') };
    await this.sync.mutate(folder, device, async (a) => {
      await this.stillHeld(a.transaction, hold);
      await a.applyHeld(rows);
      await a.transaction.setHoldState(hold.id, 'applied', a.now);
      await a.transaction.activity('hold', `admin applied ${device.name}'s ${hold.files} held deletes; the files are in the trash`, hold.deviceId, folder.id, a.now);
    });
    return { message: `applied ${hold.files} held deletes of ${device.name}; the files are in the trash` };
  }

  /** Undoes a held burst: the device that deleted the files gets them back. */
  async undo(holdId: number): Promise<{ message: string }> {
    const { hold, folder, rows } = await this.load(holdId);
    const trashed: Array<{ item: TrashItemRecord; entries: TrashEntryRecord[] }> = [];
    await this.sync.mutate(folder, ADMIN, async (a) => {
      await this.stillHeld(a.transaction, hold);
      await a.undoHeld(rows, trashed);
      await a.transaction.setHoldState(hold.id, 'undone', a.now);
      await a.transaction.activity('hold', `admin undid ${hold.files} held deletes; the files go back to the device that deleted them`, hold.deviceId, folder.id, a.now);
    }, async () => {
      // Under the folder lock: the burst's trash items as they are now.
      trashed.length = 0;
      for (const r of rows) {
        if (r.kind !== 'trash' || r.trashItemId === null) continue;
        const item = await this.meta.trashItem(r.trashItemId);
        if (item && item.state === 'trashed') trashed.push({ item, entries: await this.meta.trashEntries(item.id) });
      }
    });
    return { message: `undid ${hold.files} held deletes; the files are back` };
  }

  private async load(holdId: number): Promise<{ hold: DeleteHoldRecord; folder: Folder; rows: HeldDeleteRecord[] }> {
    const hold = await this.meta.hold(holdId);
    const folder = hold && (await this.meta.folderById(hold.folderId));
    if (!hold || !folder || hold.state !== 'held') throw notHeld(holdId);
    return { hold, folder, rows: await this.rows(hold.id) };
  }

  private async rows(holdId: number): Promise<HeldDeleteRecord[]> {
    return this.meta.transaction((tx) => tx.heldDeletes(holdId));
  }

  private async stillHeld(tx: { hold(id: number): Promise<DeleteHoldRecord | undefined> }, hold: DeleteHoldRecord): Promise<void> {
    if ((await tx.hold(hold.id))?.state !== 'held') throw notHeld(hold.id);
  }
}

function notHeld(id: number): KeepsyncError {
  return new KeepsyncError('NOT_FOUND', `hold ${id} is not waiting for a decision; it may have been applied or undone already (GET /api/v1/holds lists those waiting)`);
}
