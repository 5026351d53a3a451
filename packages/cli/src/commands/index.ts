/** A command: takes its own arguments, answers the exit code. */
export type Command = (argv: string[]) => Promise<number>;

const lazy = (load: () => Promise<{ default: Command }>): Command => async (argv) => (await load()).default(argv);

export const commands: Record<string, Command> = {
  server: lazy(() => import('./server.js')),
  'server pair': lazy(() => import('./serverPair.js')),
  'server reset-password': lazy(() => import('./serverResetPassword.js')),
  'server verify': lazy(() => import('./serverVerify.js')),
  pair: lazy(() => import('./pair.js')),
  sync: lazy(() => import('./sync.js')),
  status: lazy(() => import('./status.js')),
  unpair: lazy(() => import('./unpair.js')),
  versions: lazy(() => import('./versions.js')),
  restore: lazy(() => import('./restore.js')),
  trash: lazy(() => import('./trash.js')),
  'trash restore': lazy(() => import('./trashRestore.js')),
};

export const USAGE = `Usage: keepsync <command> [options]

NAS server
  server [--data DIR] [--certs DIR] [--host ADDR] [--port N] [--database-url URL]
         [--public-url URL] [--cert FILE --key FILE] [--insecure-http]
                                   run the server until SIGINT/SIGTERM
  server pair [--data DIR | --database-url URL] [--name NAME] [--folder NAME]
                                   print a single-use pairing link (15 minutes)
  server reset-password [--data DIR | --database-url URL]
                                   set and print a new admin password
  server verify [--data DIR | --database-url URL]
                                   check that every stored chunk the index needs is
                                   present and intact (exit 1 and a list if not)

Device
  pair LINK --dir DIR [--name NAME] [--folder NAME]
                                   pair this device and bind DIR to a server folder
  sync [--once] [--max-upload RATE] [--max-download RATE]
                                   sync continuously (or until both sides agree);
                                   RATE in bytes per second, such as 500K or 2M
  status [--json]                  server, folder, connection, pending counts
  versions PATH [--json]           the server's versions of a file, newest first, with ids
  restore PATH [--version ID]      make a version current again on every device
                                   (without --version: the one before the current)
  restore PATH --at TIME           bring a folder or file back to how it was at TIME
                                   ("2026-12-01 14:00", local time) on every device;
                                   newer files go to the trash (PATH may be the
                                   synced folder itself)
  trash [--json]                   deleted files and folders in the server's trash
  trash restore PATH               bring a deleted file or whole folder back everywhere
  unpair                           forget the pairing; local files stay

Every device command takes --home DIR (default: your config dir + /keepsync).
Add --debug to any command for stack traces.
`;
