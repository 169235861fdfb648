/** A node bus's connection state and its listeners; a listener that throws does not stop the others. */
import type { BusState } from './node-bus.js';

export class BusStateWatch {
  private current: BusState;
  private readonly listeners = new Set<(state: BusState) => void>();

  constructor(initial: BusState) {
    this.current = initial;
  }

  get state(): BusState {
    return this.current;
  }

  on(listener: (state: BusState) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Records `state` and tells the listeners, if it changed. */
  set(state: BusState, onListenerError: (error: unknown) => void): void {
    if (state === this.current) return;
    this.current = state;
    for (const listener of [...this.listeners]) {
      try {
        listener(state);
      } catch (error) {
        onListenerError(error);
      }
    }
  }
}
