/**
 * The configuration of operator commands: the relay's own (same variables, same validation, see
 * src/config.ts) minus the JWT settings, which only `serve` and `token` need, plus the
 * RabbitMQ management API, which only `inspect` uses.
 */
import { loadConfig, type Env, type RelayConfig } from '../config.js';
import { errorMessage } from '../errors.js';
import { vhostOf } from '../amqp/management-request.js';
import { usageError } from './cli-error.js';

export { vhostOf };

export type OperatorConfig = Omit<RelayConfig, 'jwt'> & {
  /** RABBITMQ_MANAGEMENT_URL; undefined when set to the empty string (unacked counts are then unknown). */
  managementUrl: string | undefined;
  /** The AMQP virtual host of RABBITMQ_URL ('/' by default). */
  vhost: string;
};

const JWT_VARIABLES = [
  'JWT_SECRET',
  'JWT_PUBLIC_KEY_FILE',
  'JWT_KEYS_FILE',
  'JWT_JWKS_URL',
  'JWT_ALGORITHMS',
  'JWT_ISSUER',
  'JWT_AUDIENCE',
  'JWT_MAX_AGE',
  'JWT_CLOCK_TOLERANCE_S',
];
/** Stands in for the JWT key while validating the rest; never used or shown. */
const NO_KEY = 'operator-commands-do-not-verify-tokens!';

/**
 * The management API URL when RABBITMQ_MANAGEMENT_URL is unset: the broker host of RABBITMQ_URL
 * with its credentials, on port 15672 (15671 over TLS). For the default RABBITMQ_URL that is
 * http://guest:guest@127.0.0.1:15672.
 */
export function defaultManagementUrl(rabbitmqUrl: string): string {
  const amqp = new URL(rabbitmqUrl);
  const tls = amqp.protocol === 'amqps:';
  const http = new URL(
    `${tls ? 'https' : 'http'}://${amqp.hostname.includes(':') ? `[${amqp.hostname}]` : amqp.hostname}:${tls ? 15671 : 15672}`,
  );
  http.username = amqp.username || 'guest';
  http.password = amqp.password || 'guest';
  return http.toString().replace(/\/$/, '');
}

/** Loads and validates everything but the JWT settings; throws a usage error (exit 2) naming the variable. */
export function loadOperatorConfig(env: Env): OperatorConfig {
  const withoutJwt: Record<string, string | undefined> = { ...env };
  for (const variable of JWT_VARIABLES) delete withoutJwt[variable];
  withoutJwt.JWT_SECRET = NO_KEY;
  let relay: RelayConfig;
  try {
    relay = loadConfig(withoutJwt);
  } catch (error) {
    throw usageError(`configuration error: ${errorMessage(error)}`);
  }
  const { jwt: _unused, ...rest } = relay;
  const raw = env.RABBITMQ_MANAGEMENT_URL;
  let managementUrl: string | undefined;
  if (raw === undefined) {
    managementUrl = defaultManagementUrl(rest.rabbitmqUrl);
  } else if (raw.trim() !== '') {
    try {
      const parsed = new URL(raw.trim());
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error('not http');
    } catch {
      throw usageError(
        'configuration error: RABBITMQ_MANAGEMENT_URL: must be a URL starting with http:// or https:// (or empty to disable)',
      );
    }
    managementUrl = raw.trim().replace(/\/$/, '');
  }
  return { ...rest, managementUrl, vhost: vhostOf(rest.rabbitmqUrl) };
}

/** The full relay configuration, JWT included (`token`). */
export function loadFullConfig(env: Env): RelayConfig {
  try {
    return loadConfig(env);
  } catch (error) {
    throw usageError(`configuration error: ${errorMessage(error)}`);
  }
}
