// Trash tab: deleted files and folders; restore, purge, empty. Above them,
// bursts of deletes held on the server, to apply or undo.

import { request, seg } from './api.js';
import { button, byId, cell, confirmAction, el, fill, formatBytes, formatTime, report, toast } from './dom.js';
import { loadFolders } from './folders.js';

const select = byId('trash-folder');
let items = [];

/** Held bursts of deletes (every folder): what, by which device, Apply / Undo. */
async function refreshHolds() {
  const holds = await request('GET', '/holds');
  fill(byId('held-deletes'), holds.map((h) => {
    const more = h.files > h.paths.length ? ', …' : '';
    return el('section', { class: 'held', dataset: { holdId: String(h.id) }, 'aria-label': `Deletes held from ${h.device}` },
      el('div', {},
        el('p', { class: 'held-title' }, el('strong', { text: `${h.device} deleted ${h.files} ${h.files === 1 ? 'file' : 'files'} in ${h.folder} at once.` })),
        el('p', { class: 'muted small', text: `Held ${formatTime(h.heldAt)}: the other devices keep them until you decide.` }),
        el('p', { class: 'muted small held-paths', text: `${h.paths.join(', ')}${more}` })),
      el('div', { class: 'held-actions' },
        button('Undo', () => decide(h, 'undo').catch(report), 'primary', { 'aria-label': `Undo the deletes of ${h.device}` }),
        button('Apply', () => decide(h, 'apply').catch(report), 'danger-outline', { 'aria-label': `Apply the deletes of ${h.device}` })));
  }));
}

async function decide(hold, action) {
  if (action === 'apply') {
    const ok = await confirmAction(
      `Apply ${hold.files} deletes?`,
      `The files ${hold.device} deleted are deleted on every device. They stay in the trash, where you can still restore them.`,
      'Apply deletes');
    if (!ok) return;
  }
  await request('POST', `/holds/${seg(hold.id)}/${action}`);
  toast(action === 'apply' ? `The deletes of ${hold.device} were applied; the files are in the trash.` : `The deletes were undone; ${hold.device} gets the files back.`);
  await refresh();
}

async function refresh() {
  await refreshHolds();
  const box = byId('trash-list');
  if (!select.value) {
    fill(box, el('div', { class: 'empty' }, el('p', { class: 'empty-title', text: 'No folders on this server' })));
    return;
  }
  items = await request('GET', `/folders/${seg(select.value)}/trash`);
  byId('empty-trash').disabled = items.length === 0;
  if (items.length === 0) {
    fill(box, el('div', { class: 'empty' },
      el('p', { class: 'empty-title', text: 'The trash is empty' }),
      el('p', { class: 'muted', text: 'Deleted files and folders are kept here for the days set in Settings.' })));
    return;
  }
  const rows = items.map((t) => el('tr', { dataset: { trashId: String(t.id), path: t.path } },
    cell('Path', el('span', { class: `entry ${t.kind === 'dir' ? 'dir' : 'file'}` }, el('span', { class: 'icon', 'aria-hidden': 'true' }), el('span', { class: 'name', text: t.path }))),
    cell('Size', el('span', { class: 'nowrap', text: formatBytes(Number(t.size)) })),
    cell('Deleted', el('span', { class: 'nowrap', text: formatTime(t.deletedAt) })),
    cell('By', t.deletedBy ?? '—'),
    el('td', { class: 'actions' },
      button('Restore', () => restore(t).catch(report), 'primary', { 'aria-label': `Restore ${t.path}` }),
      button('Delete forever', () => purge(t).catch(report), 'danger-outline', { 'aria-label': `Delete ${t.path} forever` }))));
  fill(box, el('table', { class: 'table', id: 'trash-table' },
    el('thead', {}, el('tr', {}, ...['Path', 'Size', 'Deleted', 'By'].map((h) => el('th', { text: h })), el('th', { class: 'actions' }, el('span', { class: 'sr-only', text: 'Actions' })))),
    el('tbody', {}, rows)));
}

async function restore(item) {
  await request('POST', `/folders/${seg(select.value)}/trash/${seg(item.id)}/restore`);
  toast(`${item.path} was restored${item.kind === 'dir' ? ' with everything in it' : ''}.`);
  await refresh();
}

async function purge(item) {
  const ok = await confirmAction(
    `Delete ${item.path} forever?`,
    `${item.path}${item.kind === 'dir' ? ' and everything in it' : ''} will be gone for good. This cannot be undone.`,
    'Delete forever');
  if (!ok) return;
  await request('DELETE', `/folders/${seg(select.value)}/trash/${seg(item.id)}`);
  toast(`${item.path} was deleted for good.`);
  await refresh();
}

async function emptyTrash() {
  const folder = select.value;
  const all = items.slice();
  if (all.length === 0) return;
  const ok = await confirmAction(
    'Empty the trash?',
    `${all.length === 1 ? 'The one item' : `All ${all.length} items`} in the trash will be gone for good. This cannot be undone.`,
    'Empty trash');
  if (!ok) return;
  let done = 0;
  try {
    for (const item of all) {
      await request('DELETE', `/folders/${seg(folder)}/trash/${seg(item.id)}`);
      done++;
    }
    toast('The trash is empty.');
  } finally {
    if (done < all.length) toast(`Emptied ${done} of ${all.length} items.`, true);
    await refresh();
  }
}

select.addEventListener('change', () => refresh().catch(report));
byId('empty-trash').addEventListener('click', () => emptyTrash().catch(report));

export const trashTab = {
  async show() {
    await loadFolders(select);
    await refresh();
  },
};
