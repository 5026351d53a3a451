import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A random secret as base64url: 32 bytes (256 bits) unless told otherwise. */
export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/**
 * SHA-256 of a string as 64 lowercase hex. Secrets (device tokens, pairing
 * codes, admin session ids) are stored only in this form, so a database dump
 * yields no usable credential (G2). They are high-entropy, so no salt is needed.
 */
export function sha256Hex(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

/**
 * Compares two strings in time independent of where they differ. Strings of
 * different lengths are unequal (their length is not secret: hex digests and
 * tokens have a fixed length).
 */
export function safeEqualHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  if (x.length !== y.length) return false;
  return timingSafeEqual(x, y);
}
