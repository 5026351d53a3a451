import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { directFs } from '../src/folder/directFs.js';
import { LocalFolder, type Expected, type PendingWrite } from '../src/folder/LocalFolder.js';

/*
 * A save landing between the engine's last look at a file and its removal or
 * replacement (SAFETY.md I1, D2). The race is pinned by wrapping the real
 * file system calls: the first one that would touch the file after the check
 * first lets the "user" save it.
 */

type Patched = 'unlink' | 'rename' | 'link';

/** Runs `save` just before the first unlink, rename or link from or onto `abs`; answers a function that restores fs. */
function saveJustBefore(abs: string, save: () => void): () => void {
  const originals = { unlink: directFs.unlink, rename: directFs.rename, link: directFs.link };
  let done = false;
  const wrap = <K extends Patched>(name: K) => {
    const original = originals[name] as (...args: unknown[]) => Promise<unknown>;
    (directFs as unknown as Record<K, unknown>)[name] = async (...args: unknown[]) => {
      if (!done && (args[0] === abs || args[1] === abs)) {
        done = true;
        save();
      }
      return original(...args);
    };
  };
  (['unlink', 'rename', 'link'] as const).forEach(wrap);
  return () => Object.assign(directFs, originals);
}

/** Runs `save` just after the first look (lstat) at `abs`: after the check, before what follows it. */
function saveJustAfterLook(abs: string, save: () => void): () => void {
  const original = directFs.lstat;
  let done = false;
  directFs.lstat = async (p: string) => {
    const st = await original(p);
    if (!done && p === abs) {
      done = true;
      save();
    }
    return st;
  };
  return () => Object.assign(directFs, { lstat: original });
}

/** Runs `save` just before the first new time is set on `abs`. */
function saveJustBeforeTimes(abs: string, save: () => void): () => void {
  const original = directFs.utimes;
  directFs.utimes = async (p: string, atime: Date, mtime: Date) => {
    if (p === abs) save();
    return original(p, atime, mtime);
  };
  return () => Object.assign(directFs, { utimes: original });
}

/** Writes `text` into a pending download. */
async function writeText(w: PendingWrite, text: string): Promise<void> {
  const bytes = Buffer.from(text);
  await w.fh.write(bytes, 0, bytes.length, 0);
}

function expectOf(file: string): Expected {
  const st = fs.lstatSync(file);
  return { size: st.size, mtime: st.mtimeMs, ino: st.ino, ctime: st.ctimeMs };
}

/** The folder's entries, Keepsync's temporary files included. */
const names = (root: string) => fs.readdirSync(root).sort();

