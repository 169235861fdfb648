/**
 * What `POST /v1/publish` answers for what happened to its messages: the status, the `error` word
 * of the body and the `Retry-After` of each failure the producer library reports (producer.ts),
 * and of a batch as a whole. No I/O; docs/publish-api.openapi.yaml documents the same words.
 */
import { ErrorCode, isRelayError } from '../errors.js';

/** Why a message was not accepted (the `error` / `status` words of the answer). */
export const PUBLISH_FAILURES = ['inbox-full', 'broker-blocked', 'timeout', 'unavailable'] as const;
export type PublishFailure = (typeof PUBLISH_FAILURES)[number];

/** Every `error` word of an answer that is not 202: a refused request, or the failure of its messages. */
export const REQUEST_REFUSALS = [
  'invalid-request',
  'unauthorized',
  'not-found',
  'method-not-allowed',
  'unsupported-media-type',
  'too-large',
  'overloaded',
  'draining',
  ...PUBLISH_FAILURES,
] as const;
export type RequestRefusal = (typeof REQUEST_REFUSALS)[number];

interface FailureAnswer {
  status: 429 | 503;
  /** Seconds, for the Retry-After header. */
  retryAfterS: number;
  message: string;
}

/** Seconds to wait before retrying, per failure: a full inbox drains as its client reads it, an alarm takes longer to clear. */
export const RETRY_AFTER_S: Readonly<Record<PublishFailure | 'overloaded' | 'draining', number>> = {
  'inbox-full': 5,
  'broker-blocked': 10,
  timeout: 2,
  unavailable: 5,
  overloaded: 1,
  draining: 1,
};

const ANSWERS: Readonly<Record<PublishFailure, FailureAnswer>> = {
  'inbox-full': {
    status: 429,
    retryAfterS: RETRY_AFTER_S['inbox-full'],
    message:
      "RabbitMQ refused the message: the user's inbox is full (QUEUE_MAX_LENGTH) or unavailable; retry later with the same messageId",
  },
  'broker-blocked': {
    status: 503,
    retryAfterS: RETRY_AFTER_S['broker-blocked'],
    message: 'RabbitMQ is blocking publishers (a memory or disk alarm); retry later',
  },
  timeout: {
    status: 503,
    retryAfterS: RETRY_AFTER_S.timeout,
    message:
      'RabbitMQ did not confirm the message in time (PUBLISH_TIMEOUT_MS): it may or may not be stored; retry with the same messageId',
  },
  unavailable: {
    status: 503,
    retryAfterS: RETRY_AFTER_S.unavailable,
    message: 'RabbitMQ is unavailable (no connection, or the broker breaker is open); retry later with the same messageId',
  },
};

/** The failure word of a publish error from the producer library (or the broker breaker). */
export function failureOf(error: unknown): PublishFailure {
  if (isRelayError(error, ErrorCode.publishNacked)) return 'inbox-full';
  if (isRelayError(error, ErrorCode.brokerBlocked)) return 'broker-blocked';
  if (isRelayError(error, ErrorCode.publishTimeout)) return 'timeout';
  return 'unavailable';
}

export function answerFor(failure: PublishFailure): FailureAnswer {
  return ANSWERS[failure];
}

/**
 * The answer for a request whose messages failed in these ways (at least one): 503 if any failure
 * is the broker's (it concerns every user), else 429 (full inboxes); the longest Retry-After; the
 * message of the first failure of the answer's status.
 */
export function answerForAll(failures: readonly PublishFailure[]): FailureAnswer & { error: PublishFailure } {
  const answers = failures.map((failure) => ({ error: failure, ...ANSWERS[failure] }));
  const status = answers.some((answer) => answer.status === 503) ? 503 : 429;
  const first = answers.find((answer) => answer.status === status) ?? answers[0]!;
  return { ...first, retryAfterS: Math.max(...answers.map((answer) => answer.retryAfterS)) };
}
