import { startServer } from '@keepsync/server';
import { intFlag, parse } from '../args.js';
import { UsageError } from '../output.js';
import { capYoungGeneration } from '../youngGeneration.js';

/** `keepsync server`: runs the NAS server until SIGINT/SIGTERM. */
export default async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    data: { type: 'string' },
    certs: { type: 'string' },
    host: { type: 'string' },
    port: { type: 'string' },
    'database-url': { type: 'string' },
    'public-url': { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    'insecure-http': { type: 'boolean' },
  });
  if ((values.cert === undefined) !== (values.key === undefined)) throw new UsageError('--cert and --key go together');
  const port = intFlag('port', values.port ?? process.env.KEEPSYNC_PORT, 0, 65535);
  capYoungGeneration(8 * 1024 * 1024);
  const server = await startServer({
    dataDir: values.data,
    certsDir: values.certs,
    host: values.host,
    port,
    databaseUrl: values['database-url'],
    publicUrl: values['public-url'],
    certFile: values.cert,
    keyFile: values.key,
    insecureHttp: values['insecure-http'],
  });
  const lines = [`keepsync server listening on ${server.url}`, `admin page: ${server.url}/admin`];
  if (server.fingerprint) lines.push(`certificate fingerprint: sha256/${server.fingerprint}`);
  else lines.push('plain HTTP: TLS is expected to be terminated by a reverse proxy in front of this server');
  if (server.adminPassword) lines.push(`admin password: ${server.adminPassword}`);
  // One write: whoever reads the output to learn the address (a script, a
  // test) finds the password with it, not in a later piece of the pipe.
  process.stdout.write(lines.map((l) => `${l}\n`).join(''));
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  process.stderr.write('keepsync server shutting down\n');
  await server.close();
  return 0;
}