describe('LocalFolder', () => {
  let root: string;
  let folder: LocalFolder;
  let restore: (() => void) | undefined;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'keepsync-folder-'));
    folder = new LocalFolder(root);
  });
  afterEach(() => {
    restore?.();
    restore = undefined;
    fs.rmSync(root, { recursive: true, force: true });
  });

  describe('#removeFile', () => {
    it('removes a file that is still as synced', async () => {
      fs.writeFileSync(path.join(root, 'doc.txt'), 'as synced');
      assert.equal(await folder.removeFile('doc.txt', expectOf(path.join(root, 'doc.txt'))), true);
      assert.deepEqual(names(root), []);
    });

    it('keeps a save made between its check and the removal', async () => {
      const file = path.join(root, 'doc.txt');
      fs.writeFileSync(file, 'as synced');
      const exp = expectOf(file);
      restore = saveJustBefore(file, () => fs.writeFileSync(file, 'saved by the user at that very moment'));
      assert.equal(await folder.removeFile('doc.txt', exp), false);
      restore();
      assert.equal(fs.readFileSync(file, 'utf8'), 'saved by the user at that very moment');
      assert.deepEqual(names(root), ['doc.txt'], 'nothing left beside it');
    });
  });

  describe('#commit', () => {
    it('does not replace a save made between its check and the rename into place', async () => {
      const file = path.join(root, 'doc.txt');
      fs.writeFileSync(file, 'as synced');
      const exp = expectOf(file);
      const w = await folder.begin('doc.txt');
      await writeText(w, 'the download');
      restore = saveJustBefore(file, () => fs.writeFileSync(file, 'saved by the user at that very moment'));
      assert.equal(await folder.commit(w, 'doc.txt', Date.now(), false, exp), undefined);
      restore();
      assert.equal(fs.readFileSync(file, 'utf8'), 'saved by the user at that very moment');
      assert.deepEqual(names(root), ['doc.txt'], 'no temporary file left');
    });

    it('does not replace a file made where a new one was to arrive', async () => {
      const file = path.join(root, 'new.txt');
      const w = await folder.begin('new.txt');
      await writeText(w, 'the download');
      // Made after the check that the place is free, just before the download goes there.
      restore = saveJustBefore(w.tmp, () => fs.writeFileSync(file, 'made by the user at that very moment'));
      assert.equal(await folder.commit(w, 'new.txt', Date.now(), false, { absent: true }), undefined);
      restore();
      assert.equal(fs.readFileSync(file, 'utf8'), 'made by the user at that very moment');
      assert.deepEqual(names(root), ['new.txt'], 'no temporary file left');
    });

    it('does not place a download beside a file whose name differs only in Unicode normalization', async () => {
      // The user saves "café.txt" spelled with a combining accent while the download of "café.txt" runs.
      const nfd = path.join(root, 'cafe\u0301.txt');
      const w = await folder.begin('caf\u00e9.txt');
      await writeText(w, 'the download');
      fs.writeFileSync(nfd, 'saved by the user meanwhile');
      assert.equal(await folder.commit(w, 'caf\u00e9.txt', Date.now(), false, { absent: true }), undefined);
      assert.deepEqual(names(root), ['cafe\u0301.txt'], 'no twin made, no temporary file left');
      assert.equal(fs.readFileSync(nfd, 'utf8'), 'saved by the user meanwhile');
    });

    it('replaces a file that is still as synced, keeping the downloaded mtime', async () => {
      const file = path.join(root, 'doc.txt');
      fs.writeFileSync(file, 'as synced');
      const w = await folder.begin('doc.txt');
      await writeText(w, 'the download');
      const st = await folder.commit(w, 'doc.txt', 1_600_000_000_000, true, expectOf(file));
      assert.ok(st);
      assert.equal(fs.readFileSync(file, 'utf8'), 'the download');
      assert.equal(fs.statSync(file).mtimeMs, 1_600_000_000_000);
      assert.equal(st.ctimeMs, fs.statSync(file).ctimeMs, 'the stat answered is the file\'s as it is now');
      assert.deepEqual(names(root), ['doc.txt']);
    });
  });

  describe('#rename', () => {
    it('answers the stat it checked, not that of a save made just after the check', async () => {
      const file = path.join(root, 'doc.txt');
      fs.writeFileSync(file, 'as synced');
      const exp = expectOf(file);
      restore = saveJustAfterLook(file, () => fs.writeFileSync(file, 'saved by the user at that very moment'));
      const st = await folder.rename('doc.txt', 'moved.txt', exp);
      restore();
      const now = fs.lstatSync(path.join(root, 'moved.txt'));
      assert.equal(fs.readFileSync(path.join(root, 'moved.txt'), 'utf8'), 'saved by the user at that very moment');
      assert.ok(st, 'the file was moved');
      // Recorded as synced, the stat must not match the saved file: its next scan then sends the save.
      assert.ok(st.size !== now.size || st.mtimeMs !== now.mtimeMs, 'the stat answered is the one checked before the save');
    });

    it('does not take a name held by a file spelled in another Unicode normalization', async () => {
      fs.writeFileSync(path.join(root, 'doc.txt'), 'to move');
      fs.writeFileSync(path.join(root, 'cafe\u0301.txt'), 'already here');
      assert.equal(await folder.rename('doc.txt', 'caf\u00e9.txt', expectOf(path.join(root, 'doc.txt'))), undefined);
      assert.deepEqual(names(root), ['cafe\u0301.txt', 'doc.txt']);
    });
  });

  describe('#setMtime', () => {
    const unchangedFrom = (file: string, content: string) => async () => fs.readFileSync(file, 'utf8') === content;

    it('sets the time of a file that is still as known', async () => {
      const file = path.join(root, 'doc.txt');
      fs.writeFileSync(file, 'as synced');
      const st = await folder.setMtime('doc.txt', 1_600_000_000_000, expectOf(file), unchangedFrom(file, 'as synced'));
      assert.ok(st);
      assert.equal(fs.statSync(file).mtimeMs, 1_600_000_000_000);
    });

    it('answers nothing when a save of the same size landed just before the new time hid it', async () => {
      const file = path.join(root, 'doc.txt');
      fs.writeFileSync(file, 'as synced');
      const exp = expectOf(file);
      restore = saveJustBeforeTimes(file, () => fs.writeFileSync(file, 'SAVED BY!'));
      const st = await folder.setMtime('doc.txt', 1_600_000_000_000, exp, unchangedFrom(file, 'as synced'));
      restore();
      assert.equal(fs.statSync(file).size, exp.size, 'the save kept the size: only the content tells it');
      assert.equal(st, undefined, 'not answered as the file known');
      assert.equal(fs.readFileSync(file, 'utf8'), 'SAVED BY!');
    });
  });
});
