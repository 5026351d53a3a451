import assert from 'node:assert/strict';
import { DEFAULT_SETTINGS, applyUpdate, crossesHold, weakensHold } from '@keepsync/server';

describe('crossesHold', () => {
  const rule = DEFAULT_SETTINGS.deleteHold;

  it('holds 100 files or more whatever the folder size', () => {
    assert.equal(crossesHold(rule, 99, 100_000), false);
    assert.equal(crossesHold(rule, 100, 100_000), true);
  });

  it('holds 25% of a folder of 40 files or more, and not a few files of a small folder', () => {
    assert.equal(crossesHold(rule, 10, 40), true);
    assert.equal(crossesHold(rule, 9, 40), false);
    assert.equal(crossesHold(rule, 1, 3), false);
    assert.equal(crossesHold(rule, 30, 39), false);
  });

  it('holds nothing when both rules are off, or when nothing is deleted', () => {
    const off = { files: 0, percent: 0, minFolderFiles: 0 };
    assert.equal(crossesHold(off, 1_000_000, 1_000_000), false);
    assert.equal(crossesHold(rule, 0, 0), false);
    assert.equal(crossesHold({ files: 0, percent: 25, minFolderFiles: 0 }, 1, 2), true);
  });
});

describe('weakensHold', () => {
  const base = applyUpdate(DEFAULT_SETTINGS, {});

  it('is true for turning a rule off or loosening it, false for tightening it or changing nothing', () => {
    assert.equal(weakensHold(base, applyUpdate(base, { deleteHold: { files: 0 } })), true);
    assert.equal(weakensHold(base, applyUpdate(base, { deleteHold: { files: 500 } })), true);
    assert.equal(weakensHold(base, applyUpdate(base, { deleteHold: { percent: 0 } })), true);
    assert.equal(weakensHold(base, applyUpdate(base, { deleteHold: { minFolderFiles: 100 } })), true);
    assert.equal(weakensHold(base, applyUpdate(base, { deleteHold: { files: 50, percent: 10, minFolderFiles: 10 } })), false);
    assert.equal(weakensHold(base, applyUpdate(base, { trashDays: 60 })), false);
  });
});
