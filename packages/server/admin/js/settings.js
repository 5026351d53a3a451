// Settings tab: retention, mass-delete holding and public URL, certificate, storage, activity.

import { request } from './api.js';
import { byId, el, fill, formatBytes, formatTime, report, toast } from './dom.js';

function fact(term, ...value) {
  return [el('dt', { text: term }), el('dd', {}, ...value)];
}

/** The form stays disabled while its values load, so nothing typed meanwhile is overwritten. */
async function loadSettings() {
  const fields = byId('settings-fields');
  fields.disabled = true;
  const s = await request('GET', '/settings');
  byId('set-keep').value = String(s.versions.keep);
  byId('set-age').value = String(s.versions.maxAgeDays);
  byId('set-trash').value = String(s.trashDays);
  byId('set-url').value = s.publicUrl ?? '';
  byId('set-hold-files').value = String(s.deleteHold.files);
  byId('set-hold-percent').value = String(s.deleteHold.percent);
  byId('set-hold-min').value = String(s.deleteHold.minFolderFiles);
  fields.disabled = false;
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

/** "3 files" / "1 file". */
function count(n, one, many) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

async function loadStorage() {
  const [status, folders] = await Promise.all([request('GET', '/status'), request('GET', '/folders')]);
  const st = status.storage && typeof status.storage === 'object' ? status.storage : {};
  const has = (key) => typeof st[key] === 'number';
  const files = folders.reduce((n, f) => n + f.files, 0);
  const facts = [fact('Current files', `${formatBytes(st.currentBytes ?? folders.reduce((n, f) => n + f.bytes, 0))} in ${count(files, 'file', 'files')}`)];
  if (has('versionBytes')) facts.push(fact('Earlier versions', `${formatBytes(st.versionBytes)}${has('versions') ? ` in ${count(st.versions, 'version', 'versions')}` : ''}`));
  if (has('trashBytes')) facts.push(fact('Trash', `${formatBytes(st.trashBytes)}${has('trashItems') ? ` in ${count(st.trashItems, 'item', 'items')}` : ''}`));
  if (has('diskBytes')) facts.push(fact('Used on disk', `${formatBytes(st.diskBytes)}${has('chunks') ? ` in ${count(st.chunks, 'chunk', 'chunks')}` : ''}`, el('div', { class: 'muted small', text: 'Content shared by files, versions and trash is stored once.' })));
  if (folders.length > 1) {
    for (const f of folders) facts.push(fact(`Folder ${f.name}`, `${count(f.files, 'file', 'files')}, ${formatBytes(f.bytes)}`));
  }
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
      deleteHold: { files: number('set-hold-files'), percent: number('set-hold-percent'), minFolderFiles: number('set-hold-min') },
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
