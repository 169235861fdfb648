/** A token bucket: `ratePerSec` tokens a second, holding at most `burst`. Pure; the clock is passed in. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes one token if there is one. */
  take(now: number): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Milliseconds until the next token. */
  msUntilToken(): number {
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.ratePerSec) * 1000);
  }

  /** Milliseconds from `now` until the next token (0: there is one); takes nothing. */
  msUntilTokenAt(now: number): number {
    this.refill(now);
    return this.msUntilToken();
  }

  /** Whether every token is back at `now`: the bucket then holds nothing of its past takes. */
  isFull(now: number): boolean {
    this.refill(now);
    // Refills add up fractions of a token: allow for their rounding.
    return this.tokens >= this.burst - 1e-9;
  }

  private refill(now: number): void {
    const elapsed = Math.max(0, now - this.last) / 1000;
    this.tokens = Math.min(this.burst, this.tokens + elapsed * this.ratePerSec);
    this.last = now;
  }
}
