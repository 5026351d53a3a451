import type { Request, RequestHandler, Response } from 'express';
import type { AdminAuth, AdminSession } from '../auth/AdminAuth.js';
import { SESSION_IDLE_MS } from '../auth/AdminAuth.js';
import { safeEqualHex } from '../auth/tokens.js';
import { KeepsyncError } from '@keepsync/protocol';
import { Forbidden, ReauthRequired } from './errors.js';
import { isStateChanging } from './security.js';

/** Set to 1 on reads the admin page makes by itself (live refresh), not for a person. */
export const BACKGROUND_HEADER = 'x-keepsync-background';

/** The admin session cookie's name. */
export const SESSION_COOKIE = 'keepsync_session';

/** The value of one cookie from the Cookie header, or undefined. */
export function readCookie(req: Request, name: string): string | undefined {
  const header = req.get('cookie');
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Secure unless the server runs behind the explicit plain-HTTP proxy option
 * and this request really came in over plain HTTP.
 */
function cookieSecure(req: Request, behindProxy: boolean): boolean {
  return !(behindProxy && !req.secure);
}

export function setSessionCookie(req: Request, res: Response, value: string, behindProxy: boolean): void {
  res.cookie(SESSION_COOKIE, value, {
    httpOnly: true,
    secure: cookieSecure(req, behindProxy),
    sameSite: 'strict',
    path: '/',
    maxAge: SESSION_IDLE_MS,
  });
}

export function clearSessionCookie(req: Request, res: Response, behindProxy: boolean): void {
  res.clearCookie(SESSION_COOKIE, { httpOnly: true, secure: cookieSecure(req, behindProxy), sameSite: 'strict', path: '/' });
}

/** The session loaded by `requireSession`. */
export function sessionOf(res: Response): AdminSession {
  const s = res.locals.session as AdminSession | undefined;
  if (!s) throw new Error('bug: route reads the session without requireSession');
  return s;
}

/**
 * Requires a live admin session (401 otherwise) and, for state-changing
 * methods, an X-CSRF-Token header equal to the session's token (403 otherwise).
 */
export function requireSession(admin: AdminAuth): RequestHandler {
  return async (req, res, next) => {
    // The admin page marks its own periodic refreshes: they do not keep an unattended session alive.
    const background = req.get(BACKGROUND_HEADER) === '1' && !isStateChanging(req.method);
    const session = await admin.session(readCookie(req, SESSION_COOKIE), !background);
    if (!session) throw new KeepsyncError('NOT_AUTHENTICATED', 'not logged in; log in on the admin page first');
    if (isStateChanging(req.method)) {
      const token = req.get('x-csrf-token');
      if (!token || !safeEqualHex(token, session.csrfToken)) {
        throw new Forbidden('missing or wrong X-CSRF-Token header; reload the admin page');
      }
    }
    res.locals.session = session;
    next();
  };
}

/** Requires the password to have been given recently (creating pairings, lowering retention). */
export function requireRecentLogin(admin: AdminAuth, res: Response): void {
  if (!admin.isRecentLogin(sessionOf(res))) throw new ReauthRequired();
}
