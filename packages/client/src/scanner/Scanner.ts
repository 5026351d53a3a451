import fs from 'node:fs';
import path from 'node:path';
import ignoreFactory, { type Ignore } from 'ignore';
import { directFs } from '../folder/directFs.js';
import { linkInTheWay, openNoFollow, parentsAreFolders, type RealRoot } from '../folder/noFollow.js';
import { Chunker, DEFAULT_IGNORES, IGNORE_FILE, TEMP_PREFIX, parseRelPath, tryParseRelPath, type ChunkRef, type ChunkedFile, type EntryKind, type Manifest, type RelPath } from '@keepsync/protocol';

/** A path as it is on this device's disk right now. */
export interface LocalState {
  path: RelPath;
  /** The name on disk, relative to the root (may differ from `path` in Unicode normalization). */
  localPath: string;
  kind: EntryKind;
  size: number;
  mtime: number;
  ino: number;
  exec: boolean;
  /** Status change time (ms): any write changes it, whatever mtime and size are made to say. */
  ctime?: number;
}

const READ_BLOCK = 1024 * 1024;
/** Files up to this size are read into a reused buffer: no new buffer (and garbage) per small file. */
const SMALL_READ = 64 * 1024;

/** A hashed file; `data` holds its bytes when it was small enough to keep. */
export interface HashedFile extends ChunkedFile {
  data?: Buffer;
}

/**
 * Reads the synced folder: walks it (or parts of it), applying the default
 * ignores and `.keepsyncignore`, never following symbolic links, and hashes
 * files into chunks in one streaming pass.
 */
export class Scanner {
  private ignore: Ignore = ignoreFactory().add([...DEFAULT_IGNORES]);
  /** Paths the walk skipped because another name maps to the same wire path. */
  readonly clashes: string[] = [];
  /** Local paths the server cannot take (a backslash or a control character in a name, too long), with why. */
  readonly unsyncable = new Map<string, string>();
  /** Temporary `.keepsync-*` files the walk passed (local paths): leftovers when no download runs. */
  readonly temps: string[] = [];

  /** Folders looked at for links on their way since `forgetLinks`. */
  private readonly linksSeen = new Map<string, Promise<boolean>>();
  /** Read buffers of SMALL_READ bytes not in use by a hash (one per hash running at once). */
  private readonly spareBuffers: Buffer[] = [];

  /**
   * @param real where the root really is, when a sync cycle keeps it (see
   * LocalFolder.real); otherwise each file's open looks it up.
   */
  constructor(readonly root: string, private readonly real?: RealRoot) {}

  /** Re-reads `.keepsyncignore`. */
  loadIgnores(): void {
    const ig = ignoreFactory().add([...DEFAULT_IGNORES]);
    try {
      ig.add(fs.readFileSync(path.join(this.root, IGNORE_FILE), 'utf8'));
    } catch {
      // no ignore file
    }
    this.ignore = ig;
  }

  isIgnored(rel: string, isDir: boolean): boolean {
    const base = rel.slice(rel.lastIndexOf('/') + 1);
    if (base.startsWith(TEMP_PREFIX)) return true;
    return this.ignore.ignores(isDir ? `${rel}/` : rel);
  }

  abs(localPath: string): string {
    return path.join(this.root, ...localPath.split('/'));
  }

