// Devices tab: the table (refreshed every few seconds, so online state and
// newly paired devices show up without reloading), add, rename, remove.

import { request, seg } from './api.js';
import { askText, button, byId, cell, confirmAction, el, fill, formatAgo, formatDate, modal, report, toast } from './dom.js';

const REFRESH_MS = 2000;
let timer;
let lastJson = '';
/** While the pairing dialog is open: the devices that existed before it. */
let pairingSince;

async function refresh(background = false) {
  const devices = await request('GET', '/devices', undefined, { background });
  const json = JSON.stringify(devices);
  if (json === lastJson) return;
  lastJson = json;
  render(devices);
  // The header's device count follows the table.
  document.dispatchEvent(new Event('devices-changed'));
}

function render(devices) {
  announcePaired(devices);
  const box = byId('devices-list');
  if (devices.length === 0) {
    fill(box, el('div', { class: 'empty' },
      el('p', { class: 'empty-title', text: 'No devices yet' }),
      el('p', { class: 'muted', text: 'Click “Add device” to get a pairing link for your first computer.' })));
    return;
  }
  const rows = devices.map((d) => el('tr', { dataset: { deviceId: String(d.id) } },
    cell('Name', el('span', { class: 'name', text: d.name })),
    cell('Platform', d.platform || '—'),
    cell('Status', el('span', { class: d.online ? 'status online' : 'status offline', text: d.online ? 'Online' : 'Offline' })),
    cell('Last seen', el('span', { class: 'nowrap', text: d.online ? 'now' : formatAgo(d.lastSeenAt) })),
    cell('Address', el('span', { class: 'mono', text: d.address ?? '—' })),
    cell('Paired', el('span', { class: 'nowrap', text: formatDate(d.pairedAt) })),
    el('td', { class: 'actions' },
      button('Rename', () => rename(d).catch(report), '', { 'aria-label': `Rename ${d.name}` }),
      button('Remove', () => remove(d).catch(report), 'danger-outline', { 'aria-label': `Remove ${d.name}` })),
  ));
  fill(box, el('table', { class: 'table', id: 'devices-table' },
    el('thead', {}, el('tr', {}, ...['Name', 'Platform', 'Status', 'Last seen', 'Address', 'Paired'].map((h) => el('th', { text: h })), el('th', { class: 'actions' }, el('span', { class: 'sr-only', text: 'Actions' })))),
    el('tbody', {}, rows)));
}

/** Tells the open pairing dialog when a new device has paired. */
function announcePaired(devices) {
  const status = document.getElementById('pairing-status');
  if (!status || !pairingSince) return;
  const fresh = devices.filter((d) => !pairingSince.has(d.id));
  if (fresh.length === 0) return;
  status.textContent = `${fresh.map((d) => d.name).join(', ')} has paired. You can close this window.`;
  status.className = 'pairing-status done';
}

async function rename(device) {
  const name = await askText(`Rename ${device.name}`, 'New name', device.name, 'Rename');
  if (name === undefined || name === device.name) return;
  await request('PATCH', `/devices/${seg(device.id)}`, { name });
  toast(`Renamed to ${name}.`);
  await refresh();
}

async function remove(device) {
  const ok = await confirmAction(
    `Remove ${device.name}?`,
    `${device.name} is disconnected at once and can no longer sync. The files on it stay where they are; to sync it again, pair it anew.`,
    'Remove device',
  );
  if (!ok) return;
  await request('DELETE', `/devices/${seg(device.id)}`);
  toast(`${device.name} was removed.`);
  await refresh();
}

async function addDevice() {
  const name = await askText('Add a device', 'Device name (optional)', '', 'Create pairing link', {
    optional: true,
    hint: 'A pairing link works once, within 15 minutes. The device uses it to find this NAS and to check its certificate.',
  });
  if (name === undefined) return;
  pairingSince = new Set((await request('GET', '/devices')).map((d) => d.id));
  const pairing = await request('POST', '/pairings', name.trim() ? { name: name.trim() } : {});
  const command = `keepsync pair '${pairing.link}' --dir ~/Keepsync`;
  const linkInput = el('input', { type: 'text', readonly: true, value: pairing.link, id: 'pairing-link', class: 'mono', 'aria-label': 'Pairing link' });
  const copy = button('Copy', async () => {
    try {
      await navigator.clipboard.writeText(pairing.link);
      toast('Link copied.');
    } catch {
      linkInput.select();
      toast('Select the link and copy it with Ctrl+C or ⌘C.');
    }
  });
  await modal({
    title: 'Pair a device',
    body: [
      el('div', { class: 'pairing' },
        el('img', { class: 'qr', id: 'pairing-qr', alt: 'QR code of the pairing link', src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(pairing.qr ?? '')}` }),
        el('div', { class: 'pairing-text' },
          el('p', { text: 'On the computer to pair, install Keepsync and run:' }),
          el('pre', { class: 'command', id: 'pairing-command', text: command }),
          el('label', { class: 'field', for: 'pairing-link' }, el('span', { text: 'Pairing link' }), el('div', { class: 'copy-row' }, linkInput, copy)),
          el('dl', { class: 'facts' },
            el('dt', { text: 'Certificate fingerprint' }), el('dd', { class: 'mono fingerprint', id: 'pairing-fingerprint', text: `sha256/${pairing.fingerprint}` }),
            el('dt', { text: 'Valid until' }), el('dd', { text: new Date(pairing.expiresAt).toLocaleTimeString() })),
          el('p', { class: 'pairing-status', id: 'pairing-status', role: 'status', text: 'Waiting for the device to pair…' }))),
    ],
    buttons: [{ label: 'Done', value: true, kind: 'primary' }],
  });
  pairingSince = undefined;
  await refresh();
}

byId('add-device').addEventListener('click', () => addDevice().catch(report));

export const devicesTab = {
  async show() {
    lastJson = '';
    clearInterval(timer);
    timer = setInterval(() => {
      if (!document.hidden) refresh(true).catch(() => {});
    }, REFRESH_MS);
    await refresh();
  },
  hide() {
    clearInterval(timer);
  },
};
