import type { Request, RequestHandler } from 'express';
import { Forbidden } from './errors.js';

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

/** Headers on every response: a strict CSP, no sniffing, no framing, no referrer, HSTS over TLS. */
export function securityHeaders(): RequestHandler {
  return (req, res, next) => {
    res.set({
      'Content-Security-Policy': CSP,
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'X-Frame-Options': 'DENY',
      'Cross-Origin-Opener-Policy': 'same-origin',
    });
    if (req.secure) res.set('Strict-Transport-Security', 'max-age=31536000');
    next();
  };
}

/** True for methods that change state and so need CSRF protection. */
export function isStateChanging(method: string): boolean {
  return !['GET', 'HEAD', 'OPTIONS'].includes(method);
}

/**
 * Refuses state-changing requests whose Origin header names another site
 * (G4). Requests without Origin (curl, the device client) pass; the session
 * cookie is SameSite=Strict and the CSRF token guards those that need a session.
 */
export function sameOrigin(behindProxy: boolean): RequestHandler {
  return (req, _res, next) => {
    if (!isStateChanging(req.method)) return next();
    const origin = req.get('origin');
    if (origin === undefined) return next();
    if (!allowedHosts(req, behindProxy).includes(hostOf(origin) ?? '')) {
      return next(new Forbidden('cross-site request refused; use the admin page served by this server'));
    }
    next();
  };
}

function hostOf(origin: string): string | undefined {
  try {
    return new URL(origin).host.toLowerCase();
  } catch {
    return undefined;
  }
}

function allowedHosts(req: Request, behindProxy: boolean): string[] {
  const hosts = [req.get('host')];
  if (behindProxy) hosts.push(req.get('x-forwarded-host')?.split(',')[0]?.trim());
  return hosts.filter((h): h is string => !!h).map((h) => h.toLowerCase());
}

/** Marks responses as not cacheable (API answers carry private data). */
export function noStore(): RequestHandler {
  return (_req, res, next) => {
    res.set('Cache-Control', 'no-store');
    next();
  };
}

/** The client's address: the socket's, or the proxy's X-Forwarded-For when trusted. */
export function clientAddress(req: Request): string {
  return (req.ip ?? req.socket.remoteAddress ?? 'unknown').slice(0, 128);
}
