/** WebSocket close codes the server uses; clients recognise them and act. */
export const CloseCode = {
  /** Normal shutdown of the server; reconnect later. */
  SHUTDOWN: 1001,
  /** The peer broke the protocol (malformed or oversized frame). */
  PROTOCOL_ERROR: 4400,
  /** The device token was removed by the admin: stop syncing, keep files. */
  TOKEN_REVOKED: 4401,
  /** Unknown token: not paired (or paired with another server). */
  TOKEN_INVALID: 4403,
  /** The folder named in hello does not exist. */
  FOLDER_UNKNOWN: 4404,
  /** Protocol versions differ: upgrade one side. */
  PROTOCOL_VERSION: 4426,
  /** The handshake did not arrive in time. */
  HANDSHAKE_TIMEOUT: 4408,
  /** Too many connections or requests. */
  RATE_LIMITED: 4429,
  /** The device connected again elsewhere; this connection is replaced. */
  REPLACED: 4409,
} as const;

export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode];
