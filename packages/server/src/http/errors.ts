import type { ErrorRequestHandler } from 'express';
import { KeepsyncError, isKeepsyncError, type ErrorCode } from '@keepsync/protocol';
import { RateLimitedError } from '../auth/RateLimiter.js';

/** The admin must give the password again (destructive action, old login): 401 with `reauth: true`. */
export class ReauthRequired extends KeepsyncError {
  constructor() {
    super('NOT_AUTHENTICATED', 'this action needs a recent login; enter the admin password again');
    this.name = 'ReauthRequired';
  }
}

/** A request the app refuses outright (bad CSRF token, foreign origin): 403. */
export class Forbidden extends Error {}

const STATUS: Partial<Record<ErrorCode, number>> = {
  USAGE: 400,
  PATH_INVALID: 400,
  PAIRING_INVALID: 400,
  FINGERPRINT_MISMATCH: 400,
  NOT_AUTHENTICATED: 401,
  TOKEN_INVALID: 401,
  TOKEN_REVOKED: 401,
  FOLDER_UNKNOWN: 404,
  NOT_FOUND: 404,
  VERSION_UNKNOWN: 404,
  CONFLICT: 409,
  RATE_LIMITED: 429,
  UNAVAILABLE: 503,
};

/** The HTTP status for a KeepsyncError code; 500 for anything not a client's fault. */
export function statusOf(code: ErrorCode): number {
  return STATUS[code] ?? 500;
}

/**
 * The one place errors become responses: `{error}` with one line, never a
 * stack trace. Body-parser failures keep their 4xx with our own wording.
 */
export function errorHandler(log: (message: string) => void): ErrorRequestHandler {
  return (err, _req, res, next) => {
    if (res.headersSent) return next(err);
    const { status, body } = describe(err, log);
    if (err instanceof RateLimitedError) res.set('Retry-After', String(err.retryAfterSeconds));
    res.status(status).json(body);
  };
}

function describe(err: unknown, log: (message: string) => void): { status: number; body: Record<string, unknown> } {
  if (err instanceof ReauthRequired) return { status: 401, body: { error: err.message, reauth: true } };
  if (err instanceof Forbidden) return { status: 403, body: { error: err.message } };
  if (isKeepsyncError(err)) {
    const status = statusOf(err.code);
    if (status < 500 || err.code === 'UNAVAILABLE') return { status, body: { error: err.message.split('\n')[0] } };
  }
  const parser = err as { type?: string; status?: number };
  if (parser.type === 'entity.parse.failed') return { status: 400, body: { error: 'request body is not valid JSON' } };
  if (parser.type === 'entity.too.large') return { status: 413, body: { error: 'request body is too large (64 KiB at most)' } };
  if (typeof parser.status === 'number' && parser.status >= 400 && parser.status < 500) {
    return { status: parser.status, body: { error: 'bad request' } };
  }
  log(`keepsync: internal error in an HTTP request: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return { status: 500, body: { error: 'internal server error; see the server log' } };
}
