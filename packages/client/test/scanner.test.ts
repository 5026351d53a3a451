import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chunkBuffer } from '@keepsync/protocol';
import { directFs } from '../src/folder/directFs.js';
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
    it('reports names listed but gone a moment later as vanished, not as absent (a folder moved away mid-walk)', async () => {
      fs.mkdirSync(path.join(root, 'photos'));
      for (let i = 1; i <= 6; i++) fs.writeFileSync(path.join(root, `photos/p${i}.jpg`), `photo ${i}`);
      const away = fs.mkdtempSync(path.join(os.tmpdir(), 'keepsync-away-'));
      // The real lstat, with the folder moved away right after the walk looked at its third file.
      const real = directFs.lstat;
      let seen = 0;
      directFs.lstat = async (p: string) => {
        const st = await real(p);
        if (String(p).includes(`${path.sep}photos${path.sep}p`) && ++seen === 3) fs.renameSync(path.join(root, 'photos'), path.join(away, 'photos'));
        return st;
      };
      try {
        const { states, vanished } = await new Scanner(root).walk();
        const files: string[] = [...states.keys()].filter((k) => k.startsWith('photos/'));
        assert.equal(files.length, 3, `files seen before the move: ${files.join(', ')}`);
        assert.deepEqual([...vanished].sort(), ['photos/p1.jpg', 'photos/p2.jpg', 'photos/p3.jpg', 'photos/p4.jpg', 'photos/p5.jpg', 'photos/p6.jpg'].filter((p) => !files.includes(p)));
      } finally {
        directFs.lstat = real;
        fs.rmSync(away, { recursive: true, force: true });
      }
    });

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

  describe('#hash', () => {
    const random = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7919 + (i >> 8)) & 0xff));
    /** The file as a scan saw it, with `size` as its stat said. */
    const seen = (name: string, size: number) => ({ localPath: name, size, ino: fs.statSync(path.join(root, name)).ino });

    it('hashes a file as the chunker does and keeps the bytes of a small one', async () => {
      const bytes = random(5000);
      fs.writeFileSync(path.join(root, 'small.bin'), bytes);
      const got = await new Scanner(root).hash(seen('small.bin', bytes.length), { keepUpTo: 64 * 1024 });
      assert.deepEqual({ hash: got.hash, size: got.size, chunks: got.chunks }, chunkBuffer(bytes));
      assert.ok(got.data?.equals(bytes), 'the kept bytes are the file');
    });

    it('keeps no bytes of a file above the limit or of one read in several pieces', async () => {
      const bytes = random(3 * 1024 * 1024);
      fs.writeFileSync(path.join(root, 'big.bin'), bytes);
      const scanner = new Scanner(root);
      const big = await scanner.hash(seen('big.bin', bytes.length), { keepUpTo: 8 * 1024 * 1024 });
      assert.equal(big.hash, chunkBuffer(bytes).hash);
      assert.equal(big.data, undefined);
      const limited = await scanner.hash(seen('big.bin', bytes.length), { keepUpTo: 1024 });
      assert.equal(limited.data, undefined);
    });

    it('hashes what is on disk when the file grew or shrank since its stat', async () => {
      const bytes = random(9000);
      fs.writeFileSync(path.join(root, 'f.bin'), bytes);
      const scanner = new Scanner(root);
      const grown = await scanner.hash(seen('f.bin', 4000), { keepUpTo: 64 * 1024 });
      assert.equal(grown.size, 9000);
      assert.equal(grown.hash, chunkBuffer(bytes).hash);
      assert.equal(grown.data, undefined, 'read in more than one piece');
      const shrunk = await scanner.hash(seen('f.bin', 20000), { keepUpTo: 64 * 1024 });
      assert.equal(shrunk.size, 9000);
      assert.ok(shrunk.data?.equals(bytes));
    });

    it('reads a file that grew from empty since its stat (a copy in progress) in whole blocks, not byte by byte', async () => {
      const bytes = random(4 * 1024 * 1024);
      fs.writeFileSync(path.join(root, 'copying.bin'), bytes);
      const scanner = new Scanner(root);
      // The real reads, counted; one in tiny pieces is stopped early.
      const real = directFs.open;
      let reads = 0;
      directFs.open = async (...args: Parameters<typeof real>) => {
        const fh = await real(...args);
        const read = fh.read.bind(fh);
        fh.read = async (...a: Parameters<typeof read>) => {
          if (++reads > 100) throw new Error('read in tiny pieces');
          return read(...a);
        };
        return fh;
      };
      try {
        for (const statSize of [0, 10]) {
          reads = 0;
          const got = await scanner.hash(seen('copying.bin', statSize), { keepUpTo: 64 * 1024 });
          assert.equal(got.size, bytes.length);
          assert.equal(got.hash, chunkBuffer(bytes).hash);
          assert.equal(got.data, undefined, 'read in more than one piece');
          assert.ok(reads <= 7, `${reads} reads after a stat of ${statSize} bytes`);
        }
        fs.writeFileSync(path.join(root, 'one.bin'), 'x');
        const one = await scanner.hash(seen('one.bin', 0), { keepUpTo: 64 * 1024 });
        assert.deepEqual({ size: one.size, data: one.data?.toString() }, { size: 1, data: 'x' }, 'the bytes kept are the file');
      } finally {
        directFs.open = real;
      }
    });
  });
});
