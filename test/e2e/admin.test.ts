import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { startServer, type RunningServer } from '@keepsync/server';
import { TestDevice, forEachDatabase, scenario, tempDir, type Scenario } from '../helpers/cluster.js';
import type { TestDatabase } from '../helpers/databases.js';
import { AdminClient } from '../helpers/rawDevice.js';
import { waitFor } from '../helpers/wait.js';

/*
 * The admin page (SPEC §6, issue 4) in a real headless Chromium against a
 * real server process and a real `keepsync sync` device: log in, pair the
 * device with the link the page shows, watch it come online, restore a
 * deleted folder from the trash and an old version from the files, remove
 * the device and see it stop. HTML in file and device names stays text.
 * Screenshots of every tab, desktop and phone, go to test-artifacts/admin/.
 */

const CHROMIUM = process.env.KEEPSYNC_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test-artifacts/admin');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const HOSTILE = '<img src=x onerror=alert(1)>';
const HOSTILE_DEVICE = '<b>Anna</b> <img src=x onerror=alert(2)>';

/** Skips the suite, saying why, when Chromium is not installed (CI installs it). */
function needChromium(this: Mocha.Context): void {
  if (!fs.existsSync(CHROMIUM)) {
    console.log(`    (skipped: no Chromium at ${CHROMIUM}; install Debian's "chromium" package or set KEEPSYNC_CHROMIUM)`);
    this.skip();
  }
  fs.mkdirSync(ARTIFACTS, { recursive: true });
}

