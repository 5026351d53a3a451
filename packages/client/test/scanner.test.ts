import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Scanner } from '../src/scanner/Scanner.js';

describe('Scanner', () => {
  let root: string;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'keepsync-scan-'));
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  describe('#stat', () => {
    it('finds a file whose name is NFD on disk by its NFC wire path', async () => {
      const nfd = 'Cafe\u0301/re\u0301sume\u0301.txt';
      fs.mkdirSync(path.join(root, 'Cafe\u0301'));
      fs.writeFileSync(path.join(root, nfd), 'x');
      const st = await new Scanner(root).stat(nfd.normalize('NFC'));
      assert.ok(st, 'not found');
      assert.equal(st.path, nfd.normalize('NFC'));
      assert.equal(st.localPath, nfd);
      assert.equal(st.kind, 'file');
    });

    it('answers undefined for a path absent in every form', async () => {
      assert.equal(await new Scanner(root).stat('café.txt'), undefined);
      assert.equal(await new Scanner(root).stat('plain.txt'), undefined);
    });
  });
  describe('#walk', () => {
    it('leaves temporary .keepsync-* files out of the states and lists them as leftovers', async () => {
      fs.mkdirSync(path.join(root, 'd'));
      fs.writeFileSync(path.join(root, 'd/.keepsync-0a1b2c'), 'partial');
      fs.writeFileSync(path.join(root, 'd/real.txt'), 'x');
      const scanner = new Scanner(root);
      const { states } = await scanner.walk();
      assert.deepEqual([...states.keys()].sort(), ['d', 'd/real.txt']);
      assert.deepEqual(scanner.temps, ['d/.keepsync-0a1b2c']);
    });
  });
});
