import { KeepsyncError } from '@keepsync/protocol';

/** A request refused for now; `retryAfterSeconds` goes into the Retry-After header. */
export class RateLimitedError extends KeepsyncError {
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterMs: number) {
    super('RATE_LIMITED', message);
    this.name = 'RateLimitedError';
    this.retryAfterSeconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  }
}

/** How a limiter spaces out attempts once the free ones are used up. */
export interface RateLimitPolicy {
  /** Attempts allowed without any wait. */
  free: number;
  /** Wait once `free` attempts have failed; doubles with each further failure. */
  baseDelayMs: number;
  /** The longest wait. */
  maxDelayMs: number;
  /** A key with no attempt for this long starts over. */
  forgetAfterMs: number;
  /** Most keys remembered; the oldest are dropped first (bounded memory under attack). */
  maxKeys?: number;
}

interface Record {
  failures: number;
  lastAt: number;
}

/**
 * Counts failed attempts per key (a client IP) and answers how long the key
 * must wait. Every attempt counts as a failure until `succeed` clears the key,
 * so a burst of parallel attempts cannot slip past the count while a slow
 * check (scrypt) is still running. In memory: a restart forgets, by design.
 */
export class RateLimiter {
  private readonly records = new Map<string, Record>();

  constructor(
    private readonly policy: RateLimitPolicy,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Registers an attempt by `key`, or throws RateLimitedError with `message`
   * when the key must still wait.
   */
  attempt(key: string, message: string): void {
    const now = this.clock();
    let rec = this.records.get(key);
    if (rec && now - rec.lastAt > Math.max(this.policy.forgetAfterMs, this.delay(rec.failures))) rec = undefined;
    if (rec) {
      const wait = rec.lastAt + this.delay(rec.failures) - now;
      if (wait > 0) throw new RateLimitedError(message, wait);
    }
    const next = { failures: (rec?.failures ?? 0) + 1, lastAt: now };
    this.records.delete(key);
    this.records.set(key, next);
    this.bound(now);
  }

  /** Forgets the key's failures after a successful attempt. */
  succeed(key: string): void {
    this.records.delete(key);
  }

  /** The wait imposed after `failures` failed attempts. */
  private delay(failures: number): number {
    if (failures < this.policy.free) return 0;
    const beyond = failures - this.policy.free;
    return Math.min(this.policy.maxDelayMs, this.policy.baseDelayMs * 2 ** Math.min(beyond, 30));
  }

  private bound(now: number): void {
    const max = this.policy.maxKeys ?? 10_000;
    if (this.records.size <= max) return;
    for (const [key, rec] of this.records) {
      if (now - rec.lastAt > this.policy.forgetAfterMs) this.records.delete(key);
    }
    // Still full: drop the least recently active keys (Map keeps insertion order).
    for (const key of this.records.keys()) {
      if (this.records.size <= max) break;
      this.records.delete(key);
    }
  }
}

/** Admin login: 5 free tries, then 1 s, 2 s, 4 s … up to 5 minutes. */
export const LOGIN_POLICY: RateLimitPolicy = { free: 5, baseDelayMs: 1000, maxDelayMs: 5 * 60_000, forgetAfterMs: 15 * 60_000 };

/** Pairing redemption: 10 tries per 10 minutes. */
export const PAIRING_POLICY: RateLimitPolicy = { free: 10, baseDelayMs: 10 * 60_000, maxDelayMs: 10 * 60_000, forgetAfterMs: 10 * 60_000 };
