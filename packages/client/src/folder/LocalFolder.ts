import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { KeepsyncError, TEMP_PREFIX, chunkDataBuffer, crashPoint } from '@keepsync/protocol';
import { directFs, type DirectHandle } from './directFs.js';
import { RealRoot, linkInTheWay, openNoFollow, openedInPlace, parentsAreFolders, whereOpened } from './noFollow.js';

/** What a path must still look like on disk before it may be replaced or removed. */
export interface Expected {
  /** The path must be absent. */
  absent?: boolean;
  kind?: 'file' | 'dir';
  size?: number;
  mtime?: number;
  ino?: number;
  /** Status change time; checked when known. */
  ctime?: number;
}

/** A file being written: chunks are appended, then `commit` renames it into place. */
export interface PendingWrite {
  fh: DirectHandle;
  tmp: string;
  target: string;
}

/**
 * The only code that writes into the user's folder. Every write goes to a
 * temporary `.keepsync-*` file next to the target and is renamed into place
 * only after the target is checked again against what the index expects, so
 * a change the user made meanwhile is never overwritten or deleted. Paths
 * are checked to stay inside the root, through real directories only.
 */
export class LocalFolder {
  /** Parent folders checked to be real folders during this cycle (see forgetDirs). */
  private readonly knownDirs = new Set<string>();
  /** Where the root really is (links resolved), looked up once a cycle; the scanner shares it. */
  readonly real: RealRoot;

  constructor(readonly root: string) {
    this.real = new RealRoot(root);
  }

  /** Forgets which folders were checked: each sync cycle looks at the disk afresh. */
  forgetDirs(): void {
    this.knownDirs.clear();
    this.real.forget();
  }

  abs(localPath: string): string {
    const p = path.join(this.root, ...localPath.split('/'));
    if (p !== this.root && !p.startsWith(this.root + path.sep)) throw new KeepsyncError('PATH_INVALID', `refusing to touch ${localPath}: outside the folder`);
    return p;
  }

  /** The folder root exists and is a directory. */
  rootExists(): boolean {
    try {
      return fs.statSync(this.root).isDirectory();
    } catch {
      return false;
    }
  }

  /** Identity of the root directory (device and inode), or undefined when missing. */
  rootId(): string | undefined {
    try {
      const st = fs.statSync(this.root);
      return st.isDirectory() ? `${st.dev}:${st.ino}` : undefined;
    } catch {
      return undefined;
    }
  }

  /** How many entries the root holds besides Keepsync's own temporary files; undefined when it cannot be read. */
  rootEntryCount(): number | undefined {
    try {
      return fs.readdirSync(this.root).filter((name) => !name.startsWith('.keepsync-')).length;
    } catch {
      return undefined;
    }
  }

  /** Creates the parents of `localPath` as real directories (never through a symlink). */
  async ensureParents(localPath: string): Promise<void> {
    const parts = localPath.split('/').slice(0, -1);
    if (parts.length === 0 || this.knownDirs.has(parts.join('/'))) return;
    let cur = this.root;
    for (const part of parts) {
      cur = path.join(cur, part);
      const st = await directFs.lstat(cur).catch(() => undefined);
      if (st?.isDirectory()) continue;
      if (st) throw notAFolder(path.relative(this.root, cur).split(path.sep).join('/'));
      await directFs.mkdir(cur).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    }
  }

  /**
   * True when the path on disk still matches `exp`, with real folders on the
   * way: under a symbolic link nothing matches, so nothing is written there.
   */
  async matches(localPath: string, exp: Expected): Promise<boolean> {
    if (!exp.absent) return (await this.statIfMatches(localPath, exp)) !== undefined;
    // A missing parent is fine (the path is absent); a link on the way is not.
    if (await this.linkAbove(localPath)) return false;
    const abs = this.abs(localPath);
    if (await directFs.lstat(abs).then(() => true, () => false)) return false;
    return !(await hasNormalizationTwin(abs));
  }

