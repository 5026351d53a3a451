// Small DOM helpers. Data from the server (file and device names, messages)
// only ever becomes text: el() sets textContent, never innerHTML.

/**
 * Creates an element. `attrs` are set as attributes (class, type, …) except
 * `text` (textContent), `on*` functions (event listeners) and `dataset`.
 * Children are nodes or strings (strings become text nodes).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') node.textContent = String(value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `node`. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** The element with this id (the page's fixed structure). */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`page is missing #${id}`);
  return node;
}

const units = ['bytes', 'KB', 'MB', 'GB', 'TB', 'PB'];

/** 1536 → "1.5 KB" (powers of 1024, as file managers show it). */
export function formatBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  if (n < 1024) return n === 1 ? '1 byte' : `${n} bytes`;
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

/** An ISO time or ms as the viewer's local date and time; "—" when absent. */
export function formatTime(t) {
  if (t === null || t === undefined || t === '') return '—';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? '—' : dateTime.format(d);
}

export function formatDate(t) {
  if (t === null || t === undefined || t === '') return '—';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? '—' : dateOnly.format(d);
}

/** "3 minutes ago", "yesterday", or the date for anything older than a week. */
export function formatAgo(t, now = Date.now()) {
  if (t === null || t === undefined || t === '') return 'never';
  const ms = now - new Date(t).getTime();
  if (!Number.isFinite(ms)) return '—';
  const s = Math.round(ms / 1000);
  if (s < 45) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return m === 1 ? '1 minute ago' : `${m} minutes ago`;
  const h = Math.round(m / 60);
  if (h < 24) return h === 1 ? '1 hour ago' : `${h} hours ago`;
  const d = Math.round(h / 24);
  if (d < 7) return d === 1 ? 'yesterday' : `${d} days ago`;
  return formatDate(t);
}

/** The last segment of a folder-relative path. */
export function baseName(p) {
  const i = p.lastIndexOf('/');
  return i < 0 ? p : p.slice(i + 1);
}

/** A table cell with a label that narrow screens show beside the value. */
export function cell(label, ...children) {
  return el('td', { 'data-label': label }, ...children);
}

/** A small button. `kind` is '', 'primary' or 'danger'. */
export function button(label, onclick, kind = '', extra = {}) {
  return el('button', { type: 'button', class: `btn ${kind}`.trim(), onclick, ...extra }, label);
}

let toastTimer;

/** A short message at the bottom of the screen; `error` styles it as a failure. */
export function toast(message, error = false) {
  const box = byId('toast');
  box.textContent = message;
  box.className = error ? 'toast error' : 'toast';
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (box.hidden = true), error ? 8000 : 4000);
}

/**
 * A modal dialog built from `body` nodes with a row of buttons. Resolves
 * with the value of the button pressed, or undefined when dismissed (Esc).
 * `buttons`: [{label, value, kind}]; a 'primary' or 'danger' button submits
 * the dialog's form, so Enter in a field presses it and required fields are
 * checked first.
 */
export function modal({ title, body = [], buttons, label }) {
  return new Promise((resolve) => {
    const footer = el('div', { class: 'dialog-actions' });
    const form = el('form', { method: 'dialog', class: 'dialog-body' },
      el('h2', { text: title }), ...body, footer);
    const dialog = el('dialog', { class: 'dialog', 'aria-label': label ?? title }, form);
    let result;
    for (const b of buttons) {
      footer.append(el('button', {
        type: b.kind === 'primary' || b.kind === 'danger' ? 'submit' : 'button',
        class: `btn ${b.kind ?? ''}`.trim(),
        value: String(b.value),
        onclick: (ev) => {
          if (b.kind !== 'primary' && b.kind !== 'danger') {
            ev.preventDefault();
            result = b.value;
            dialog.close();
          }
        },
      }, b.label));
    }
    form.addEventListener('submit', (ev) => {
      const submitter = ev.submitter;
      const chosen = buttons.find((b) => String(b.value) === submitter?.value) ?? buttons.find((b) => b.kind === 'primary' || b.kind === 'danger');
      result = chosen?.value;
    });
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
    const first = dialog.querySelector('input');
    if (first) first.focus();
  });
}

/** Asks "are you sure?"; resolves true only when the admin confirms. */
export async function confirmAction(title, message, confirmLabel, danger = true) {
  const answer = await modal({
    title,
    body: [el('p', { text: message })],
    buttons: [
      { label: 'Cancel', value: false },
      { label: confirmLabel, value: true, kind: danger ? 'danger' : 'primary' },
    ],
  });
  return answer === true;
}

/** Asks for one line of text; resolves with it, or undefined when cancelled. */
export async function askText(title, label, value, confirmLabel, extra = {}) {
  const input = el('input', { type: extra.type ?? 'text', value, required: !extra.optional, maxlength: extra.maxlength ?? 255, autocomplete: extra.autocomplete ?? 'off', step: extra.step, max: extra.max, id: 'ask-input' });
  const answer = await modal({
    title,
    body: [extra.hint ? el('p', { text: extra.hint }) : null, el('label', { class: 'field', for: 'ask-input' }, el('span', { text: label }), input)],
    buttons: [
      { label: 'Cancel', value: false },
      { label: confirmLabel, value: true, kind: 'primary' },
    ],
  });
  return answer === true ? input.value : undefined;
}

/** Shows a failed action's one-line message; an ended session has its own screen. */
export function report(err) {
  if (err?.status === 401 && !byId('login').hidden) return;
  toast(err instanceof Error ? err.message : String(err), true);
}
