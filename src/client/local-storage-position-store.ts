/**
 * A position store for browsers, backed by `localStorage` (or any object with its API). The
 * position survives page reloads; use one key per user when several users share a browser.
 */
import { ClientErrorCode, InboxClientError } from './errors.js';
import { isPosition, type Position, type PositionStore } from './position-store.js';

export const DEFAULT_POSITION_KEY = 'inbox-relay:position';

/** The part of the Web Storage API the store uses. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/**
 * Stores the position as JSON under one key. A missing, unparsable or malformed entry loads as
 * no position (the client then starts without resuming); it never throws on load.
 */
export class LocalStoragePositionStore implements PositionStore {
  constructor(
    private readonly key: string = DEFAULT_POSITION_KEY,
    private readonly storage?: StorageLike,
  ) {}

  load(): Position | undefined {
    let raw: string | null;
    try {
      raw = this.#storage().getItem(this.key);
    } catch {
      return undefined;
    }
    if (raw === null) return undefined;
    try {
      const parsed: unknown = JSON.parse(raw);
      return isPosition(parsed) ? parsed : undefined;
    } catch {
      return undefined;
    }
  }

  save(position: Position): void {
    this.#storage().setItem(this.key, JSON.stringify(position));
  }

  #storage(): StorageLike {
    const storage = this.storage ?? (globalThis as { localStorage?: StorageLike }).localStorage;
    if (!storage) {
      throw new InboxClientError(ClientErrorCode.positionStore, 'localStorage is not available in this runtime');
    }
    return storage;
  }
}
