/**
 * libp2p's logger for the relay. libp2p builds a logger for each component of each connection
 * and stream (`debug` instances for the messages and errors, closures for trace and scopes):
 * measured in a heap snapshot, about 7 `debug` instances and 10 more logger closures per idle
 * client connection, each with its own property store, all silent unless `DEBUG` is set. So
 * without `DEBUG` every component gets one shared logger that drops everything; with `DEBUG`
 * set, libp2p's own `debug` loggers run as usual (`DEBUG=libp2p:* npm run relay`).
 */
import type { ComponentLogger, Logger } from '@libp2p/interface';

const drop = (): void => undefined;

const silent: Logger = Object.assign((): void => undefined, {
  enabled: false,
  error: drop,
  trace: drop,
  newScope: (): Logger => silent,
});

const silentComponents: ComponentLogger = { forComponent: () => silent };

/** The `logger` option for `createLibp2p`: none (libp2p's `debug` loggers) when `DEBUG` is set. */
export function libp2pLogger(env: NodeJS.ProcessEnv): { logger?: ComponentLogger } {
  return env.DEBUG === undefined || env.DEBUG === '' ? { logger: silentComponents } : {};
}
