import { parse } from '../args.js';
import { printJson } from '../output.js';
import { homeFrom } from './home.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** `keepsync status [--json]`: paired server, folder, connection, pending counts, last sync. */
export default async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, { home: { type: 'string' }, json: { type: 'boolean' } });
  const home = homeFrom(values.home);
  const p = home.requirePairing();
  const s = home.readState();
  const running = s !== undefined && alive(s.pid);
  const status = {
    server: p.server,
    fingerprint: p.fingerprint,
    device: p.deviceName,
    folder: p.folder,
    dir: p.dir,
    running,
    connected: running && s!.connected,
    pendingUp: running ? s!.pendingUp : 0,
    pendingDown: running ? s!.pendingDown : 0,
    lastSyncAt: s?.lastSyncAt ?? null,
    lastError: s?.lastError ?? null,
  };
  if (values.json) {
    printJson(status);
    return 0;
  }
  const lines = [
    `server:    ${status.server} (sha256/${status.fingerprint})`,
    `device:    ${status.device}`,
    `folder:    ${status.folder} <-> ${status.dir}`,
    `sync:      ${!running ? 'not running (start it with "keepsync sync")' : status.connected ? 'connected' : 'running, not connected'}`,
    `pending:   ${status.pendingUp} up, ${status.pendingDown} down`,
    `last sync: ${status.lastSyncAt ?? 'never'}`,
  ];
  if (status.lastError) lines.push(`last error: ${status.lastError}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
