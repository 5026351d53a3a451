import type { Knex } from 'knex';

/** Kinds of activity rows written by this package (others add their own). */
export type ActivityKind = 'pairing-created' | 'device-paired' | 'device-renamed' | 'device-removed' | (string & {});

/** One line of the admin page's recent activity. */
export interface ActivityRecord {
  kind: ActivityKind;
  /** A sentence for a human, e.g. `device "Ann's laptop" paired`. */
  message: string;
  deviceId?: number | null;
  folderId?: number | null;
}

/**
 * Appends an activity row. Takes a transaction when the row must appear
 * together with the change it describes.
 */
export async function recordActivity(db: Knex | Knex.Transaction, at: number, rec: ActivityRecord): Promise<void> {
  await db('activity').insert({
    at,
    kind: rec.kind,
    message: rec.message,
    device_id: rec.deviceId ?? null,
    folder_id: rec.folderId ?? null,
  });
}
