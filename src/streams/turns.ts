/** Runs a task later; see `TurnQueue`. */
export type Defer = (task: () => void) => void;

/**
 * Runs queued tasks in order, one per turn of the event loop (each in a
 * `setImmediate` of its own), so the reads that came in meanwhile are handled
 * between two tasks.
 *
 * The server creates one queue for the chunk work of all sessions: windows that fall due
 * on the same grid step (see `windowFrames`' `alignMs`) and answers that come
 * back together are handled one after the other, while the chunk path's code
 * and data are still in the CPU's caches, yet no ack waits behind more than one
 * of them.
 */
export class TurnQueue {
  private readonly tasks: Array<() => void> = [];
  private scheduled = false;

  readonly defer: Defer = (task) => {
    this.tasks.push(task);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.next);
  };

  private readonly next = () => {
    const task = this.tasks.shift();
    if (this.tasks.length > 0) setImmediate(this.next);
    else this.scheduled = false;
    task?.();
  };
}

/** Runs the task at once: the default where no queue is given (and in tests on virtual time). */
export const atOnce: Defer = (task) => task();
