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
 * `fs/promises`, so callers handle it the same way. An awaited call that
 * returns at once does not let the event loop turn, so a long run of them (a
 * scan of 100,000 files) would hold up the connection's heartbeats and the
 * watcher: every 20 ms a call first waits for one turn of the loop. The
 * object is mutable so that a test can put a call in the middle of a look at
 * the disk.
 */

/** Writes of this many bytes or more run in the thread pool (see `DirectHandle.write`). */
const POOL_WRITE_MIN = 128 * 1024;

/** Longest stretch of direct calls before the event loop gets a turn. */
const SLICE_MS = 20;
let sliceStart = performance.now();

/** Lets the event loop turn once the calls since it last did have taken SLICE_MS. */
async function turn(): Promise<void> {
  if (performance.now() - sliceStart < SLICE_MS) return;
  await new Promise<void>((resolve) => setImmediate(resolve));
  sliceStart = performance.now();
}

/** An open file, with the methods of `fs/promises`' FileHandle that the client uses. */
export class DirectHandle {
  private closed = false;
  /** Writes running in the thread pool. */
  private readonly inPool = new Set<Promise<void>>();

  constructor(readonly fd: number) {}

  async stat(): Promise<fs.Stats> {
    await this.ready();
    return fs.fstatSync(this.fd);
  }

  /** Reads at `position`, or from the current offset when it is null. */
  async read(buffer: Uint8Array, offset: number, length: number, position: number | null): Promise<{ bytesRead: number }> {
    await this.ready();
    return { bytesRead: fs.readSync(this.fd, buffer, offset, length, position) };
  }

  /**
   * Writes all of `length` bytes at `position`. A large write (a downloaded
   * chunk) goes to the thread pool, started before this returns, so that the
   * caller hashes the bytes while they are written; the event loop also keeps
   * turning when the disk holds writes back (a slow disk, dirty pages to flush).
   */
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    if (length >= POOL_WRITE_MIN) return this.writeInPool(buffer, offset, length, position);
    return this.writeHere(buffer, offset, length, position);
  }

  private async writeHere(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    await this.ready();
    let done = 0;
    while (done < length) done += fs.writeSync(this.fd, buffer, offset + done, length - done, position + done);
    return { bytesWritten: done };
  }

  private writeInPool(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    if (this.closed) return Promise.reject(closedError());
    const writing = (async () => {
      let done = 0;
      while (done < length) {
        done += await new Promise<number>((resolve, reject) => {
          fs.write(this.fd, buffer, offset + done, length - done, position + done, (err, n) => (err ? reject(err) : resolve(n)));
        });
      }
      return { bytesWritten: done };
    })();
    // `close` waits for it: the descriptor must not be closed, and perhaps reused by another file, under a write.
    const tracked = writing.then(() => undefined, () => undefined);
    this.inPool.add(tracked);
    void tracked.then(() => this.inPool.delete(tracked));
    return writing;
  }

  async truncate(length: number): Promise<void> {
    await this.ready();
    fs.ftruncateSync(this.fd, length);
  }

  /**
   * Waits for a turn of the event loop when one is due; throws when the file
   * was closed meanwhile (its descriptor may be another file's by now).
   */
  private async ready(): Promise<void> {
    await turn();
    if (this.closed) throw closedError();
  }

  /** Closes the file; a second close does nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // No write starts once closed: these are all there will be.
    await Promise.all(this.inPool);
    fs.closeSync(this.fd);
  }
}

function closedError(): Error {
  return Object.assign(new Error('the file was closed'), { code: 'EBADF' });
}

/** Runs `call` directly, after a turn of the event loop when one is due. */
function direct<A extends unknown[], R>(call: (...args: A) => R): (...args: A) => Promise<R> {
  return async (...args: A) => {
    await turn();
    return call(...args);
  };
}

export const directFs = {
  lstat: direct((p: string): fs.Stats => fs.lstatSync(p)),
  readdir: direct((p: string): string[] => fs.readdirSync(p)),
  readdirTyped: direct((p: string): fs.Dirent[] => fs.readdirSync(p, { withFileTypes: true })),
  open: direct((p: string, flags: string | number, mode?: number) => new DirectHandle(fs.openSync(p, flags, mode))),
  readlink: direct((p: string): string => fs.readlinkSync(p)),
  realpath: direct((p: string): string => fs.realpathSync.native(p)),
  mkdir: direct((p: string): void => {
    fs.mkdirSync(p);
  }),
  rmdir: direct((p: string): void => fs.rmdirSync(p)),
  unlink: direct((p: string): void => fs.unlinkSync(p)),
  link: direct((from: string, to: string): void => fs.linkSync(from, to)),
  rename: direct((from: string, to: string): void => fs.renameSync(from, to)),
  utimes: direct((p: string, atime: Date, mtime: Date): void => fs.utimesSync(p, atime, mtime)),
  chmod: direct((p: string, mode: number): void => fs.chmodSync(p, mode)),
};
