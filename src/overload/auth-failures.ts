/**
 * Failed authentications per source address (AUTH_FAILURE_RATE_PER_ADDRESS, per minute): an
 * address may fail that many times at once, and then once more each 60/rate seconds (a token
 * bucket). While it has no failure left, its attempts are refused before any token is verified,
 * so guessing tokens or sending garbage costs the node one lookup per attempt, not a signature
 * check. Authentications that succeed are not counted and do not refill the bucket.
 *
 * An address is the socket's peer: the relay trusts no forwarding header. Behind a proxy or load
 * balancer every client has the proxy's address, so the limit would lock every client out after
 * one client's failures: set 0 (off) there. IPv6 addresses count per /64 (one subscriber's
 * network), IPv4-mapped IPv6 addresses as IPv4.
 *
 * Memory is bounded: only addresses with failures are kept, at most `maxAddresses`, the one that
 * failed longest ago forgotten first, and an address whose bucket has refilled is forgotten.
 * Pure: the clock is passed in.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { TokenBucket } from './token-bucket.js';

/** The `refused` reason (admission refusals metric) of an attempt refused for its address's failures; fixed. */
export const AUTH_FAILURES_REFUSAL = 'auth-failures';

/** Addresses remembered at most (about 100 bytes each). */
export const MAX_TRACKED_ADDRESSES = 10_000;

/** One connection's view of the limit, bound to its address. */
export interface AuthGate {
  /** Milliseconds until this address may authenticate again; 0: it may now. */
  retryAfterMs(): number;
  /** An authentication from this address failed. */
  failed(): void;
}

/** The gate of a relay without the limit (AUTH_FAILURE_RATE_PER_ADDRESS=0). */
export const OPEN_AUTH_GATE: AuthGate = { retryAfterMs: () => 0, failed: () => undefined };

const IPV4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/** The eight 16-bit groups of a valid IPv6 address, as numbers. */
function ipv6Groups(address: string): number[] {
  let text = address;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((group) => parseInt(group, 16)));
  if (tail === undefined) return parse(head);
  const [before, after] = [parse(head), parse(tail)];
  return [...before, ...Array<number>(8 - before.length - after.length).fill(0), ...after];
}

/** The key an address counts under: IPv4 as is, IPv6 by its /64 (`2001:db8:0:1::/64`). */
export function addressKey(address: string | undefined): string {
  if (address === undefined) return 'unknown';
  const bare = address.split('%')[0] ?? address;
  const mapped = IPV4_MAPPED.exec(bare)?.[1];
  if (mapped !== undefined && isIPv4(mapped)) return mapped;
  if (!isIPv6(bare)) return bare;
  return `${ipv6Groups(bare)
    .slice(0, 4)
    .map((group) => group.toString(16))
    .join(':')}::/64`;
}

export class AuthFailureLimiter {
  /** Buckets by address key, the least recently failed first (Map order). */
  private readonly buckets = new Map<string, TokenBucket>();

  /** `perMinute` 0: no limit. */
  constructor(
    private readonly perMinute: number,
    private readonly maxAddresses = MAX_TRACKED_ADDRESSES,
  ) {}

  /** Milliseconds until `address` may authenticate again; 0: it may now. */
  retryAfterMs(address: string | undefined, now: number): number {
    const key = addressKey(address);
    const bucket = this.buckets.get(key);
    if (bucket === undefined) return 0;
    if (bucket.isFull(now)) {
      this.buckets.delete(key);
      return 0;
    }
    return bucket.msUntilTokenAt(now);
  }

  /** An authentication from `address` failed. */
  failed(address: string | undefined, now: number): void {
    if (this.perMinute === 0) return;
    const key = addressKey(address);
    const bucket = this.buckets.get(key) ?? new TokenBucket(this.perMinute / 60, this.perMinute, now);
    bucket.take(now);
    // Moved to the end: the map's first entry is always the address that failed longest ago.
    this.buckets.delete(key);
    this.buckets.set(key, bucket);
    if (this.buckets.size > this.maxAddresses) {
      const oldest = this.buckets.keys().next();
      if (oldest.done !== true) this.buckets.delete(oldest.value);
    }
  }

  /** The gate of one connection from `address`. */
  gate(address: string | undefined, now: () => number): AuthGate {
    if (this.perMinute === 0) return OPEN_AUTH_GATE;
    return { retryAfterMs: () => this.retryAfterMs(address, now()), failed: () => this.failed(address, now()) };
  }

  /** Addresses remembered now. */
  get size(): number {
    return this.buckets.size;
  }
}
