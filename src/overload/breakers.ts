/**
 * Circuit breakers (opossum) around the relay's dependencies: one for the state store (Redis),
 * one for the broker (channel and consumer set-up, publishing from the relay). While one is open,
 * calls fail at once with a retryable RelayError, so no new consumer starts and new connections
 * are refused; the relay probes the dependency whenever the breaker half-opens, so it closes
 * again by itself once the dependency answers.
 */
import CircuitBreaker from 'opossum';
import { ErrorCode, RelayError, type ErrorCodeValue } from '../errors.js';
import type { BreakerState, RelayEvents } from '../events.js';
import type { Logger } from '../log.js';

export interface BreakerSettings {
  errorThresholdPercent: number;
  resetTimeoutMs: number;
  volumeThreshold: number;
  /** The rolling window the error percentage is computed over. */
  windowMs: number;
}

type Thunk = () => Promise<unknown>;

export interface GuardOptions {
  name: string;
  settings: BreakerSettings;
  /** A call slower than this counts as a failure (the call itself is not cancelled). */
  timeoutMs: number;
  /** The error a rejected call gets while the breaker is open. */
  code: ErrorCodeValue;
  /** A cheap call that succeeds when the dependency is healthy (run when half-open). */
  probe: () => Promise<unknown>;
  /** Errors that say nothing about the dependency's health (client mistakes) do not count. */
  ignore?: (error: unknown) => boolean;
  events: RelayEvents;
  logger: Logger;
}

export class Guard {
  readonly name: string;
  private readonly breaker: CircuitBreaker<[Thunk], unknown>;

  constructor(private readonly options: GuardOptions) {
    this.name = options.name;
    this.breaker = new CircuitBreaker<[Thunk], unknown>((thunk: Thunk) => thunk(), {
      name: options.name,
      timeout: options.timeoutMs,
      errorThresholdPercentage: options.settings.errorThresholdPercent,
      resetTimeout: options.settings.resetTimeoutMs,
      volumeThreshold: options.settings.volumeThreshold,
      rollingCountTimeout: options.settings.windowMs,
      errorFilter: (error: unknown) => options.ignore?.(error) ?? false,
    });
    // The last failure, so that the log says why a breaker opened (a timeout, a refused connection...).
    let lastFailure: string | undefined;
    this.breaker.on('failure', (error: unknown) => {
      lastFailure = error instanceof Error ? error.message : String(error);
    });
    const transition = (state: BreakerState): void => {
      options.events.emit('breaker', options.name, state);
      if (state === 'open') options.logger.warn({ breaker: options.name, state, lastFailure }, 'breaker transition');
      else options.logger.info({ breaker: options.name, state }, 'breaker transition');
    };
    this.breaker.on('open', () => transition('open'));
    this.breaker.on('close', () => transition('closed'));
    this.breaker.on('halfOpen', () => {
      transition('half-open');
      this.run(options.probe).catch(() => undefined);
    });
  }

  get opened(): boolean {
    return this.breaker.opened;
  }

  get state(): BreakerState {
    return this.breaker.opened ? 'open' : this.breaker.halfOpen ? 'half-open' : 'closed';
  }

  /** Runs `call` through the breaker. */
  async run<T>(call: () => Promise<T>): Promise<T> {
    try {
      return (await this.breaker.fire(call)) as T;
    } catch (error) {
      if (error instanceof Error && CircuitBreaker.isOurError(error)) {
        throw new RelayError(this.options.code, `${this.name} unavailable (breaker ${this.state}): ${error.message}`, {
          cause: error,
          retryable: true,
        });
      }
      throw error;
    }
  }

  shutdown(): void {
    this.breaker.shutdown();
  }
}

/** AMQP errors that are about the request, not the broker's health (404 no queue, 406 arguments, 403 access). */
export function isAmqpRequestError(error: unknown): boolean {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  if (error instanceof RelayError) return error.code === ErrorCode.invalidUserId || error.code === ErrorCode.invalidMessage;
  return code === 404 || code === 406;
}
