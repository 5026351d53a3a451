import assert from 'node:assert/strict';
import { conflictPath, isWithin, parseRelPath, rebase, restoredPath, type RelPath } from '@keepsync/protocol';

describe('paths', () => {
  describe('#parseRelPath', () => {
    it('accepts ordinary relative paths', () => {
      assert.equal(parseRelPath('Photos/2024/a.jpg'), 'Photos/2024/a.jpg');
      assert.equal(parseRelPath('a b/c:d/ümlaut.txt'), 'a b/c:d/ümlaut.txt');
    });

    it('normalizes to NFC', () => {
      assert.equal(parseRelPath('Cafe\u0301.txt'), 'Caf\u00e9.txt');
    });

    const hostile: Array<[string, unknown]> = [
      ['parent segments', '../etc/passwd'],
      ['inner parent segments', 'a/../../b'],
      ['absolute paths', '/etc/passwd'],
      ['empty paths', ''],
      ['empty segments', 'a//b'],
      ['trailing slash', 'a/'],
      ['dot segments', './a'],
      ['NUL', 'a\u0000b'],
      ['control characters', 'a\u0007b'],
      ['newlines', 'a\nb'],
      ['backslashes', 'a\\..\\b'],
      ['drive letters', 'C:\\Windows'],
      ['over-long names', 'x'.repeat(256)],
      ['over-long paths', Array.from({ length: 20 }, () => 'y'.repeat(200)).join('/')],
      ['internal temp names', 'a/.keepsync-123'],
      ['non-strings', 42],
      ['null', null],
    ];
    for (const [what, input] of hostile) {
      it(`refuses ${what}`, () => {
        assert.throws(() => parseRelPath(input), (err: Error & { code?: string }) => err.code === 'PATH_INVALID');
      });
    }
  });

  describe('#isWithin', () => {
    it('matches the path itself and its descendants only', () => {
      assert.ok(isWithin('a/b', 'a'));
      assert.ok(isWithin('a', 'a'));
      assert.ok(!isWithin('ab', 'a'));
      assert.ok(!isWithin('a', 'a/b'));
    });
  });

  describe('#rebase', () => {
    it('moves a path from one folder to another', () => {
      assert.equal(rebase('a/b/c' as RelPath, 'a/b' as RelPath, 'x' as RelPath), 'x/c');
    });
  });

  describe('#conflictPath', () => {
    it('names conflict copies as the SPEC says, keeping the extension', () => {
      const d = new Date(2026, 10, 25, 9, 5, 7);
      assert.equal(conflictPath('docs/thesis.tex' as RelPath, 'laptop', d), 'docs/thesis (conflict from laptop 2026-11-25 090507).tex');
      assert.equal(conflictPath('Makefile' as RelPath, 'laptop', d), 'Makefile (conflict from laptop 2026-11-25 090507)');
      assert.equal(conflictPath('.bashrc' as RelPath, 'pc', d), '.bashrc (conflict from pc 2026-11-25 090507)');
    });
  });

  describe('#restoredPath', () => {
    it('names restored items beside a taken place', () => {
      const d = new Date(2026, 10, 25);
      assert.equal(restoredPath('a/b.txt' as RelPath, d, false), 'a/b (restored 2026-11-25).txt');
      assert.equal(restoredPath('a/dir.v2' as RelPath, d, true), 'a/dir.v2 (restored 2026-11-25)');
    });
  });
});
