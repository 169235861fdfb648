/**
 * Keeps a label's cardinality bounded: the first `max` distinct values are kept as they are
 * (cut to `maxLength` characters), every later one becomes `other`. Reasons and close codes come
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
