/** A user id: 1-128 characters of `[A-Za-z0-9._:@-]`. Anything else is never used in a name. */
export const USER_ID_PATTERN = /^[A-Za-z0-9._:@-]{1,128}$/;

export function isValidUserId(value: unknown): value is string {
  return typeof value === 'string' && USER_ID_PATTERN.test(value);
}
