import fs from 'node:fs';
import path from 'node:path';
import { KeepsyncError } from '@keepsync/protocol';
import { directFs, type DirectHandle } from './directFs.js';

/*
 * Symbolic links in the synced folder are not followed, anywhere on a path:
 * a folder the scan saw may be swapped for a link to somewhere else before
 * the client reads or writes under it. These checks run right before each
 * read or write, so that such a swap leaks nothing from outside the folder
 * and writes nothing there.
 */

/**
 * True when every parent of `localPath` (relative, `/`-separated) is a real
 * folder under `root`, none of them a symbolic link. A missing parent
 * answers false.
 */
export async function parentsAreFolders(root: string, localPath: string): Promise<boolean> {
  const parts = localPath.split('/').slice(0, -1);
  let cur = root;
  for (const part of parts) {
    cur = path.join(cur, part);
    const st = await directFs.lstat(cur).catch(() => undefined);
    if (!st?.isDirectory()) return false;
  }
  return true;
}

/**
 * Where a synced folder's root really is (links resolved), looked up once
 * until `forget` (each sync cycle looks afresh).
 */
export class RealRoot {
  private real: Promise<string | undefined> | undefined;

  constructor(readonly root: string) {}

  path(): Promise<string | undefined> {
    this.real ??= directFs.realpath(this.root).catch(() => undefined);
    return this.real;
  }

  forget(): void {
    this.real = undefined;
  }
}

/**
 * Opens a file for reading without following a symbolic link, neither at its
 * name nor in its parents, and, when `ino` is given, only if it is still that
 * file. Throws a one-line error otherwise.
 */
export async function openNoFollow(root: string, localPath: string, ino?: number, real = new RealRoot(root)): Promise<DirectHandle> {
  const abs = path.join(root, ...localPath.split('/'));
  const fh = await directFs.open(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ELOOP') throw new KeepsyncError('CONFLICT', 'it is a symbolic link now, which is not followed');
    throw err;
  });
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new KeepsyncError('CONFLICT', 'it is not a file now');
    if ((ino !== undefined && st.ino !== ino) || !(await openedInPlace(await whereOpened(fh), real, localPath))) {
      throw new KeepsyncError('CONFLICT', 'it was replaced while being read (a folder on its path is a symbolic link now, or it is another file)');
    }
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/**
 * Where the kernel says an open file is (Linux: /proc/self/fd), or undefined
 * where this cannot be asked.
 */
export async function whereOpened(fh: DirectHandle): Promise<string | undefined> {
  return directFs.readlink(`/proc/self/fd/${fh.fd}`).catch(() => undefined);
}

/**
 * A file opened as `localPath` (or as `rel`, a temporary name beside it) is
 * where it should be: at `rel` under the real root, by where the kernel says
 * it is (`where`, see whereOpened), which also shows a folder on the way
 * swapped for a link and back between the open and this check. Where that
 * cannot be asked, every folder on the way is a real folder now.
 */
export async function openedInPlace(where: string | undefined, real: RealRoot, localPath: string, rel = localPath): Promise<boolean> {
  if (where === undefined) return parentsAreFolders(real.root, localPath);
  const realRoot = await real.path();
  return realRoot !== undefined && where === path.join(realRoot, ...rel.split('/'));
}

/**
 * The first name on the way to `localPath`, itself included, that is a
 * symbolic link: what keeps a server change from being written here. Answers
 * its local path and an identity that changes when it is replaced, or undefined.
 */
export async function linkInTheWay(root: string, localPath: string): Promise<{ at: string; id: string } | undefined> {
  const parts = localPath.split('/');
  for (let i = 0; i < parts.length; i++) {
    const at = parts.slice(0, i + 1).join('/');
    const st = await directFs.lstat(path.join(root, ...parts.slice(0, i + 1))).catch(() => undefined);
    if (!st) return undefined;
    if (st.isSymbolicLink()) return { at, id: `${st.dev}:${st.ino}:${st.mtimeMs}` };
    if (!st.isDirectory()) return undefined;
  }
  return undefined;
}
