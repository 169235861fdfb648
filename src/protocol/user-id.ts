/** A user id: 1-128 characters of `[A-Za-z0-9._:@-]`, not a reserved name. Anything else is never used in a name. */
export const USER_ID_PATTERN = /^[A-Za-z0-9._:@-]{1,128}$/;

/**
 * Ids whose inbox name would be one of the relay's shared queues (`inbox.dead`, `inbox.unrouted`)
 * or exchanges (`inbox.dlx`): refused like any other invalid id.
 */
export const RESERVED_USER_IDS: ReadonlySet<string> = new Set(['dead', 'unrouted', 'dlx']);

export function isValidUserId(value: unknown): value is string {
  return typeof value === 'string' && USER_ID_PATTERN.test(value) && !RESERVED_USER_IDS.has(value);
}
