import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * The relay's logger: pino JSON to stdout. Tokens and message bodies are never logged; the
 * redaction list is a second line of defence for fields that might carry them by mistake.
 */
export function createLogger(level: string, base: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { service: 'inbox-relay', ...base },
    redact: {
      paths: ['token', '*.token', 'authorization', '*.authorization', 'headers.authorization', 'data', '*.data', 'body'],
      censor: '[redacted]',
    },
  });
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
