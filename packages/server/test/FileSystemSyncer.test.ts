import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileSystemSyncer } from '../src/storage/FileSystemSyncer.js';

describe('FileSystemSyncer', () => {
  let bin: string;
  let calls: string;
  let saved: string | undefined;
  const callCount = () => (fs.existsSync(calls) ? fs.readFileSync(calls, 'utf8').trim().split('\n').length : 0);
  /** A `sync` on PATH that logs the process that started it and its arguments, waits `seconds`, and exits with `code`. */
  const fakeSync = (seconds: number, code = 0) =>
    fs.writeFileSync(path.join(bin, 'sync'), `#!/bin/sh\necho "$PPID $@" >> ${calls}\n/bin/sleep ${seconds}\nexit ${code}\n`, { mode: 0o755 });
  const logged = () => fs.readFileSync(calls, 'utf8').trim().split('\n').map((l) => l.split(' '));

  beforeEach(() => {
    bin = fs.mkdtempSync(path.join(os.tmpdir(), 'keepsync-bin-'));
    calls = path.join(bin, 'calls');
    saved = process.env.PATH;
    process.env.PATH = bin; // the shell, started at the first sync, finds `sync` here
  });
  afterEach(() => {
    process.env.PATH = saved;
    fs.rmSync(bin, { recursive: true, force: true });
  });

  it('syncs the file system holding its folder, through one shell for every sync', async () => {
    fakeSync(0);
    const syncer = new FileSystemSyncer('/some/folder');
    assert.equal(await syncer.sync(), true);
    assert.equal(await syncer.sync(), true);
    const [first, second] = logged();
    assert.deepEqual([first.slice(1), second.slice(1)], [['--file-system', '/some/folder'], ['--file-system', '/some/folder']]);
    assert.equal(second[0], first[0], 'both started by the same shell');
    assert.notEqual(first[0], String(process.pid), 'not started by this process');
  });

  it('lets callers that arrive while a sync runs share the next one', async () => {
    fakeSync(0.3);
    const syncer = new FileSystemSyncer(bin);
    const first = syncer.sync();
    await new Promise((r) => setTimeout(r, 100));
    const later = await Promise.all([syncer.sync(), syncer.sync(), syncer.sync()]);
    assert.equal(await first, true);
    assert.deepEqual(later, [true, true, true]);
    assert.equal(callCount(), 2, 'the one running, then one for the three that waited');
  });

  it('answers false where the sync fails or there is no such command', async () => {
    fakeSync(0, 1);
    assert.equal(await new FileSystemSyncer(bin).sync(), false);
    fs.rmSync(path.join(bin, 'sync'));
    assert.equal(await new FileSystemSyncer(bin).sync(), false);
  });
});
