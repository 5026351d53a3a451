import type { Op } from '@keepsync/protocol';

/**
 * When a burst of one device's deletes is held (SAFETY.md E2): at `files`
 * files, or at `percent` of the folder's files in a folder of at least
 * `minFolderFiles` files. 0 turns a rule off; both off, nothing is held.
 */
export interface DeleteHoldRule {
  files: number;
  percent: number;
  minFolderFiles: number;
}

/**
 * A burst: the deletes one device made in a folder within this long of each
 * other (the same span that gathers a folder's deletes into one trash item).
 */
export const HOLD_WINDOW_MS = 2 * 60_000;

/** True when deleting `files` of a folder that held `folderFiles` files is a burst to hold. */
export function crossesHold(rule: DeleteHoldRule, files: number, folderFiles: number): boolean {
  if (files <= 0) return false;
  if (rule.files > 0 && files >= rule.files) return true;
  return rule.percent > 0 && folderFiles > 0 && folderFiles >= rule.minFolderFiles && files * 100 >= rule.percent * folderFiles;
}

export type DeleteOp = Extract<Op, { op: 'delete' }>;