async function screenshot(page: Page, name: string): Promise<Buffer> {
  // A passing toast would cover part of the page in a full-page shot.
  await page.evaluate(() => document.getElementById('toast')?.setAttribute('hidden', ''));
  return page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

function launch(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
}

describe('Admin page', function () {
  this.timeout(120_000);
  before(needChromium);

  forEachDatabase((kind) => {
    let s: Scenario;
    let browser: Browser;
    let context: BrowserContext;
    let page: Page;
    let laptop: TestDevice;
    /** alert() calls and script errors seen in the page: both must stay empty. */
    const alerts: string[] = [];
    const pageErrors: string[] = [];

    const shot = (name: string) => screenshot(page, `${kind.name}-${name}`);
    const tab = async (name: string) => {
      await page.click(`.tabs a[data-tab="${name}"]`);
      await page.locator(`#tab-${name}`).waitFor({ state: 'visible' });
    };
    const row = (table: string, text: string): Locator => page.locator(`#${table} tbody tr`).filter({ hasText: text });
    /** The Files tab's row for a path, by its exact data-path. */
    const fileRow = (p: string): Locator => page.locator('#files-table tbody tr').and(page.locator(`[data-path="${p.replace(/"/g, '\\"')}"]`));
    /** Reopens a tab until `ready` shows (tabs other than Devices load on opening). */
    const reopenUntil = async (name: string, ready: Locator[], what: string) => {
      await waitFor(what, async () => {
        await tab(name);
        for (const r of ready) if (!(await r.isVisible())) return false;
        return true;
      }, 20_000, 300);
    };

    before(async () => {
      s = await scenario(kind);
      browser = await launch();
      context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: DESKTOP });
      page = await context.newPage();
      page.on('dialog', (d) => {
        alerts.push(d.message());
        void d.dismiss();
      });
      page.on('pageerror', (err) => pageErrors.push(err.message));
      page.on('console', (m) => {
        if (/Content Security Policy/i.test(m.text())) pageErrors.push(m.text());
      });
    });

    after(async () => {
      await browser?.close();
      await s?.cleanup();
    });

    it('refuses a wrong password and logs in with the right one', async () => {
      const res = await page.goto(`${s.server.url}/admin`);
      assert.equal(res?.status(), 200);
      const csp = res!.headers()['content-security-policy'] ?? '';
      assert.match(csp, /script-src 'self'/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      assert.equal(res!.headers()['x-frame-options'], 'DENY');

      await page.fill('#login-password', 'not the password');
      await page.click('#login-submit');
      await page.locator('#login-error').filter({ hasText: 'wrong password' }).waitFor();

      await page.fill('#login-password', s.server.adminPassword);
      await page.click('#login-submit');
      await page.locator('#tab-devices').waitFor({ state: 'visible' });
      await page.getByText('No devices yet').waitFor();
      const cookies = await context.cookies();
      const session = cookies.find((c) => c.name === 'keepsync_session');
      assert.ok(session?.httpOnly && session.secure && session.sameSite === 'Strict', 'session cookie is HttpOnly, Secure, SameSite=Strict');
    });

    it('adds a device: the page shows a pairing link, its QR code and the fingerprint; the device appears online once paired', async () => {
      await page.click('#add-device');
      await page.fill('#ask-input', 'laptop');
      await page.getByRole('button', { name: 'Create pairing link' }).click();
      const link = await page.locator('#pairing-link').inputValue();
      assert.match(link, /^https:\/\/127\.0\.0\.1:\d+\/pair\?code=[A-Za-z0-9_-]+&fp=[0-9a-f]{64}$/);
      assert.equal(await page.locator('#pairing-fingerprint').textContent(), `sha256/${s.server.fingerprint}`);
      assert.ok(link.endsWith(`fp=${s.server.fingerprint}`));
      const qrWidth = await page.locator('#pairing-qr').evaluate((img: HTMLImageElement) => img.decode().then(() => img.naturalWidth));
      assert.ok(qrWidth > 0, 'the QR code renders');
      await shot('desktop-add-device');

      laptop = new TestDevice('laptop');
      s.devices.push(laptop);
      const paired = await laptop.pair(link);
      assert.equal(paired.code, 0, paired.stderr);
      await page.locator('#pairing-status').filter({ hasText: 'laptop has paired' }).waitFor({ timeout: 10_000 });
      await shot('desktop-paired');
      await page.getByRole('button', { name: 'Done' }).click();
      await laptop.start();
      // No reload: the table refreshes itself.
      await row('devices-table', 'laptop').locator('.status.online').waitFor({ timeout: 15_000 });
      assert.match((await row('devices-table', 'laptop').textContent()) ?? '', /127\.0\.0\.1/);
    });

    it('renames a device; a name with HTML in it is shown as text', async () => {
      await row('devices-table', 'laptop').getByRole('button', { name: /^Rename/ }).click();
      await page.fill('#ask-input', HOSTILE_DEVICE);
      await page.getByRole('button', { name: 'Rename', exact: true }).click();
      await page.locator('#devices-table .name').filter({ hasText: HOSTILE_DEVICE }).waitFor();
      assert.equal(await page.locator('#devices-table b, #devices-table img').count(), 0);
    });

    it('browses files, lists a file\'s versions and restores an old one on the device', async () => {
      laptop.write('notes.txt', 'first draft');
      laptop.write(HOSTILE, 'harmless');
      laptop.write('Photos/2024/beach.jpg', 'sand and sea');
      laptop.write('Photos/cat.jpg', 'meow');
      laptop.write('old.txt', 'not needed');
      await reopenUntil('files', ['notes.txt', HOSTILE, 'Photos', 'old.txt'].map(fileRow), 'the new files in the Files tab');
      laptop.write('notes.txt', 'second draft');

      // The hostile name is one row of plain text; no element came from it.
      await fileRow(HOSTILE).waitFor();
      assert.equal(await fileRow(HOSTILE).locator('.name').textContent(), HOSTILE);
      assert.equal(await page.locator('img[src="x"]').count(), 0);

      await fileRow('Photos').locator('button').click();
      await fileRow('Photos/2024').waitFor();
      await fileRow('Photos/cat.jpg').waitFor();
      await page.locator('#files-crumbs button', { hasText: 'Sync' }).click();

      await waitFor('two versions of notes.txt', async () => {
        await fileRow('notes.txt').locator('button').click();
        return (await page.locator('#files-versions .version').count()) === 2;
      }, 20_000, 300);
      const versions = page.locator('#files-versions .version');
      assert.equal(await versions.nth(0).locator('.badge').textContent(), 'Current');
      assert.match((await versions.nth(1).textContent()) ?? '', /by .*Anna/);
      await shot('desktop-files');

      // Download the old version through the page's own link and session.
      const href = await versions.nth(1).getByRole('link', { name: 'Download' }).getAttribute('href');
      const download = await page.request.get(`${s.server.url}${href}`);
      assert.equal(download.status(), 200);
      assert.equal(await download.text(), 'first draft');

      await versions.nth(1).getByRole('button', { name: /^Restore/ }).click();
      await page.getByRole('button', { name: 'Restore version' }).click();
      await waitFor('the device to get the restored version', () => laptop.read('notes.txt') === 'first draft');
      // The restored content is current; the one it replaced is still a version.
      await fileRow('notes.txt').locator('button').click();
      await page.locator('#files-versions .version.current').filter({ hasText: '11 bytes' }).waitFor();
      await page.locator('#files-versions .version:not(.current)').filter({ hasText: '12 bytes' }).first().waitFor();
    });

    it('restores a deleted folder from the trash, whole, on the device; purges an item', async () => {
      fs.rmSync(laptop.p('Photos'), { recursive: true });
      fs.rmSync(laptop.p(HOSTILE));
      fs.rmSync(laptop.p('old.txt'));
      await reopenUntil('trash', ['Photos', HOSTILE, 'old.txt'].map((p) => row('trash-table', p)), 'the deleted items in the trash');
      assert.equal(await page.locator('img[src="x"]').count(), 0);
      assert.match((await row('trash-table', 'Photos').textContent()) ?? '', /Anna/);
      await shot('desktop-trash');

      await row('trash-table', 'Photos').getByRole('button', { name: /^Restore/ }).click();
      await waitFor('Photos back on the device', () => laptop.read('Photos/2024/beach.jpg') === 'sand and sea' && laptop.read('Photos/cat.jpg') === 'meow');
      await row('trash-table', 'Photos').waitFor({ state: 'detached' });

      await row('trash-table', HOSTILE).getByRole('button', { name: /^Delete .* forever/ }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Delete forever' }).click();
      await row('trash-table', HOSTILE).waitFor({ state: 'detached' });
      await row('trash-table', 'old.txt').waitFor();

      await page.click('#empty-trash');
      await page.getByRole('dialog').getByRole('button', { name: 'Empty trash' }).click();
      await page.locator('#trash-list .empty-title').filter({ hasText: 'The trash is empty' }).waitFor();
      assert.equal(laptop.exists('old.txt'), false);
    });

    it('restores the folder being browsed to a time before its files changed, on the device', async () => {
      // A whole second after everything so far (the field takes seconds), once the clock passed it.
      const at = new Date(Math.floor(Date.now() / 1000) * 1000 + 1000);
      await waitFor('the clock to pass the chosen moment', () => Date.now() > at.getTime() + 5, 5_000, 20);
      laptop.write('Photos/cat.jpg', 'woof');
      laptop.write('Photos/dog.jpg', 'new since');
      await waitFor('the changes on the server', async () => {
        const files = await page.evaluate(() => fetch('/api/v1/folders/Sync/files?path=Photos').then((r) => r.json()));
        return files.some((e: any) => e.path === 'Photos/dog.jpg') && files.find((e: any) => e.path === 'Photos/cat.jpg')?.size === 4;
      });
      await tab('files');
      await fileRow('Photos').locator('button').click();
      await fileRow('Photos/dog.jpg').waitFor();
      await page.click('#files-rewind');
      const two = (n: number) => String(n).padStart(2, '0');
      await page.fill('#ask-input', `${at.getFullYear()}-${two(at.getMonth() + 1)}-${two(at.getDate())}T${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}`);
      await shot('desktop-files-rewind');
      await page.getByRole('dialog').getByRole('button', { name: 'Restore', exact: true }).click();
      await page.getByText('Photos: 1 file brought back, 1 moved to the trash.').waitFor();
      await waitFor('the device back to then', () => laptop.read('Photos/cat.jpg') === 'meow' && !laptop.exists('Photos/dog.jpg'));
      await fileRow('Photos/dog.jpg').waitFor({ state: 'detached' });
      await fileRow('Photos/cat.jpg').waitFor();
    });

    it('shows deletes held on the server in the Trash tab: Undo gives the files back, Apply deletes them into the trash', async () => {
      const api = await AdminClient.login(s.server);
      const second = ['c1.txt', 'c2.txt', 'c3.txt'];
      for (const p of second) laptop.write(p, `second burst ${p}`);
      await waitFor('the files of the second burst on the server', async () => {
        const top = await api.request('GET', '/folders/Sync/files');
        return second.every((p) => top.body.some((e: any) => e.path === p));
      });
      // A burst here is 3 files (the default is 100).
      assert.equal((await api.request('PUT', '/settings', { deleteHold: { files: 3, percent: 0 } })).status, 200);
      const burst = ['notes.txt', 'Photos/cat.jpg', 'Photos/2024/beach.jpg'];
      const before = burst.map((p) => laptop.read(p));
      for (const p of burst) fs.rmSync(laptop.p(p));
      const held = page.locator('#held-deletes .held');
      await reopenUntil('trash', [held], 'the held deletes in the Trash tab');
      assert.match((await held.textContent()) ?? '', /deleted 3 files in Sync at once/);
      assert.ok(((await held.textContent()) ?? '').includes(HOSTILE_DEVICE), 'the device name shows as text');
      assert.equal(await page.locator('#held-deletes b, #held-deletes img').count(), 0);
      await shot('desktop-held-deletes');
      await held.getByRole('button', { name: /^Undo/ }).click();
      await held.waitFor({ state: 'detached' });
      await waitFor('the files back on the device', () => burst.every((p, i) => laptop.read(p) === before[i]));

      // Files the device had long before, not ones it is still taking back.
      for (const p of second) fs.rmSync(laptop.p(p));
      await reopenUntil('trash', [held], 'the second burst held');
      assert.match((await held.textContent()) ?? '', /deleted 3 files in Sync at once/);
      await held.getByRole('button', { name: /^Apply/ }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Apply deletes' }).click();
      await held.waitFor({ state: 'detached' });
      for (const p of second) await row('trash-table', p).waitFor();
      assert.ok(second.every((p) => !laptop.exists(p)));
      assert.ok(burst.every((p, i) => laptop.read(p) === before[i]));
      assert.equal((await api.request('PUT', '/settings', { deleteHold: { files: 100, percent: 25 } })).status, 200);
    });

    it('shows settings: retention, certificate, storage and recent activity; saves a change', async () => {
      await tab('settings');
      await page.locator('#cert-fingerprint').filter({ hasText: s.server.fingerprint }).waitFor();
      // The settings arrive by their own request, beside the certificate's.
      await waitFor('the kept versions filled in', async () => (await page.locator('#set-keep').inputValue()) !== '');
      assert.equal(await page.locator('#set-keep').inputValue(), '32');
      await page.locator('#activity li').filter({ hasText: 'paired' }).first().waitFor();
      await page.locator('#storage dt').filter({ hasText: 'Used on disk' }).waitFor();
      assert.match((await page.locator('#storage').textContent()) ?? '', /Current files.*in \d+ files?.*Earlier versions.*Used on disk/);
      await page.fill('#set-url', 'https://mynas.example.org:8443');
      await page.click('#settings-save');
      await page.getByText('Settings saved.').waitFor();
      await shot('desktop-settings');
      await page.fill('#set-url', 'not a url');
      await page.click('#settings-save');
      const saved = await page.evaluate(() => fetch('/api/v1/settings').then((r) => r.json()));
      assert.equal(saved.publicUrl, 'https://mynas.example.org:8443', 'a bad URL changes nothing');
    });

    it('fits a phone-sized screen', async () => {
      await page.setViewportSize(PHONE);
      for (const name of ['devices', 'files', 'trash', 'settings']) {
        await tab(name);
        await page.waitForLoadState('networkidle');
        await shot(`phone-${name}`);
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `${name} tab is ${overflow}px wider than the phone screen`);
      }
      await tab('devices');
      await page.click('#add-device');
      await page.getByRole('button', { name: 'Create pairing link' }).click();
      await page.locator('#pairing-qr').waitFor();
      await shot('phone-add-device');
      await page.getByRole('button', { name: 'Done' }).click();
      await page.setViewportSize(DESKTOP);
      await shot('desktop-devices');
    });

    it('removes a device after a confirmation: it is disconnected at once and stops syncing', async () => {
      await row('devices-table', 'Anna').getByRole('button', { name: /^Remove/ }).click();
      const dialog = page.getByRole('dialog');
      assert.match((await dialog.textContent()) ?? '', /<b>Anna<\/b>/);
      await dialog.getByRole('button', { name: 'Remove device' }).click();
      await page.getByText('No devices yet').waitFor();
      const code = await Promise.race([laptop.live!.exited, new Promise((r) => setTimeout(() => r('still running'), 5000))]);
      assert.equal(code, 1, 'the removed device stops');
      assert.match(laptop.live!.stderr, /removed/);
    });

    it('needs the CSRF token for changes, logs out, and rate-limits wrong passwords', async () => {
      const forged = await page.request.put(`${s.server.url}/api/v1/settings`, { data: { trashDays: 1 } });
      assert.equal(forged.status(), 403);

      await page.click('#logout');
      await page.locator('#login').waitFor({ state: 'visible' });
      const traversal = await page.request.get(`${s.server.url}/admin/%2e%2e/package.json`);
      assert.equal(traversal.status(), 404, 'nothing outside the page\'s own files is served');
      for (const api of ['/devices', '/activity', '/certificate', '/folders/Sync/trash']) {
        assert.equal((await page.request.get(`${s.server.url}/api/v1${api}`)).status(), 401, `GET ${api} needs a session`);
      }

      let limited = false;
      for (let i = 0; i < 8 && !limited; i++) {
        await page.fill('#login-password', `wrong ${i}`);
        await page.click('#login-submit');
        await page.locator('#login-error').filter({ hasText: /wrong|too many/i }).waitFor();
        limited = /too many/i.test((await page.locator('#login-error').textContent()) ?? '');
        await page.locator('#login-submit:not([disabled])').waitFor();
      }
      assert.ok(limited, 'repeated wrong passwords are rate-limited');
      await shot('desktop-login');
      assert.deepEqual(alerts, []);
      assert.deepEqual(pageErrors, []);
    });
  });
});

describe('Admin page sessions', function () {
  this.timeout(60_000);
  before(needChromium);

  forEachDatabase((kind) => {
    const password = 'correct horse battery staple';
    let db: TestDatabase;
    let root: string;
    let server: RunningServer;
    let browser: Browser;
    let page: Page;
    /** The server's clock runs this far ahead of the real one. */
    let skew = 0;

    before(async () => {
      db = await kind.create();
      root = tempDir('admin-sessions');
      server = await startServer({
        dataDir: path.join(root, 'data'), certsDir: path.join(root, 'certs'), host: '127.0.0.1', port: 0,
        databaseUrl: db.url, adminPassword: password, clock: () => Date.now() + skew, log: () => {},
      });
      browser = await launch();
      page = await (await browser.newContext({ ignoreHTTPSErrors: true, viewport: DESKTOP })).newPage();
      await page.goto(`${server.url}/admin`);
      await page.fill('#login-password', password);
      await page.click('#login-submit');
      await page.locator('#tab-devices').waitFor({ state: 'visible' });
    });

    after(async () => {
      await browser?.close();
      await server?.close();
      await db?.drop();
      if (root) fs.rmSync(root, { recursive: true, force: true });
    });

    it('asks for the password again before creating a pairing link 15 minutes after login', async () => {
      skew = 16 * 60_000;
      await page.click('#add-device');
      await page.getByRole('button', { name: 'Create pairing link' }).click();
      const confirm = page.getByRole('dialog', { name: 'Confirm your password' });
      await confirm.waitFor();
      await page.fill('#reauth-password', 'wrong');
      await confirm.getByRole('button', { name: 'Confirm' }).click();
      await page.getByRole('dialog', { name: 'Confirm your password' }).getByRole('alert').filter({ hasText: 'wrong password' }).waitFor();
      await page.fill('#reauth-password', password);
      await page.getByRole('dialog', { name: 'Confirm your password' }).getByRole('button', { name: 'Confirm' }).click();
      assert.match(await page.locator('#pairing-link').inputValue(), /\/pair\?code=/);
      await page.getByRole('button', { name: 'Done' }).click();
    });

    it('asks for the password again before lowering retention or holding fewer mass deletes, not before raising them', async () => {
      await page.click('.tabs a[data-tab="settings"]');
      skew += 16 * 60_000;
      await page.fill('#set-trash', '60');
      await page.click('#settings-save');
      await page.getByText('Settings saved.').waitFor();
      await page.fill('#set-trash', '7');
      await page.click('#settings-save');
      await page.getByRole('dialog', { name: 'Confirm your password' }).getByRole('button', { name: 'Cancel' }).click();
      await page.locator('#settings-error').filter({ hasText: 'password is needed' }).waitFor();
      const settings = await page.evaluate(() => fetch('/api/v1/settings').then((r) => r.json()));
      assert.equal(settings.trashDays, 60, 'cancelled: retention unchanged');

      await page.fill('#set-trash', '60');
      await page.fill('#set-hold-files', '0');
      await page.click('#settings-save');
      await page.getByRole('dialog', { name: 'Confirm your password' }).getByRole('button', { name: 'Cancel' }).click();
      const held = await page.evaluate(() => fetch('/api/v1/settings').then((r) => r.json()));
      assert.equal(held.deleteHold.files, 100, 'cancelled: holding unchanged');
      await page.fill('#set-hold-files', '50');
      await page.click('#settings-save');
      await waitFor('the tighter rule saved without a password', async () => {
        const now = await page.evaluate(() => fetch('/api/v1/settings').then((r) => r.json()));
        return now.deleteHold.files === 50;
      });
      assert.equal(await page.getByRole('dialog', { name: 'Confirm your password' }).count(), 0);
    });

    it('ends a session left unattended: the page\'s own refreshes do not keep it alive', async () => {
      await page.click('.tabs a[data-tab="devices"]');
      await page.locator('#tab-devices').waitFor({ state: 'visible' });
      // A minute short of 12 idle hours, the page keeps refreshing itself.
      skew += 12 * 60 * 60_000 - 60_000;
      const poll = await page.waitForResponse((r) => r.url().endsWith('/api/v1/devices') && r.request().headers()['x-keepsync-background'] === '1');
      assert.equal(poll.status(), 200);
      skew += 2 * 60_000;
      // The page refreshes every 5 s; a loaded machine may take longer to run it.
      await page.locator('#login').waitFor({ state: 'visible', timeout: 20_000 });
      await page.locator('#login-error').filter({ hasText: 'log in again' }).waitFor();
      await screenshot(page, `${kind.name}-desktop-expired`);
    });
  });
});
