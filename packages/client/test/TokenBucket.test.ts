import assert from 'node:assert/strict';
import { TokenBucket, parseRate } from '@keepsync/client';

describe('TokenBucket', () => {
  describe('#take', () => {
    it('lets one second\'s worth through at once, then makes the sender wait for the rate', () => {
      let now = 0;
      const bucket = new TokenBucket(1000, () => now);
      assert.equal(bucket.take(1000), 0);
      assert.equal(bucket.take(500), 500);
      now += 500;
      assert.equal(bucket.delayMs(), 0);
    });

    it('runs into debt for a piece bigger than the bucket and waits it off', () => {
      let now = 0;
      const bucket = new TokenBucket(1000, () => now);
      assert.equal(bucket.take(4000), 3000);
      now += 1000;
      assert.equal(bucket.delayMs(), 2000);
      now += 2000;
      assert.equal(bucket.delayMs(), 0);
    });

    it('does not save up more than one second while idle', () => {
      let now = 0;
      const bucket = new TokenBucket(1000, () => now);
      now += 60_000;
      assert.equal(bucket.take(1000), 0);
      assert.equal(bucket.take(1000), 1000);
    });
  });

  describe('parseRate', () => {
    it('reads bytes per second with K, M and G multiples', () => {
      assert.equal(parseRate('500K'), 500 * 1024);
      assert.equal(parseRate('2M'), 2 * 1024 * 1024);
      assert.equal(parseRate('1.5m'), 1.5 * 1024 * 1024);
      assert.equal(parseRate('1G'), 1024 ** 3);
      assert.equal(parseRate('4096'), 4096);
      assert.equal(parseRate('2MB/s'), 2 * 1024 * 1024);
    });

    it('refuses what is not a rate, and rates under 1 KiB/s', () => {
      for (const bad of ['', 'fast', '-1M', '1T', '512', 'M', '1e6']) assert.equal(parseRate(bad), undefined, bad);
    });
  });
});
