// Files tab: browse a folder's current tree, open a file's versions,
// download any version, make an earlier one current again, restore the
// folder being browsed to how it was at a point in time.

import { query, request, seg } from './api.js';
import { askText, baseName, button, byId, cell, confirmAction, el, fill, formatBytes, formatTime, report, toast } from './dom.js';
import { loadFolders } from './folders.js';

const select = byId('files-folder');
let dir = '';
let openFile;

/** The path relative to the folder, from an entry as the API gives it. */
function entryPath(e) {
  return String(e.path ?? e.name ?? '');
}

/**
 * The direct children of `dir` from the API's entries (which may list the
 * subtree): files as they are, deeper paths as their first folder.
 */
function children(entries, dirPath) {
  const prefix = dirPath ? `${dirPath}/` : '';
  const byName = new Map();
  for (const e of entries) {
    const p = entryPath(e);
    if (!p.startsWith(prefix) || p === dirPath) continue;
    const rest = p.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash >= 0) {
      const name = rest.slice(0, slash);
      if (!byName.has(name)) byName.set(name, { path: prefix + name, kind: 'dir' });
    } else {
      byName.set(rest, { ...e, path: p, kind: e.kind === 'dir' || e.kind === 'folder' ? 'dir' : 'file' });
    }
  }
  return [...byName.values()].sort((a, b) => (a.kind === b.kind ? baseName(a.path).localeCompare(baseName(b.path)) : a.kind === 'dir' ? -1 : 1));
}

async function refresh() {
  const list = byId('files-list');
  if (!select.value) {
    fill(list, el('div', { class: 'empty' }, el('p', { class: 'empty-title', text: 'No folders on this server' })));
    return;
  }
  const entries = await request('GET', `/folders/${seg(select.value)}/files${query({ path: dir || undefined })}`);
  renderCrumbs();
  const items = children(Array.isArray(entries) ? entries : entries.entries ?? [], dir);
  if (items.length === 0) {
    fill(list, el('div', { class: 'empty' },
      el('p', { class: 'empty-title', text: dir ? 'This folder is empty' : 'No files yet' }),
      el('p', { class: 'muted', text: 'Files appear here once a device has synced them.' })));
    return;
  }
  const rows = items.map((e) => {
    const name = baseName(e.path);
    const isDir = e.kind === 'dir';
    const open = isDir ? () => go(e.path) : () => showVersions(e.path).catch(report);
    return el('tr', { class: openFile === e.path ? 'selected' : undefined, dataset: { path: e.path } },
      cell('Name', el('button', { type: 'button', class: `link entry ${isDir ? 'dir' : 'file'}`, onclick: open }, el('span', { class: 'icon', 'aria-hidden': 'true' }), el('span', { class: 'name', text: name }))),
      cell('Size', el('span', { class: 'nowrap', text: isDir ? '—' : formatBytes(Number(e.size)) })),
      cell('Modified', el('span', { class: 'nowrap', text: isDir ? '—' : formatTime(e.modifiedAt ?? e.mtime) })));
  });
  fill(list, el('table', { class: 'table', id: 'files-table' },
    el('thead', {}, el('tr', {}, el('th', { text: 'Name' }), el('th', { text: 'Size' }), el('th', { text: 'Modified' }))),
    el('tbody', {}, rows)));
}

function renderCrumbs() {
  const parts = dir ? dir.split('/') : [];
  const folderName = select.selectedOptions[0]?.textContent ?? 'Folder';
  const crumbs = [el('button', { type: 'button', class: 'link', onclick: () => go('') }, folderName)];
  parts.forEach((part, i) => {
    const target = parts.slice(0, i + 1).join('/');
    crumbs.push(el('span', { class: 'sep', 'aria-hidden': 'true', text: '/' }));
    crumbs.push(i === parts.length - 1 ? el('span', { class: 'here', text: part }) : el('button', { type: 'button', class: 'link', onclick: () => go(target) }, part));
  });
  fill(byId('files-crumbs'), crumbs);
}

