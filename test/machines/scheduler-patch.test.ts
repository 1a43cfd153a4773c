import { describe, expect, it } from 'vitest';
import { createActor, createMachine, setup, stopChild, type AnyActorRef } from 'xstate';

// patches/xstate+5.33.3.patch, as a test of the kind upstream's suite has: stopping an actor
// cancels its own delayed events without walking the delayed events of every other actor of
// the system (XState 5.33.3 walks them all, so closing N sessions costs O(N²): finding 12).

const child = createMachine({
  id: 'child',
  initial: 'waiting',
  states: { waiting: { after: { 60_000: 'done' } }, done: { type: 'final' } },
});

/** The system's table of delayed events, watched: which keys stopping an actor reads. */
function watchScheduled(actor: AnyActorRef) {
  const system = actor.system as unknown as { _snapshot: { _scheduledEvents: Record<string, unknown> } };
  const reads = { enumerations: 0, lookups: 0 };
  system._snapshot._scheduledEvents = new Proxy(system._snapshot._scheduledEvents, {
    ownKeys(target) {
      reads.enumerations += 1;
      return Reflect.ownKeys(target);
    },
    get(target, key, receiver) {
      reads.lookups += 1;
      return Reflect.get(target, key, receiver);
    },
  });
  return { reads, count: () => Object.keys(system._snapshot._scheduledEvents).length };
}

describe('the scheduler patch (stop cost is O(own delayed events))', () => {
  it('stopping one actor cancels its delayed event without reading the other actors’ ones', () => {
    const root = createActor(
      setup({ actors: { child } }).createMachine({
        id: 'root',
        context: ({ spawn }) => ({ children: Array.from({ length: 200 }, (_, i) => spawn('child', { id: `c${i}` })) }),
        on: { stop: { actions: stopChild('c0') } },
      }),
    ).start();
    const watched = watchScheduled(root);
    expect(watched.count()).toBe(200);
    const before = { ...watched.reads };
    root.send({ type: 'stop' });
    const during = { enumerations: watched.reads.enumerations - before.enumerations, lookups: watched.reads.lookups - before.lookups };
    // 5.33.3 enumerates the whole table and reads every entry (200 lookups) to find c0's one.
    expect(during.enumerations).toBe(0);
    expect(during.lookups).toBeLessThan(10);
    expect(watched.count()).toBe(199);
    root.stop();
    expect(watched.count()).toBe(0);
  });

  it('still fires the delayed events of the actors that were not stopped', async () => {
    const done: string[] = [];
    const quick = createMachine({
      id: 'quick',
      initial: 'waiting',
      states: { waiting: { after: { 5: 'done' } }, done: { type: 'final' } },
    });
    const root = createActor(
      setup({ actors: { quick } }).createMachine({
        id: 'root',
        context: ({ spawn }) => {
          for (const id of ['a', 'b', 'c']) spawn('quick', { id });
          return {};
        },
        on: { stop: { actions: stopChild('b') }, '*': {} },
      }),
    ).start();
    for (const id of ['a', 'b', 'c']) {
      root.getSnapshot().children[id]?.subscribe((snapshot) => {
        if (snapshot.status === 'done') done.push(id);
      });
    }
    root.send({ type: 'stop' });
    await expect.poll(() => done.sort()).toEqual(['a', 'c']);
    root.stop();
  });
});