  /**
   * The stat of the file or folder at `localPath` when it still matches
   * `exp`, else undefined. What follows a check relies on this very stat: one
   * taken again could already show a save made after the check, and record
   * it as synced.
   */
  private async statIfMatches(localPath: string, exp: Expected): Promise<fs.Stats | undefined> {
    if (await this.linkAbove(localPath)) return undefined;
    const st = await directFs.lstat(this.abs(localPath)).catch(() => undefined);
    if (!st) return undefined;
    if (exp.kind === 'dir') return st.isDirectory() ? st : undefined;
    if (!st.isFile()) return undefined;
    const same =
      (exp.size === undefined || st.size === exp.size) &&
      (exp.mtime === undefined || st.mtimeMs === exp.mtime) &&
      (exp.ino === undefined || st.ino === exp.ino) &&
      (!exp.ctime || st.ctimeMs === exp.ctime);
    return same ? st : undefined;
  }

  /** Whether a symbolic link stands on the way to `localPath` (a folder above it). */
  private async linkAbove(localPath: string): Promise<boolean> {
    const slash = localPath.lastIndexOf('/');
    return slash > 0 && (await linkInTheWay(this.root, localPath.slice(0, slash))) !== undefined;
  }

  /** The absolute path of the temporary file `.keepsync-` + `name` beside `localPath`. */
  tempPath(localPath: string, name: string): string {
    return path.join(path.dirname(this.abs(localPath)), `${TEMP_PREFIX}${name}`);
  }

