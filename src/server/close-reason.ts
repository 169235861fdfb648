/**
 * WebSocket close reasons are limited to 123 bytes of UTF-8 (RFC 6455, section 5.5: a control
 * frame carries at most 125 bytes, two of them the code), and `ws` throws a RangeError on a longer
 * one. A reason cut by UTF-16 length (`slice(0, 123)`) can still be up to 369 bytes, so every close
 * the relay sends with a reason goes through `closeReason`.
 */

/** The largest close reason, in UTF-8 bytes, a WebSocket close frame can carry. */
export const MAX_CLOSE_REASON_BYTES = 123;

/**
 * `reason` cut to at most `maxBytes` UTF-8 bytes, ending on a whole character (never half of a
 * multi-byte character or of a surrogate pair). A reason that fits is returned unchanged.
 */
export function closeReason(reason: string, maxBytes = MAX_CLOSE_REASON_BYTES): string {
  if (Buffer.byteLength(reason, 'utf8') <= maxBytes) return reason;
  let bytes = 0;
  let end = 0;
  // for..of walks code points, so a surrogate pair is kept or dropped whole; a lone surrogate
  // counts as the 3 bytes of the U+FFFD it is encoded as.
  for (const char of reason) {
    const size = Buffer.byteLength(char, 'utf8');
    if (bytes + size > maxBytes) break;
    bytes += size;
    end += char.length;
  }
  return reason.slice(0, end);
}
