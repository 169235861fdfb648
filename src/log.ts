import { createRequire } from 'node:module';
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** The development dependency that formats logs for humans; absent from a production install. */
const PRETTY_TRANSPORT = 'pino-pretty';

export interface LoggerFormat {
  /** Format for humans with pino-pretty when it is installed; JSON (with one warning) when not. */
  readonly pretty?: boolean;
}

/** Whether to print logs for humans: LOG_PRETTY when set, else when stdout is a terminal. */
export function wantsPrettyLogs(logPretty: boolean | undefined, stdoutIsTty: boolean): boolean {
  return logPretty ?? stdoutIsTty;
}

/** Whether pino-pretty can be loaded from here (it is a devDependency: `npm ci --omit=dev` leaves it out). */
function prettyAvailable(): boolean {
  try {
    createRequire(import.meta.url).resolve(PRETTY_TRANSPORT);
    return true;
  } catch {
    return false;
  }
}

/**
 * The relay's logger: pino JSON to stdout, or pino-pretty's lines when `format.pretty` (a
 * development aid: a worker thread formats them). Tokens and message bodies are never logged;
 * the redaction list is a second line of defence for fields that might carry them by mistake.
 */
export function createLogger(level: string, base: Record<string, unknown> = {}, format: LoggerFormat = {}): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: 'inbox-relay', ...base },
    redact: {
      paths: ['token', '*.token', 'authorization', '*.authorization', 'headers.authorization', 'data', '*.data', 'body'],
      censor: '[redacted]',
    },
  };
  if (!format.pretty) return pino(options);
  if (!prettyAvailable()) {
    const logger = pino(options);
    logger.warn(`pretty logs asked for, but ${PRETTY_TRANSPORT} is not installed (a production install): logging JSON`);
    return logger;
  }
  return pino({
    ...options,
    transport: { target: PRETTY_TRANSPORT, options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' } },
  });
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
