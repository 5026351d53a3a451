// The page's only way to the server: JSON over /api/v1 with the session
// cookie (HttpOnly, set by the server) and the CSRF token in a header.

import { el, modal } from './dom.js';

let csrfToken = '';
let onLoggedOut = () => {};

/** An error answer from the API: its one-line message and HTTP status. */
export class ApiError extends Error {
  constructor(message, status) {
    // The API's one-line messages start lower case; on the page they start a sentence.
    super(message.charAt(0).toUpperCase() + message.slice(1));
    this.status = status;
  }
}

/** Called whenever the server says the session is gone (expired or logged out elsewhere). */
export function whenLoggedOut(fn) {
  onLoggedOut = fn;
}

export function setCsrfToken(token) {
  csrfToken = token;
}

/** Logs in; throws ApiError with the server's message on a wrong password or rate limit. */
export async function login(password) {
  const body = await request('POST', '/session', { password }, { retryReauth: false, quiet: true });
  csrfToken = body.csrfToken;
}

/** True when the browser still holds a live session (page reload). */
export async function resume() {
  try {
    const body = await request('GET', '/session', undefined, { retryReauth: false, quiet: true });
    csrfToken = body.csrfToken;
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return false;
    throw err;
  }
}

export async function logout() {
  try {
    await request('DELETE', '/session', undefined, { retryReauth: false, quiet: true });
  } finally {
    csrfToken = '';
  }
}

/**
 * One API call. State-changing calls carry the CSRF token. A 401 asking for
 * a recent login prompts for the password and retries once; any other 401
 * means the session has ended and shows the login screen.
 */
export async function request(method, path, body, opts = {}) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') headers['x-csrf-token'] = csrfToken;
  // Periodic refreshes say so: they must not keep an unattended session alive.
  if (opts.background) headers['x-keepsync-background'] = '1';
  let res;
  try {
    res = await fetch(`/api/v1${path}`, {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError('cannot reach the server; check that it is running and the network is up', 0);
  }
  if (res.status === 204) return undefined;
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (res.ok) return data;
  const message = (data && typeof data.error === 'string' && data.error) || `the server answered ${res.status}`;
  if (res.status === 401 && data?.reauth && opts.retryReauth !== false) {
    if (await confirmPassword(message)) return request(method, path, body, { ...opts, retryReauth: false });
    throw new ApiError('cancelled: the password is needed for this action', 401);
  }
  if (res.status === 401 && !opts.quiet) onLoggedOut(message);
  throw new ApiError(message, res.status);
}

/** Asks for the admin password again (for pairing links and lowering retention). */
async function confirmPassword(reason) {
  for (let hint = reason; ;) {
    const input = el('input', { type: 'password', id: 'reauth-password', autocomplete: 'current-password', required: true });
    const answer = await modal({
      title: 'Confirm it is you',
      label: 'Confirm your password',
      body: [
        el('p', { text: 'This action needs your admin password again, because you logged in more than 15 minutes ago.' }),
        el('label', { class: 'field', for: 'reauth-password' }, el('span', { text: 'Admin password' }), input),
        hint === reason ? null : el('p', { class: 'form-error', role: 'alert', text: hint }),
      ],
      buttons: [
        { label: 'Cancel', value: false },
        { label: 'Confirm', value: true, kind: 'primary' },
      ],
    });
    if (answer !== true) return false;
    try {
      await login(input.value);
      return true;
    } catch (err) {
      hint = err.message;
    }
  }
}

/** A path segment for `:folder` and friends. */
export function seg(value) {
  return encodeURIComponent(String(value));
}

/** `?a=1&b=2` from an object, skipping undefined values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}
