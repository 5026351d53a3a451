import { parseRate, runSync } from '@keepsync/client';
import { parse } from '../args.js';
import { UsageError } from '../output.js';
import { capYoungGeneration } from '../youngGeneration.js';
import { homeFrom } from './home.js';

function rateFlag(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const rate = parseRate(value);
  if (rate === undefined) throw new UsageError(`--${name} must be bytes per second, at least 1K, such as 500K or 2M`);
  return rate;
}

/** `keepsync sync [--once] [--max-upload RATE] [--max-download RATE]`: syncs until stopped, or until both sides agree. */
export default async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    home: { type: 'string' }, once: { type: 'boolean' }, quiet: { type: 'boolean' },
    'max-upload': { type: 'string' }, 'max-download': { type: 'string' },
  });
  const maxUpload = rateFlag('max-upload', values['max-upload']);
  const maxDownload = rateFlag('max-download', values['max-download']);
  const home = homeFrom(values.home);
  const pairing = home.requirePairing();
  capYoungGeneration(8 * 1024 * 1024);
  const controller = new AbortController();
  const stop = () => {
    controller.abort();
    // Work in flight gets a moment to finish cleanly; after that, leave (everything is resumable).
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (!values.quiet) process.stderr.write(`syncing ${pairing.dir} with folder ${pairing.folder} on ${pairing.server}\n`);
  await runSync(home, { once: values.once, signal: controller.signal, progress: !values.quiet, maxUpload, maxDownload });
  if (values.once && !values.quiet) process.stderr.write('in sync\n');
  return 0;
}
