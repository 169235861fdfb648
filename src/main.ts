/**
 * `npm start`: runs one relay node from the environment until SIGTERM or SIGINT, then drains.
 * SIGHUP rereads the JWT key set file (JWT_KEYS_FILE).
 */
import { background } from './background.js';
import { loadConfig } from './config.js';
import { errorMessage, isRelayError } from './errors.js';
import { createLogger, wantsPrettyLogs } from './log.js';
import { startRelay, type Relay } from './server/relay.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    process.stderr.write(`inbox-relay: configuration error: ${errorMessage(error)}\n`);
    process.exit(2);
  }
  const logger = createLogger(
    config.logLevel,
    { nodeId: config.nodeId },
    { pretty: wantsPrettyLogs(config.logPretty, process.stdout.isTTY === true) },
  );
  // A bug must not leave a half-working node: log it and exit; RabbitMQ keeps every unacked
  // message and clients resume on the restarted node.
  process.on('uncaughtException', (error) => {
    logger.fatal({ err: errorMessage(error), stack: error.stack }, 'uncaught exception; exiting');
    process.exit(70);
  });
  process.on('unhandledRejection', (reason) => {
    logger.fatal({ err: errorMessage(reason), stack: reason instanceof Error ? reason.stack : undefined }, 'unhandled rejection; exiting');
    process.exit(70);
  });
  let relay: Relay | undefined;
  // SIGHUP rereads JWT_KEYS_FILE. The handler goes in before the start, since SIGHUP's default
  // action ends the process; one that comes during the start is reported and ignored.
  process.on('SIGHUP', () => {
    if (relay) relay.reloadKeys();
    else logger.warn('SIGHUP while starting: ignored (JWT_KEYS_FILE was read at start)');
  });
  try {
    relay = await startRelay(config, { logger, onDrained: () => process.exit(0) });
  } catch (error) {
    logger.fatal({ err: errorMessage(error), code: isRelayError(error) ? error.code : undefined }, 'could not start');
    process.exit(1);
  }
  const stop = (signal: string): void => {
    logger.info({ signal, drainTimeoutMs: config.drainTimeoutMs }, 'shutting down');
    const force = setTimeout(() => {
      logger.error('drain timed out; exiting (unacked messages return to RabbitMQ when the connections close)');
      process.exit(1);
    }, config.drainTimeoutMs);
    force.unref();
    relay.drain().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: errorMessage(error) }, 'drain failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

background(main(), (error) => {
  process.stderr.write(`inbox-relay: ${errorMessage(error)}\n`);
  process.exit(1);
});
