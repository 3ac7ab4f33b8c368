/**
 * `npm run relay -- [flags]`: starts a Conclave relay. Prints one line per listen address,
 * `listening <multiaddr with /p2p/<peer id>>`, then `ready`; logs go to stderr as JSON (pino)
 * and never contain payloads. SIGTERM or SIGINT stops it cleanly (exit 0); a bad flag exits 1.
 */
import process from 'node:process';
import { pino } from 'pino';
import { ConfigError, parseConfig, usage } from './config.js';
import { startRelay } from './relay.js';

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  let config;
  try {
    config = parseConfig(argv, process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`conclave relay: ${e.message}\n\n${usage()}\n`);
      return 1;
    }
    throw e;
  }
  const log = pino({ level: config.logLevel, base: { service: 'conclave-relay' } }, pino.destination(2));
  const relay = await startRelay(config, log);
  for (const addr of relay.multiaddrs) process.stdout.write(`listening ${addr}\n`);
  if (relay.httpUrl !== undefined) process.stdout.write(`http ${relay.httpUrl}\n`);
  process.stdout.write('ready\n');
  log.info({ peerId: relay.peerId, addrs: relay.multiaddrs, http: relay.httpUrl }, 'relay started');

  return new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'stopping');
      relay.stop().then(
        () => {
          log.info('stopped');
          resolve(0);
        },
        (e: unknown) => {
          log.error({ err: e instanceof Error ? e.message : String(e) }, 'stop failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

main().then(
  (code) => {
    process.exitCode = code;
    // libp2p may leave timers behind after stop; the process is done.
    setTimeout(() => process.exit(code), 200).unref();
  },
  (e: unknown) => {
    process.stderr.write(`conclave relay: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
