// The admin page: login, the four tabs, and the header's summary.

import { login, logout, request, resume, whenLoggedOut } from './api.js';
import { byId, report } from './dom.js';
import { devicesTab } from './devices.js';
import { filesTab } from './files.js';
import { settingsTab } from './settings.js';
import { trashTab } from './trash.js';

const tabs = { devices: devicesTab, files: filesTab, trash: trashTab, settings: settingsTab };
let current;
let summaryTimer;

function showLogin(message) {
  stopAll();
  byId('app').hidden = true;
  byId('loading').hidden = true;
  byId('login').hidden = false;
  byId('toast').hidden = true;
  const error = byId('login-error');
  error.textContent = message ?? '';
  error.className = 'form-note';
  error.hidden = !message;
  const input = byId('login-password');
  input.value = '';
  input.focus();
}

function showApp() {
  byId('login').hidden = true;
  byId('loading').hidden = true;
  byId('app').hidden = false;
  openTab(tabFromHash());
  refreshSummary();
  clearInterval(summaryTimer);
  summaryTimer = setInterval(refreshSummary, 5000);
}

function stopAll() {
  clearInterval(summaryTimer);
  current?.hide?.();
  current = undefined;
}

function tabFromHash() {
  const name = location.hash.replace(/^#/, '');
  return Object.hasOwn(tabs, name) ? name : 'devices';
}

function openTab(name) {
  const next = tabs[name];
  if (current && current !== next) current.hide?.();
  for (const link of document.querySelectorAll('.tabs a')) {
    const on = link.dataset.tab === name;
    link.classList.toggle('active', on);
    if (on) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  for (const key of Object.keys(tabs)) byId(`tab-${key}`).hidden = key !== name;
  current = next;
  next.show().catch(report);
}

async function refreshSummary() {
  try {
    const s = await request('GET', '/status', undefined, { background: true });
    const devices = s.devices === 1 ? '1 device' : `${s.devices} devices`;
    byId('summary').textContent = `${devices} · ${s.online} online`;
  } catch {
    // The header is a nicety; the tabs report errors themselves.
  }
}

whenLoggedOut(() => showLogin('Your session has ended. Please log in again.'));

byId('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const submit = byId('login-submit');
  submit.disabled = true;
  try {
    await login(byId('login-password').value);
    byId('login-password').value = '';
    showApp();
  } catch (err) {
    const error = byId('login-error');
    error.textContent = err.message;
    error.className = 'form-error';
    error.hidden = false;
  } finally {
    submit.disabled = false;
  }
});

byId('logout').addEventListener('click', async () => {
  try {
    await logout();
  } catch {
    // Logged out on the server already, or unreachable: the login screen either way.
  }
  showLogin('You have logged out.');
});

// Clicking the open tab again reloads it.
for (const link of document.querySelectorAll('.tabs a')) {
  link.addEventListener('click', () => {
    if (link.dataset.tab === tabFromHash()) openTab(link.dataset.tab);
  });
}

document.addEventListener('devices-changed', () => refreshSummary());

window.addEventListener('hashchange', () => {
  if (!byId('app').hidden) openTab(tabFromHash());
});
window.addEventListener('unhandledrejection', (ev) => report(ev.reason));

try {
  if (await resume()) showApp();
  else showLogin();
} catch (err) {
  showLogin(err.message);
}
