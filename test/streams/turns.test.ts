import { describe, expect, it } from 'vitest';
import { TurnQueue } from '../../src/streams/turns.ts';

const nextTurns = (n: number) =>
  new Promise<void>((resolve) => {
    const step = (left: number) => (left === 0 ? resolve() : setImmediate(() => step(left - 1)));
    step(n);
  });

describe('TurnQueue', () => {
  it('runs tasks in order, one per event-loop turn: what else is due in a turn runs between two tasks', async () => {
    const queue = new TurnQueue();
    const log: string[] = [];
    queue.defer(() => log.push('a'));
    queue.defer(() => log.push('b'));
    queue.defer(() => log.push('c'));
    setImmediate(() => log.push('other'));
    expect(log).toEqual([]);
    await nextTurns(4);
    expect(log).toEqual(['a', 'other', 'b', 'c']);
  });

  it('starts again when tasks come after it ran dry', async () => {
    const queue = new TurnQueue();
    const log: string[] = [];
    queue.defer(() => log.push('a'));
    await nextTurns(2);
    queue.defer(() => log.push('b'));
    await nextTurns(2);
    expect(log).toEqual(['a', 'b']);
  });
});
