/** A user id: 1-128 characters of `[A-Za-z0-9._:@-]`, not a reserved name. Anything else is never used in a name. */
export const USER_ID_PATTERN = /^[A-Za-z0-9._:@-]{1,128}$/;

/**
 * Ids refused like any other invalid id:
 * - those whose inbox name would be one of the relay's shared queues (`inbox.dead`,
 *   `inbox.unrouted`) or exchanges (`inbox.dlx`);
 * - the JavaScript keys that mean something else on a plain object (`__proto__` sets its
 *   prototype, `constructor` and `prototype` are found on objects that never stored them), so
 *   that no consumer of user ids, here or in a producer's or client's code, can be tricked by a
 *   user id used as an object key.
 */
export const RESERVED_USER_IDS: ReadonlySet<string> = new Set(['dead', 'unrouted', 'dlx', '__proto__', 'constructor', 'prototype']);

export function isValidUserId(value: unknown): value is string {
  return typeof value === 'string' && USER_ID_PATTERN.test(value) && !RESERVED_USER_IDS.has(value);
}