function go(target) {
  dir = target;
  closeVersions();
  refresh().catch(report);
}

function closeVersions() {
  openFile = undefined;
  byId('files-versions').hidden = true;
  for (const tr of document.querySelectorAll('#files-table tr.selected')) tr.classList.remove('selected');
}

async function showVersions(path) {
  openFile = path;
  for (const tr of document.querySelectorAll('#files-table tbody tr')) tr.classList.toggle('selected', tr.dataset.path === path);
  const folder = select.value;
  const versions = await request('GET', `/folders/${seg(folder)}/versions${query({ path })}`);
  const panel = byId('files-versions');
  const rows = versions.map((v, i) => {
    const href = `/api/v1/folders/${seg(folder)}/content${query({ path, version: v.id })}`;
    const isCurrent = v.current === true || (v.current === undefined && i === 0);
    return el('li', { class: isCurrent ? 'version current' : 'version', dataset: { versionId: String(v.id) } },
      el('div', { class: 'version-main' },
        el('span', { class: 'version-when', text: formatTime(v.createdAt ?? v.modifiedAt) }),
        isCurrent ? el('span', { class: 'badge', text: 'Current' }) : null),
      el('div', { class: 'muted small' }, `${formatBytes(Number(v.size))} · by ${v.device ?? 'unknown device'}`),
      el('div', { class: 'version-actions' },
        el('a', { class: 'btn', href, download: baseName(path) }, 'Download'),
        isCurrent ? null : button('Restore', () => restore(folder, path, v).catch(report), 'primary', { 'aria-label': `Restore the version of ${formatTime(v.createdAt)}` })));
  });
  fill(panel,
    el('div', { class: 'versions-head' },
      el('div', {}, el('h2', { text: baseName(path) }), el('p', { class: 'muted small path', text: path })),
      button('Close', closeVersions, 'ghost', { 'aria-label': 'Close versions' })),
    el('p', { class: 'muted small', text: versions.length === 1 ? 'One version.' : `${versions.length} versions, newest first.` }),
    el('ol', { class: 'version-list' }, rows));
  panel.hidden = false;
}

async function restore(folder, path, version) {
  const ok = await confirmAction(
    'Restore this version?',
    `${baseName(path)} becomes the version of ${formatTime(version.createdAt)} on every device. The current content is kept as a version, so nothing is lost.`,
    'Restore version', false);
  if (!ok) return;
  await request('POST', `/folders/${seg(folder)}/restore`, { path, version: version.id });
  toast(`${baseName(path)} was restored.`);
  await refresh();
  await showVersions(path);
}

/** `YYYY-MM-DDTHH:MM:SS` in the browser's time zone, as a datetime-local field takes it. */
function localInput(d) {
  const two = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

async function rewind() {
  const folder = select.value;
  if (!folder) return;
  const what = dir || select.selectedOptions[0]?.textContent || 'this folder';
  const earlier = new Date(Date.now() - 60 * 60 * 1000);
  earlier.setSeconds(0);
  const value = await askText(`Restore ${what} to a time`, 'Restore to (your local time)', localInput(earlier), 'Restore', {
    type: 'datetime-local', step: 1, max: localInput(new Date()),
    hint: `Every file that was in ${what} then comes back with its content of then, on every device. Files added since go to the trash, and what the files hold now is kept as versions, so nothing is lost.`,
  });
  if (value === undefined) return;
  const at = new Date(value);
  if (Number.isNaN(at.getTime())) throw new Error('Give a date and time to restore to.');
  const r = await request('POST', `/folders/${seg(folder)}/restore`, { path: dir || undefined, at: at.toISOString() });
  toast(`${what}: ${r.restored} ${r.restored === 1 ? 'file' : 'files'} brought back, ${r.trashed} moved to the trash.`);
  closeVersions();
  await refresh();
}

byId('files-rewind').addEventListener('click', () => rewind().catch(report));
select.addEventListener('change', () => go(''));

export const filesTab = {
  async show() {
    await loadFolders(select);
    await refresh();
    if (openFile) await showVersions(openFile);
  },
};
