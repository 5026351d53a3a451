import { runSync } from '@keepsync/client';
import { parse } from '../args.js';
import { homeFrom } from './home.js';

/** `keepsync sync [--once]`: syncs until stopped, or until both sides agree. */
export default async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, { home: { type: 'string' }, once: { type: 'boolean' }, quiet: { type: 'boolean' } });
  const home = homeFrom(values.home);
  const pairing = home.requirePairing();
  const controller = new AbortController();
  const stop = () => {
    controller.abort();
    // Work in flight gets a moment to finish cleanly; after that, leave (everything is resumable).
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (!values.quiet) process.stderr.write(`syncing ${pairing.dir} with folder ${pairing.folder} on ${pairing.server}\n`);
  await runSync(home, { once: values.once, signal: controller.signal, progress: !values.quiet });
  if (values.once && !values.quiet) process.stderr.write('in sync\n');
  return 0;
}
