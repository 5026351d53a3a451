import fs from 'node:fs';

/*
 * File-system calls on the synced folder, made directly on the calling
 * thread, behind the promise signatures of `fs/promises`.
 *
 * The folder is on the device's own disk, where a look-up, an open or a
 * rename returns in microseconds. Through libuv's thread pool the same call
 * costs 20–120 µs of CPU in hand-offs, promises and file-handle objects
 * (measured on Node 20: open, read, stat and close of a 4 KiB file, 120 µs
 * through `fs/promises` against 7 µs directly), and a sync of 10,000 small
 * files makes about ten such calls per file. So these run directly and the
 * event loop waits for them; the largest single call is a read or write of
 * one chunk (16 MiB at most).
 *
 * The calls stay `async`: a failure is a rejected promise, as with
 * `fs/promises`, so callers handle it the same way. The object is mutable
 * so that a test can put a call in the middle of a look at the disk.
 */

/** An open file, with the methods of `fs/promises`' FileHandle that the client uses. */
export class DirectHandle {
  private closed = false;

  constructor(readonly fd: number) {}

  async stat(): Promise<fs.Stats> {
    return fs.fstatSync(this.fd);
  }

  /** Reads at `position`, or from the current offset when it is null. */
  async read(buffer: Uint8Array, offset: number, length: number, position: number | null): Promise<{ bytesRead: number }> {
    return { bytesRead: fs.readSync(this.fd, buffer, offset, length, position) };
  }

  /** Writes all of `length` bytes at `position`. */
  async write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    let done = 0;
    while (done < length) done += fs.writeSync(this.fd, buffer, offset + done, length - done, position + done);
    return { bytesWritten: done };
  }

  async truncate(length: number): Promise<void> {
    fs.ftruncateSync(this.fd, length);
  }

  /** Closes the file; a second close does nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}

export const directFs = {
  lstat: async (p: string): Promise<fs.Stats> => fs.lstatSync(p),
  readdir: async (p: string): Promise<string[]> => fs.readdirSync(p),
  readdirTyped: async (p: string): Promise<fs.Dirent[]> => fs.readdirSync(p, { withFileTypes: true }),
  open: async (p: string, flags: string | number, mode?: number): Promise<DirectHandle> => new DirectHandle(fs.openSync(p, flags, mode)),
  readlink: async (p: string): Promise<string> => fs.readlinkSync(p),
  realpath: async (p: string): Promise<string> => fs.realpathSync.native(p),
  mkdir: async (p: string): Promise<void> => {
    fs.mkdirSync(p);
  },
  rmdir: async (p: string): Promise<void> => fs.rmdirSync(p),
  unlink: async (p: string): Promise<void> => fs.unlinkSync(p),
  link: async (from: string, to: string): Promise<void> => fs.linkSync(from, to),
  rename: async (from: string, to: string): Promise<void> => fs.renameSync(from, to),
  utimes: async (p: string, atime: Date, mtime: Date): Promise<void> => fs.utimesSync(p, atime, mtime),
  chmod: async (p: string, mode: number): Promise<void> => fs.chmodSync(p, mode),
};
