import { KeepsyncError } from './errors.js';
import { MAX_NAME_BYTES, MAX_PATH_BYTES } from './limits.js';

/**
 * A path relative to a sync folder root: `/`-separated, Unicode NFC, no empty,
 * `.` or `..` segments, no control characters. Only `parseRelPath` makes one.
 */
export type RelPath = string & { readonly __brand: 'RelPath' };

/** Prefix of the transient files a device writes while downloading; never synced. */
export const TEMP_PREFIX = '.keepsync-';

const CONTROL = /[\u0000-\u001f\u007f]/;
const DRIVE = /^[A-Za-z]:/;

/**
 * Validates and normalizes a path from a peer or a user. Throws PATH_INVALID with
 * a message naming the problem; never returns a path that could leave the folder.
 */
export function parseRelPath(input: unknown): RelPath {
  if (typeof input !== 'string') throw invalid('path must be a string');
  const path = input.normalize('NFC');
  if (path.length === 0) throw invalid('path is empty');
  if (CONTROL.test(path)) throw invalid('path contains a control character');
  if (path.includes('\\')) throw invalid('path contains a backslash');
  if (path.startsWith('/')) throw invalid('path is absolute');
  if (DRIVE.test(path)) throw invalid('path starts with a drive letter');
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) throw invalid('path is too long');
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') {
      throw invalid(`path has an empty, "." or ".." segment: ${JSON.stringify(input)}`);
    }
    if (Buffer.byteLength(segment) > MAX_NAME_BYTES) throw invalid('a name in the path is longer than 255 bytes');
    if (segment.startsWith(TEMP_PREFIX)) throw invalid('names starting with .keepsync- are reserved');
  }
  return path as RelPath;
}

/** Like parseRelPath but answers undefined instead of throwing. */
export function tryParseRelPath(input: unknown): RelPath | undefined {
  try {
    return parseRelPath(input);
  } catch {
    return undefined;
  }
}

function invalid(why: string): KeepsyncError {
  return new KeepsyncError('PATH_INVALID', `invalid path: ${why}`);
}

/** The parent of a path, or undefined for a top-level name. */
export function parentOf(path: RelPath): RelPath | undefined {
  const i = path.lastIndexOf('/');
  return i < 0 ? undefined : (path.slice(0, i) as RelPath);
}

/** Every ancestor of a path, outermost first (`a/b/c` gives `a`, `a/b`). */
export function ancestorsOf(path: RelPath): RelPath[] {
  const out: RelPath[] = [];
  let i = path.indexOf('/');
  while (i >= 0) {
    out.push(path.slice(0, i) as RelPath);
    i = path.indexOf('/', i + 1);
  }
  return out;
}

/** The last segment of a path. */
export function baseName(path: RelPath): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Joins a validated parent with a validated child name. */
export function joinPath(parent: RelPath | undefined, name: string): RelPath {
  return (parent ? `${parent}/${name}` : name) as RelPath;
}

/** True when `path` is `dir` itself or lies inside it. */
export function isWithin(path: string, dir: string): boolean {
  return path === dir || (path.length > dir.length && path.startsWith(dir) && path[dir.length] === '/');
}

/** Moves `path` from under `from` to under `to` (it must be within `from`). */
export function rebase(path: RelPath, from: RelPath, to: RelPath): RelPath {
  if (!isWithin(path, from)) throw new Error(`bug: ${path} is not within ${from}`);
  return (to + path.slice(from.length)) as RelPath;
}

/** Depth of a path: `a` is 1, `a/b` is 2. */
export function depthOf(path: string): number {
  let n = 1;
  for (let i = 0; i < path.length; i++) if (path.charCodeAt(i) === 47) n++;
  return n;
}

function stamp(date: Date): { day: string; time: string } {
  const p = (n: number) => String(n).padStart(2, '0');
  return {
    day: `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}`,
    time: `${p(date.getHours())}${p(date.getMinutes())}${p(date.getSeconds())}`,
  };
}

function splitExt(name: string): [string, string] {
  const dot = name.lastIndexOf('.');
  if (dot <= 0) return [name, ''];
  return [name.slice(0, dot), name.slice(dot)];
}

function withSuffix(path: RelPath, suffix: string, keepExt: boolean): RelPath {
  const parent = parentOf(path);
  const [stem, ext] = keepExt ? splitExt(baseName(path)) : [baseName(path), ''];
  return joinPath(parent, `${stem} (${suffix})${ext}`);
}

/** `NAME (conflict from DEVICE YYYY-MM-DD HHMMSS).EXT`, as the SPEC names conflict copies. */
export function conflictPath(path: RelPath, device: string, date: Date, attempt = 0): RelPath {
  const { day, time } = stamp(date);
  const safeDevice = device.replace(/[\u0000-\u001f\u007f/\\]/g, '_').slice(0, 60) || 'device';
  const extra = attempt > 0 ? ` ${attempt + 1}` : '';
  return parseRelPath(withSuffix(path, `conflict from ${safeDevice} ${day} ${time}${extra}`, true));
}

/** `NAME (restored YYYY-MM-DD)`, where a restore lands when the original place is taken. */
export function restoredPath(path: RelPath, date: Date, isDir: boolean, attempt = 0): RelPath {
  const extra = attempt > 0 ? ` ${attempt + 1}` : '';
  return parseRelPath(withSuffix(path, `restored ${stamp(date).day}${extra}`, !isDir));
}