  /**
   * The state of one local path, or undefined when absent, ignored or not a
   * file/folder. A wire path (NFC) finds a file whose name on disk is in
   * another Unicode normalization; a name that is not the NFC one while the
   * NFC one exists too is a clash and answers undefined. Throws when the
   * path cannot be looked at (permissions): that is not an absence. A path
   * under a symbolic link is absent: links are not followed.
   */
  async stat(localPath: string): Promise<LocalState | undefined> {
    const slash = localPath.lastIndexOf('/');
    if (slash > 0 && (await this.linkAbove(localPath.slice(0, slash)))) return undefined;
    const st = await directFs.lstat(this.abs(localPath)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
      throw err;
    });
    if (!st) {
      const onDisk = await this.findOtherForm(localPath);
      return onDisk === undefined ? undefined : this.stat(onDisk);
    }
    const state = this.toState(localPath, st);
    if (state && state.localPath !== state.path && (await directFs.lstat(this.abs(state.path)).catch(() => undefined))) {
      this.clashes.push(localPath);
      return undefined;
    }
    return state;
  }

  /** Whether a symbolic link lies on the way to the folder `localDir`, looked at once per `forgetLinks`. */
  private linkAbove(localDir: string): Promise<boolean> {
    let known = this.linksSeen.get(localDir);
    if (!known) {
      known = linkInTheWay(this.root, localDir).then((l) => l !== undefined);
      this.linksSeen.set(localDir, known);
    }
    return known;
  }

  /** Forgets which folders had a link on their way (at the start of each look at the folder). */
  forgetLinks(): void {
    this.linksSeen.clear();
  }

  /** The name on disk of `localPath` when it exists only in another Unicode normalization. */
  private async findOtherForm(localPath: string): Promise<string | undefined> {
    // Only names beyond ASCII have other normalizations.
    if (/^[\x00-\x7f]*$/.test(localPath)) return undefined;
    let found = '';
    for (const part of localPath.split('/')) {
      const names = await directFs.readdir(found ? this.abs(found) : this.root).catch(() => [] as string[]);
      const want = part.normalize('NFC');
      const name = names.includes(part) ? part : names.find((n) => n.normalize('NFC') === want);
      if (name === undefined) return undefined;
      found = found ? `${found}/${name}` : name;
    }
    return found === localPath ? undefined : found;
  }

  private toState(localPath: string, st: fs.Stats): LocalState | undefined {
    const wire = tryParseRelPath(localPath);
    if (!wire) {
      if (!path.basename(localPath).startsWith(TEMP_PREFIX) && (st.isFile() || st.isDirectory())) {
        try {
          parseRelPath(localPath);
        } catch (err) {
          this.unsyncable.set(localPath, (err as Error).message);
        }
      }
      return undefined;
    }
    if (st.isDirectory()) {
      if (this.isIgnored(wire, true)) return undefined;
      return { path: wire, localPath, kind: 'dir', size: 0, mtime: 0, ino: st.ino, exec: false };
    }
    if (!st.isFile() || this.isIgnored(wire, false)) return undefined;
    return { path: wire, localPath, kind: 'file', size: st.size, mtime: st.mtimeMs, ino: st.ino, exec: (st.mode & 0o111) !== 0, ctime: st.ctimeMs };
  }

  /**
   * Every file and folder under `localDir` (the whole folder when undefined),
   * keyed by wire path. Unreadable directories are reported, not treated as
   * empty; so are names listed that were gone a moment later (`vanished`: a
   * folder moved away, a disk unmounted, while it was walked), which tell
   * nothing yet about what is there now.
   */
  async walk(localDir?: string, out = new Map<RelPath, LocalState>()): Promise<{ states: Map<RelPath, LocalState>; unreadable: string[]; vanished: string[] }> {
    const unreadable: string[] = [];
    const vanished: string[] = [];
    // A folder that is a symbolic link (or under one) now is not walked: links are not followed.
    const start = localDir === undefined ? undefined : await this.folderId(localDir);
    if (localDir !== undefined && start === undefined) return { states: out, unreadable, vanished };
    const stack: Array<{ dir: string; ino?: number }> = [{ dir: localDir ?? '', ino: start }];
    while (stack.length > 0) {
      const { dir, ino } = stack.pop()!;
      let names: fs.Dirent[];
      try {
        names = await directFs.readdirTyped(dir ? this.abs(dir) : this.root);
      } catch {
        unreadable.push(dir);
        continue;
      }
      // Swapped for a link (or another folder) since it was seen: what was listed may lie
      // outside the folder. It sits this walk out, as an unreadable folder does.
      if (dir && (await this.folderId(dir)) !== ino) {
        unreadable.push(dir);
        continue;
      }
      for (const d of names) {
        if (!d.isFile() && !d.isDirectory()) continue;
        const rel = dir ? `${dir}/${d.name}` : d.name;
        if (d.isFile() && d.name.startsWith(TEMP_PREFIX)) {
          this.temps.push(rel);
          continue;
        }
        const st = await directFs.lstat(this.abs(rel)).catch(() => undefined);
        if (!st) {
          vanished.push(rel);
          continue;
        }
        const state = this.toState(rel, st);
        if (!state) continue;
        const other = out.get(state.path);
        if (other) {
          // Two names for one wire path: the NFC one is synced, the other is reported.
          if (state.kind === 'file' && other.kind === 'file' && other.localPath !== other.path && state.localPath === state.path) {
            this.clashes.push(other.localPath);
            out.set(state.path, state);
          } else {
            this.clashes.push(rel);
          }
          continue;
        }
        out.set(state.path, state);
        if (state.kind === 'dir') stack.push({ dir: rel, ino: st.ino });
      }
    }
    return { states: out, unreadable, vanished };
  }

  /** The inode of a real folder reached through real folders only, or undefined. */
  private async folderId(localDir: string): Promise<number | undefined> {
    if (!(await parentsAreFolders(this.root, `${localDir}/x`))) return undefined;
    const st = await directFs.lstat(this.abs(localDir)).catch(() => undefined);
    return st?.isDirectory() ? st.ino : undefined;
  }

  /**
   * Hashes a file into chunks, streaming. Throws when it cannot be read, or
   * when it is no longer the file `local` saw (its inode), which a link
   * swapped in on its path would be. A file that fits in one read of at most
   * `keepUpTo` bytes comes back with its bytes, so that an upload need not
   * read it again. `onChunk`, when given, is told of each chunk as it is
   * found; the next read waits for it. `previous`, the manifest of the
   * version the file was synced at, keeps that version's chunk size class.
   */
  async hash(
    local: { localPath: string; size: number; ino: number },
    { keepUpTo = 0, onChunk, previous }: { keepUpTo?: number; onChunk?: (chunk: ChunkRef) => Promise<void>; previous?: Manifest } = {},
  ): Promise<HashedFile> {
    const fh = await openNoFollow(this.root, local.localPath, local.ino, this.real);
    const expectedSize = local.size;
    // One spare byte shows, in the same read, that a small file has not grown.
    const reused = expectedSize + 1 <= SMALL_READ ? (this.spareBuffers.pop() ?? Buffer.allocUnsafe(SMALL_READ)) : undefined;
    const first = reused ? reused.subarray(0, expectedSize + 1) : Buffer.allocUnsafe(Math.min(READ_BLOCK, expectedSize + 1));
    let buf = first;
    try {
      const found: ChunkRef[] = [];
      const chunker = new Chunker(expectedSize, onChunk && ((chunk) => found.push(chunk)), previous);
      let total = 0;
      let reads = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        reads++;
        total += bytesRead;
        chunker.update(buf.subarray(0, bytesRead));
        for (const chunk of found.splice(0)) await onChunk!(chunk);
        // A short read that reaches the size from stat is the end of the file.
        if (bytesRead < buf.length && total === expectedSize) break;
        // Longer than its stat said (still being written, a copy in progress): the rest is
        // read in whole blocks, not in pieces of the size the stat gave (one byte for a new file).
        if (total > expectedSize && buf.length < READ_BLOCK) buf = Buffer.allocUnsafe(READ_BLOCK);
      }
      const chunked = chunker.finish();
      for (const chunk of found.splice(0)) await onChunk!(chunk);
      if (reads !== 1 || total > keepUpTo) return chunked;
      // A reused buffer goes back: the bytes kept are a copy.
      return { ...chunked, data: reused ? Buffer.from(first.subarray(0, total)) : first.subarray(0, total) };
    } finally {
      if (reused) this.spareBuffers.push(reused);
      await fh.close();
    }
  }
}
