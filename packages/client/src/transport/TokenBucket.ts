/**
 * A token bucket for the optional upload and download rate limits: `rate`
 * bytes per second on average, with bursts of up to one second's worth. A
 * take may run the bucket into debt (a chunk is bigger than the bucket);
 * `delayMs` then says how long to wait until it is paid back.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    /** Bytes per second. */
    readonly rate: number,
    private readonly clock: () => number = Date.now,
  ) {
    if (!(rate > 0)) throw new Error(`bug: rate must be positive, got ${rate}`);
    this.tokens = rate;
    this.last = clock();
  }

  private refill(): void {
    const now = this.clock();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
  }

  /** Spends `bytes` and answers how many ms to wait before sending or reading more (0: none). */
  take(bytes: number): number {
    this.refill();
    this.tokens -= bytes;
    return this.delayMs();
  }

  /** How long until the bucket is out of debt, in ms. */
  delayMs(): number {
    this.refill();
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.rate);
  }
}

/** Parses a rate such as `500K`, `2M` or `1.5M` (bytes per second, binary multiples). */
export function parseRate(text: string): number | undefined {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]?)(?:i?B)?(?:\/s)?$/.exec(text.trim());
  if (!m) return undefined;
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  const n = Math.floor(Number(m[1]) * unit);
  return n >= 1024 ? n : undefined;
}
