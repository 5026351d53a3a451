// Settings tab: retention and public URL, certificate, storage, activity.

import { request } from './api.js';
import { byId, el, fill, formatBytes, formatTime, report, toast } from './dom.js';

const labels = {
  currentBytes: 'Current files',
  versionsBytes: 'Earlier versions',
  versionBytes: 'Earlier versions',
  trashBytes: 'Trash',
  chunksBytes: 'Chunk store on disk',
  storedBytes: 'Stored on disk',
  totalBytes: 'Total',
  chunks: 'Chunks',
};

function fact(term, ...value) {
  return [el('dt', { text: term }), el('dd', {}, ...value)];
}

async function loadSettings() {
  const s = await request('GET', '/settings');
  byId('set-keep').value = String(s.versions.keep);
  byId('set-age').value = String(s.versions.maxAgeDays);
  byId('set-trash').value = String(s.trashDays);
  byId('set-url').value = s.publicUrl ?? '';
}

async function loadCertificate() {
  const c = await request('GET', '/certificate');
  fill(byId('cert'),
    fact('Subject', (c.subject || '—').split('\n').join(', ')),
    fact('Valid from', formatTime(c.validFrom)),
    fact('Valid until', formatTime(c.validTo)),
    fact('Kind', c.selfSigned ? 'Self-signed (devices pin its fingerprint)' : 'Issued by a certificate authority'),
    fact('Fingerprint', el('span', { class: 'mono fingerprint', id: 'cert-fingerprint', text: `sha256/${c.fingerprint}` })));
}

async function loadStorage() {
  const [status, folders] = await Promise.all([request('GET', '/status'), request('GET', '/folders')]);
  const storage = status.storage && typeof status.storage === 'object' ? status.storage : {};
  const facts = [];
  for (const [key, value] of Object.entries(storage)) {
    if (typeof value !== 'number') continue;
    const label = labels[key] ?? key.replace(/([A-Z])/g, ' $1').replace(/^./, (c) => c.toUpperCase());
    facts.push(fact(label, /bytes$/i.test(key) ? formatBytes(value) : value.toLocaleString()));
  }
  for (const f of folders) facts.push(fact(`Folder ${f.name}`, `${f.files.toLocaleString()} ${f.files === 1 ? 'file' : 'files'}, ${formatBytes(f.bytes)}`));
  fill(byId('storage'), facts);
}

async function loadActivity() {
  const rows = await request('GET', '/activity?limit=30');
  const list = byId('activity');
  if (rows.length === 0) {
    fill(list, el('li', { class: 'muted', text: 'Nothing has happened yet.' }));
    return;
  }
  fill(list, rows.map((a) => el('li', { dataset: { kind: a.kind } },
    el('span', { class: `dot kind-${a.kind.replace(/[^a-z-]/g, '')}`, 'aria-hidden': 'true' }),
    el('span', { class: 'activity-text', text: a.message }),
    el('time', { class: 'muted small', datetime: a.at, text: formatTime(a.at) }))));
}

async function save(ev) {
  ev.preventDefault();
  const error = byId('settings-error');
  error.hidden = true;
  const number = (id) => Number(byId(id).value);
  try {
    await request('PUT', '/settings', {
      versions: { keep: number('set-keep'), maxAgeDays: number('set-age') },
      trashDays: number('set-trash'),
      publicUrl: byId('set-url').value.trim() || null,
    });
    toast('Settings saved.');
    await Promise.all([loadSettings(), loadActivity()]);
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  }
}

byId('settings-form').addEventListener('submit', (ev) => save(ev).catch(report));

export const settingsTab = {
  async show() {
    const results = await Promise.allSettled([loadSettings(), loadCertificate(), loadStorage(), loadActivity()]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  },
};