  /**
   * Starts writing `localPath` through a new temporary file beside it, named
   * `.keepsync-` + `name` when given (a name that finds the file again after
   * a crash, see `reopen`), or a random name. A file already there under
   * that name is one of ours and is replaced.
   */
  async begin(localPath: string, name?: string): Promise<PendingWrite> {
    await this.ensureParents(localPath);
    const dir = path.posix.dirname(localPath);
    // Looked at once a cycle; a folder swapped for a link since shows below, once the file is open.
    if (!this.knownDirs.has(dir) && !(await parentsAreFolders(this.root, localPath))) throw notAFolder(dir);
    const target = this.abs(localPath);
    const tmp = this.tempPath(localPath, name ?? randomBytes(6).toString('hex'));
    const fh = await directFs.open(tmp, 'wx', 0o644).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code === 'EEXIST' && name !== undefined) {
        await unlinkIfThere(tmp);
        return directFs.open(tmp, 'wx', 0o644);
      }
      if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR') throw err;
      // A parent folder changed since it was last checked: check again.
      this.knownDirs.clear();
      await this.ensureParents(localPath);
      return directFs.open(tmp, 'wx', 0o644);
    });
    // A folder on the way swapped for a link since it was checked: write nothing
    // there, and take the empty file back from wherever it was created.
    const where = await whereOpened(fh);
    if (!(await openedInPlace(where, this.real, localPath, path.relative(this.root, tmp).split(path.sep).join('/')))) {
      await fh.close();
      this.knownDirs.clear();
      this.real.forget();
      await unlinkIfThere(where !== undefined && path.basename(where) === path.basename(tmp) ? where : tmp);
      throw notAFolder(dir);
    }
    this.knownDirs.add(dir);
    return { fh, tmp, target };
  }

  /**
   * Opens again the temporary file `.keepsync-` + `name` that an earlier
   * `begin(localPath, name)` left (a process killed mid-download), to go on
   * writing it; undefined when it is not there as a plain file. What it holds
   * is unverified: the caller checks it before keeping any of it.
   */
  async reopen(localPath: string, name: string): Promise<PendingWrite | undefined> {
    const target = this.abs(localPath);
    const tmp = this.tempPath(localPath, name);
    // Never through a symbolic link, neither the file nor (as in begin) its folders.
    const st = await directFs.lstat(tmp).catch(() => undefined);
    if (!st?.isFile()) return undefined;
    try {
      await this.ensureParents(localPath);
    } catch {
      return undefined;
    }
    const fh = await directFs.open(tmp, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW).catch(() => undefined);
    return fh ? { fh, tmp, target } : undefined;
  }

  /** Drops a pending write, leaving nothing behind. */
  async abort(w: PendingWrite): Promise<void> {
    await w.fh.close().catch(() => {});
    await unlinkIfThere(w.tmp);
  }

  /**
   * Sets times and mode, then renames into place if the target still matches
   * `exp`. Answers the new file's stat, or undefined (and nothing changed)
   * when the target changed meanwhile.
   */
  async commit(w: PendingWrite, localPath: string, mtime: number, exec: boolean, exp: Expected): Promise<fs.Stats | undefined> {
    try {
      await w.fh.close();
      const when = new Date(mtime);
      await directFs.utimes(w.tmp, when, when);
      if (exec) await directFs.chmod(w.tmp, 0o755);
      if (!(await this.matches(localPath, exp))) {
        await unlinkIfThere(w.tmp);
        return undefined;
      }
      // The stat of what was written, taken before it becomes visible: a save
      // made right after the rename must show up as a change, not be taken for ours.
      const written = await directFs.lstat(w.tmp);
      crashPoint('client:before-rename');
      // The file replaced goes aside first and is looked at again: a save made
      // since the check above is given back, and the download waits.
      const aside = exp.absent ? undefined : await this.setAside(localPath, exp);
      if (aside === false) {
        await unlinkIfThere(w.tmp);
        return undefined;
      }
      if (!(await placeNew(w.tmp, w.target))) {
        // A file was made at the place meanwhile: it stays, the download waits.
        if (aside) await unlinkIfThere(aside);
        await unlinkIfThere(w.tmp);
        return undefined;
      }
      crashPoint('client:after-rename');
      if (aside) await unlinkIfThere(aside);
      return await afterRename(w.target, written);
    } catch (err) {
      await unlinkIfThere(w.tmp);
      throw err;
    }
  }

  /** Creates a folder; throws when a file or a symbolic link holds its name, or one is on its way. */
  async mkdir(localPath: string): Promise<fs.Stats> {
    await this.ensureParents(localPath);
    if (!(await parentsAreFolders(this.root, localPath))) throw notAFolder(path.posix.dirname(localPath));
    await directFs.mkdir(this.abs(localPath)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    const st = await directFs.lstat(this.abs(localPath));
    if (!st.isDirectory()) throw notAFolder(localPath);
    return st;
  }

  /**
   * Sets a file's modification time if it still matches `exp`; answers its
   * new stat, or undefined when it changed. A save landing between the check
   * and the new time would be hidden by it (the same size, its own time set
   * over): `unchanged` reads the content again after, and answers whether
   * it is still the one the caller knows.
   */
  async setMtime(localPath: string, mtime: number, exp: Expected, unchanged: (st: fs.Stats) => Promise<boolean>): Promise<fs.Stats | undefined> {
    if (!(await this.matches(localPath, exp))) return undefined;
    const when = new Date(mtime);
    await directFs.utimes(this.abs(localPath), when, when);
    const st = await directFs.lstat(this.abs(localPath));
    // Saved again meanwhile: not ours to record.
    if (Math.round(st.mtimeMs) !== Math.round(mtime) || st.size !== exp.size || st.ino !== exp.ino) return undefined;
    return (await unchanged(st)) ? st : undefined;
  }

  /**
   * Removes a file only if it is still what the index last synced. It is
   * renamed aside first and looked at again there: a save that slipped in
   * between the check and the removal is given back, not deleted with it.
   */
  async removeFile(localPath: string, exp: Expected): Promise<boolean> {
    if (!(await this.matches(localPath, exp))) return false;
    const aside = await this.setAside(localPath, exp);
    if (aside === false) return false;
    if (aside) await unlinkIfThere(aside);
    return true;
  }

  /**
   * Renames the file at `localPath` to a temporary name beside it, then checks
   * that what was moved is still `exp`. Answers the temporary path; undefined
   * when nothing was there any more; false when the file had changed (a save
   * between the caller's check and the rename): it is put back first.
   */
  private async setAside(localPath: string, exp: Expected): Promise<string | undefined | false> {
    const abs = this.abs(localPath);
    const aside = this.tempPath(localPath, `aside-${randomBytes(8).toString('hex')}`);
    try {
      await directFs.rename(abs, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const st = await directFs.lstat(aside);
    // The rename itself changes the status change time: size, mtime and inode tell a save.
    if (st.isFile() && (exp.size === undefined || st.size === exp.size) && (exp.mtime === undefined || st.mtimeMs === exp.mtime) && (exp.ino === undefined || st.ino === exp.ino)) {
      return aside;
    }
    await giveBack(aside, abs);
    return false;
  }

  /** Removes a folder only when it is empty (its contents were handled first). */
  async removeDir(localPath: string): Promise<boolean> {
    if (!(await parentsAreFolders(this.root, localPath))) return false;
    try {
      await directFs.rmdir(this.abs(localPath));
      this.knownDirs.delete(localPath);
      return true;
    } catch {
      return false;
    }
  }

  /** Renames when the source still matches and the target is free. */
  async rename(from: string, to: string, exp: Expected): Promise<fs.Stats | undefined> {
    // The stat checked is the one recorded (as in commit): a save made after the check shows as a change.
    const moved = await this.statIfMatches(from, exp);
    if (!moved || !(await this.matches(to, { absent: true }))) return undefined;
    await this.ensureParents(to);
    await directFs.rename(this.abs(from), this.abs(to));
    this.knownDirs.clear();
    return afterRename(this.abs(to), moved);
  }

  /** Reads `size` bytes at `offset` of a file, or undefined when it cannot. */
  async read(localPath: string, offset: number, size: number): Promise<Buffer | undefined> {
    let fh: DirectHandle | undefined;
    try {
      fh = await openNoFollow(this.root, localPath, undefined, this.real);
      const buf = Buffer.allocUnsafe(size);
      const { bytesRead } = await fh.read(buf, 0, size, offset);
      return bytesRead === size ? buf : undefined;
    } catch {
      return undefined;
    } finally {
      await fh?.close();
    }
  }

  /**
   * Opens a file for reading pieces of it with one handle (uploads of large
   * files), only if it is still the file `ino` (never through a link). `read`
   * answers undefined when the piece cannot be read whole.
   */
  async openRead(localPath: string, ino: number): Promise<{ read(offset: number, size: number): Promise<Buffer | undefined>; close(): Promise<void> } | undefined> {
    const fh = await openNoFollow(this.root, localPath, ino, this.real).catch(() => undefined);
    if (!fh) return undefined;
    return {
      read: async (offset, size) => {
        // Read where it can be sent from without a copy.
        const buf = chunkDataBuffer(size);
        const { bytesRead } = await fh.read(buf, 0, size, offset).catch(() => ({ bytesRead: -1 }));
        return bytesRead === size ? buf : undefined;
      },
      close: () => fh.close(),
    };
  }

  /** Removes one `.keepsync-*` leftover (nothing else). */
  async removeTemp(localPath: string): Promise<void> {
    if (path.basename(localPath).startsWith(TEMP_PREFIX) && (await parentsAreFolders(this.root, localPath))) await unlinkIfThere(this.abs(localPath));
  }

  /**
   * Removes `.keepsync-*` leftovers of an interrupted run (a crash mid-download)
   * anywhere in the folder, except those `keep` accepts (by name): their
   * absolute paths are answered, for the caller to resume or remove later.
   * Symbolic links are not followed.
   */
  async cleanTemps(keep: (name: string) => boolean = () => false): Promise<string[]> {
    const kept: string[] = [];
    const stack = [this.root];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      const entries = await directFs.readdirTyped(dir).catch(() => [] as fs.Dirent[]);
      for (const e of entries) {
        if (e.name.startsWith(TEMP_PREFIX) && e.isFile()) {
          if (keep(e.name)) kept.push(path.join(dir, e.name));
          else await unlinkIfThere(path.join(dir, e.name));
        } else if (e.isDirectory()) stack.push(path.join(dir, e.name));
      }
    }
    return kept;
  }

  /** Removes one of the files `cleanTemps` kept (absolute path; nothing but a `.keepsync-*` file). */
  async removeKeptTemp(absTemp: string): Promise<void> {
    if (path.basename(absTemp).startsWith(TEMP_PREFIX) && absTemp.startsWith(this.root + path.sep)) await unlinkIfThere(absTemp);
  }
}

/**
 * Makes `tmp` visible at `target` unless something is there (made since the
 * caller looked): answers false then, and nothing is replaced. A hard link
 * refuses to replace; where links are not supported, a look and a rename.
 */
async function placeNew(tmp: string, target: string): Promise<boolean> {
  try {
    await directFs.link(tmp, target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EOPNOTSUPP' && code !== 'EMLINK') throw err;
    if (await directFs.lstat(target).then(() => true, () => false)) return false;
    await directFs.rename(tmp, target);
    return true;
  }
  await unlinkIfThere(tmp);
  return true;
}

/**
 * Whether the folder of `abs` holds its name spelled in the other Unicode
 * normalization (`café` made as `cafe` + accent, as macOS spells it): the
 * same file to the user and to the server, so the place is not free for
 * another one. Looked up by name, not by listing the folder, so a download
 * into a folder of thousands of such names costs two lookups, not a listing.
 */
async function hasNormalizationTwin(abs: string): Promise<boolean> {
  const name = path.basename(abs);
  // Only names beyond ASCII have other normalizations.
  if (/^[\x00-\x7f]*$/.test(name)) return false;
  const twins = new Set([name.normalize('NFC'), name.normalize('NFD')]);
  twins.delete(name);
  for (const twin of twins) {
    if (await directFs.lstat(path.join(path.dirname(abs), twin)).then(() => true, () => false)) return true;
  }
  return false;
}

/**
 * Removes a file; one already gone is fine. (Not `rm`, which looks at the
 * path first, on the main thread, to tell files from folders.)
 */
async function unlinkIfThere(abs: string): Promise<void> {
  await directFs.unlink(abs).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

/**
 * Puts a file set aside back at `target`; when a new file took the place
 * meanwhile, beside it as `NAME (kept TIME)`: never left under a temporary
 * name, which a later scan would remove.
 */
async function giveBack(aside: string, target: string): Promise<void> {
  if (await placeNew(aside, target).catch(() => false)) return;
  const ext = path.extname(target);
  const stem = target.slice(0, target.length - ext.length);
  for (let i = 0; ; i++) {
    const beside = `${stem} (kept ${new Date().toISOString().replace(/[:.]/g, '')}${i > 0 ? ` ${i + 1}` : ''})${ext}`;
    if (await placeNew(aside, beside).catch(() => false)) return;
    if (i >= 20) throw new Error(`bug: no free name beside ${target} for a file to give back`);
  }
}

/**
 * The stat of what was just renamed to `target`: taken again, since a rename
 * changes the status change time, unless the file changed meanwhile (other
 * inode, size or mtime), when the stat from before stands and the change shows.
 */
async function afterRename(target: string, before: fs.Stats): Promise<fs.Stats> {
  const after = await directFs.lstat(target).catch(() => undefined);
  return after && after.ino === before.ino && after.size === before.size && after.mtimeMs === before.mtimeMs ? after : before;
}

function notAFolder(localDir: string): KeepsyncError {
  return new KeepsyncError('CONFLICT', `cannot write inside ${localDir}: it is not a folder here (a symbolic link or a file); links are not followed`);
}
