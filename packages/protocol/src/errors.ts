/**
 * Stable error codes. Edges translate them: HTTP to 4xx + `{error}`, the socket
 * layer to an `error` message or a close code, the CLI to exit 1 and one line.
 */
export type ErrorCode =
  | 'PATH_INVALID'
  | 'FRAME_INVALID'
  | 'FRAME_TOO_LARGE'
  | 'PROTOCOL_VERSION'
  | 'NOT_AUTHENTICATED'
  | 'TOKEN_REVOKED'
  | 'TOKEN_INVALID'
  | 'FOLDER_UNKNOWN'
  | 'CHUNK_HASH_MISMATCH'
  | 'CHUNK_MISSING'
  | 'CHUNK_TOO_LARGE'
  | 'VERSION_UNKNOWN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'FINGERPRINT_MISMATCH'
  | 'PAIRING_INVALID'
  | 'RATE_LIMITED'
  | 'FOLDER_ROOT_MISSING'
  | 'NOT_PAIRED'
  | 'USAGE'
  | 'UNAVAILABLE'
  | 'SERVER_SILENT'
  | 'LOCAL_WRITE_FAILED'
  | 'STORAGE'
  | 'INTERNAL';

/** An error with a stable code and a one-line message that says what to do. */
export class KeepsyncError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KeepsyncError';
    this.code = code;
  }
}

/** A peer sent something that breaks the protocol; only that connection is closed. */
export class ProtocolError extends KeepsyncError {
  constructor(code: ErrorCode, message: string) {
    super(code, message);
    this.name = 'ProtocolError';
  }
}

export function isKeepsyncError(err: unknown): err is KeepsyncError {
  return err instanceof KeepsyncError;
}

/** The message of anything thrown, for one-line reports. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
