import { describe, expect, it } from 'vitest';
import { ResourceStack } from '../../src/server/resource-stack.js';

function recorder(): { closed: string[]; errors: string[]; stack: ResourceStack; record: (value: string) => void } {
  const closed: string[] = [];
  const errors: string[] = [];
  const stack = new ResourceStack((name, error) => errors.push(`${name}: ${(error as Error).message}`));
  return { closed, errors, stack, record: (value) => closed.push(value) };
}

describe('ResourceStack', () => {
  it('closes what was started in reverse order', async () => {
    const { closed, stack, record } = recorder();
    for (const name of ['a', 'b', 'c']) await stack.start(name, () => name, record);
    expect(stack.names).toEqual(['a', 'b', 'c']);
    await stack.close();
    expect(closed).toEqual(['c', 'b', 'a']);
    expect(stack.names).toEqual([]);
  });

  it('closes the earlier steps, newest first, when a step fails, and rejects with that step error', async () => {
    const { closed, stack, record } = recorder();
    await stack.start('store', () => 'store', record);
    await stack.start('pool', async () => 'pool', record);
    const failure = new Error('topology clash');
    await expect(stack.start('topology', () => Promise.reject(failure))).rejects.toBe(failure);
    expect(closed).toEqual(['pool', 'store']);
  });

  it('closes each resource once, however often close() is called', async () => {
    const { closed, stack, record } = recorder();
    await stack.start('a', () => 'a', record);
    const first = stack.close();
    expect(stack.close()).toBe(first);
    await first;
    await stack.close();
    expect(closed).toEqual(['a']);
  });

  it('goes on closing the rest when one close fails, and reports the failure', async () => {
    const { closed, errors, stack, record } = recorder();
    await stack.start('a', () => 'a', record);
    await stack.start(
      'b',
      () => 'b',
      () => Promise.reject(new Error('broken')),
    );
    await stack.start('c', () => 'c', record);
    await stack.close();
    expect(closed).toEqual(['c', 'a']);
    expect(errors).toEqual(['b: broken']);
  });

  it('refuses to add to a closed stack', async () => {
    const { stack } = recorder();
    await stack.close();
    expect(() => stack.add('late', () => undefined)).toThrow('resource stack is closed');
  });
});
