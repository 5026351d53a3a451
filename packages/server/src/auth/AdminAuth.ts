import type { Knex } from 'knex';
import { KeepsyncError } from '@keepsync/protocol';
import { hashPassword, readablePassword, verifyPassword } from './passwords.js';
import { LOGIN_POLICY, RateLimiter } from './RateLimiter.js';
import { randomToken, sha256Hex } from './tokens.js';

/** A logged-in admin session. */
export interface AdminSession {
  /** SHA-256 of the cookie value: the session's key in the database. */
  idHash: string;
  /** Sent back by the page in X-CSRF-Token on every state-changing request. */
  csrfToken: string;
  /** When the password was last given; destructive actions want it recent. */
  loginAt: number;
  expiresAt: number;
}

/** A new session: `cookie` goes into the Set-Cookie header and nowhere else. */
export interface NewSession {
  cookie: string;
  csrfToken: string;
}

/** A session expires after this long without a request. */
export const SESSION_IDLE_MS = 12 * 60 * 60_000;
/** Creating pairings and lowering retention need a login at most this old. */
export const RECENT_LOGIN_MS = 15 * 60_000;
/** Sliding the idle expiry is written at most this often per session. */
const TOUCH_EVERY_MS = 60_000;

const PASSWORD_KEY = 'admin_password';

/**
 * The admin password (scrypt in the settings table) and admin sessions
 * (random 256-bit cookie values, stored hashed). Login attempts are limited
 * per client address with exponential backoff.
 */
export class AdminAuth {
  private readonly limiter: RateLimiter;

  constructor(
    private readonly db: Knex,
    private readonly clock: () => number = Date.now,
  ) {
    this.limiter = new RateLimiter(LOGIN_POLICY, clock);
  }

  /**
   * Makes sure a password is set. With `fromEnv` (KEEPSYNC_ADMIN_PASSWORD) it
   * becomes the password. Without it, and none stored, a readable random one
   * is generated, stored and returned so the server prints it once; otherwise
   * undefined.
   */
  async ensurePassword(fromEnv?: string): Promise<string | undefined> {
    const stored = await this.storedHash();
    if (fromEnv) {
      if (!stored || !(await verifyPassword(fromEnv, stored))) await this.setPassword(fromEnv);
      return undefined;
    }
    if (stored) return undefined;
    const password = readablePassword();
    await this.setPassword(password);
    return password;
  }

  /** Sets a new random password, ends every session, and returns the password. */
  async resetPassword(): Promise<string> {
    const password = readablePassword();
    await this.setPassword(password);
    await this.db('admin_sessions').delete();
    return password;
  }

  /**
   * Checks the password for a client at `address` and opens a session.
   * Wrong password → NOT_AUTHENTICATED; too many failures → RateLimitedError.
   */
  async login(password: unknown, address: string): Promise<NewSession> {
    this.limiter.attempt(address, 'too many failed logins from this address; wait and try again');
    const stored = await this.storedHash();
    const ok = typeof password === 'string' && password.length <= 1024 && stored !== undefined && (await verifyPassword(password, stored));
    if (!ok) throw new KeepsyncError('NOT_AUTHENTICATED', 'wrong password; use the admin password printed at first start or run "keepsync server reset-password"');
    this.limiter.succeed(address);
    const now = this.clock();
    const cookie = randomToken(32);
    const csrfToken = randomToken(32);
    await this.db('admin_sessions').where('expires_at', '<=', now).delete();
    await this.db('admin_sessions').insert({
      id_hash: sha256Hex(cookie),
      csrf_token: csrfToken,
      created_at: now,
      login_at: now,
      expires_at: now + SESSION_IDLE_MS,
    });
    return { cookie, csrfToken };
  }

  /**
   * The live session for a cookie value, or undefined. Slides its idle expiry
   * unless `slide` is false (a page refreshing itself in the background is
   * not someone using it).
   */
  async session(cookie: string | undefined, slide = true): Promise<AdminSession | undefined> {
    if (!cookie || cookie.length > 128) return undefined;
    // Looked up by hash: timing of the lookup reveals nothing about the cookie itself.
    const idHash = sha256Hex(cookie);
    const row = await this.db('admin_sessions').where({ id_hash: idHash }).first();
    const now = this.clock();
    if (!row || Number(row.expires_at) <= now) return undefined;
    let expiresAt = Number(row.expires_at);
    if (slide && now + SESSION_IDLE_MS - expiresAt >= TOUCH_EVERY_MS) {
      expiresAt = now + SESSION_IDLE_MS;
      await this.db('admin_sessions').where({ id_hash: idHash }).update({ expires_at: expiresAt });
    }
    return { idHash, csrfToken: row.csrf_token, loginAt: Number(row.login_at), expiresAt };
  }

  /** True when the session's password was given within the last 15 minutes. */
  isRecentLogin(session: AdminSession): boolean {
    return this.clock() - session.loginAt <= RECENT_LOGIN_MS;
  }

  /** Ends a session (logout). Unknown cookies are ignored. */
  async logout(cookie: string | undefined): Promise<void> {
    if (!cookie || cookie.length > 128) return;
    await this.db('admin_sessions').where({ id_hash: sha256Hex(cookie) }).delete();
  }

  private async storedHash(): Promise<string | undefined> {
    const row = await this.db('settings').where({ key: PASSWORD_KEY }).first('value');
    return row ? (JSON.parse(row.value) as string) : undefined;
  }

  private async setPassword(password: string): Promise<void> {
    const value = JSON.stringify(await hashPassword(password));
    await this.db('settings').insert({ key: PASSWORD_KEY, value }).onConflict('key').merge();
  }
}
