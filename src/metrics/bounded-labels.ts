import { CloseCode } from '../protocol/close-codes.js';

/**
 * Keeps a label's cardinality bounded: the first `max` distinct values are kept as they are
 * (cut to `maxLength` characters), every later one becomes `other`. Reasons and names come
 * from code and clients; a bug or a hostile client must not be able to grow the registry.
 */
export class BoundedLabel {
  private readonly seen = new Set<string>();

  constructor(
    private readonly max = 32,
    private readonly maxLength = 64,
  ) {}

  value(raw: unknown): string {
    const text = String(raw).slice(0, this.maxLength) || 'unknown';
    if (this.seen.has(text)) return text;
    if (this.seen.size >= this.max) return 'other';
    this.seen.add(text);
    return text;
  }
}

/**
 * Close codes the `code` label shows as numbers: those the relay sends (src/protocol/close-codes.ts),
 * those the WebSocket library sends or reports itself (1002 protocol error, 1005 no code, 1006 no
 * close frame, 1007 invalid UTF-8).
 */
export const LABELLED_CLOSE_CODES: ReadonlySet<number> = new Set([...Object.values(CloseCode), 1002, 1005, 1006, 1007]);

/** The label of every other close code: a client may close with any 1000-1014 or 3000-4999 value. */
export const CLIENT_OTHER_CLOSE_CODE = 'client-other';

/**
 * The `code` label of a closed connection. Guarantees a fixed set of values whatever clients
 * send: a code in LABELLED_CLOSE_CODES as its number, anything else `client-other`. Unlike
 * BoundedLabel, which value a code gets does not depend on which codes came first.
 */
export function closeCodeLabel(code: number): string {
  return LABELLED_CLOSE_CODES.has(code) ? String(code) : CLIENT_OTHER_CLOSE_CODE;
}
