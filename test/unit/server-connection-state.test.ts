import { describe, expect, it } from 'vitest';
import { IllegalTransitionError, canTransition, nextState, type ConnectionState } from '../../src/server/connection-state.js';

const STATES: ConnectionState[] = ['awaiting-hello', 'authenticating', 'attaching', 'open', 'closed'];

describe('connection state table', () => {
  it('allows exactly the transitions of the handshake and the close', () => {
    const allowed = STATES.flatMap((from) => STATES.filter((to) => canTransition(from, to)).map((to) => `${from}->${to}`));
    expect(allowed).toEqual([
      'awaiting-hello->authenticating',
      'awaiting-hello->closed',
      'authenticating->attaching',
      'authenticating->closed',
      'attaching->open',
      'attaching->closed',
      'open->closed',
    ]);
  });

  it('lets every state but closed move to closed, and nothing leave closed', () => {
    expect(STATES.filter((from) => canTransition(from, 'closed'))).toEqual(['awaiting-hello', 'authenticating', 'attaching', 'open']);
    expect(STATES.filter((to) => canTransition('closed', to))).toEqual([]);
  });

  it('rejects a skipped or backward step with IllegalTransitionError', () => {
    expect(nextState('attaching', 'open')).toBe('open');
    expect(() => nextState('awaiting-hello', 'open')).toThrow(IllegalTransitionError);
    expect(() => nextState('awaiting-hello', 'attaching')).toThrow(IllegalTransitionError);
    expect(() => nextState('open', 'attaching')).toThrow('illegal transition open -> attaching');
    expect(() => nextState('closed', 'closed')).toThrow(IllegalTransitionError);
  });
});
