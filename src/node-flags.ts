/**
 * Node flags the server runs with in production (`npm start`, the Dockerfile)
 * and in the benchmark; measurements in bench/RESULTS.md.
 *
 * - `--max-semi-space-size=2`: smaller, more frequent scavenges (Node's
 *   default is 16 MiB), so per-session garbage dies young instead of growing
 *   the old space. Against 4 MiB, paired runs: bench (c) 43.2 and 45.3 against
 *   46.6 and 46.2 KiB a session; bench (b) ack p99 8.2 against 12.4 ms
 *   (shorter scavenges), CPU the same (39.5 against 38.3 % of a core).
 * - `--single-threaded-gc`: the garbage collector works on the JavaScript
 *   thread only. On a container's one or fractional core its helper threads
 *   only compete with that thread, and while they are scheduled in, acks
 *   wait: under load (bench (b)) this server's ack p99 drops to half or less.
 * - `--heap-growing-percent=50`: after each mark-compact the old space may
 *   grow by half before the next, instead of by V8's own factor, which falls
 *   to about 1.1 once the heap is steady. With 1000 slow sessions (bench (c))
 *   the heap then stays near what they use: 45–47 instead of 78 KiB a
 *   session. Larger factors make mark-compacts rarer under camera load (frame
 *   bytes count towards V8's old-space limit) but let bench (b)'s memory per
 *   session go over its 600 KiB (up to 648 KiB at 100, 773–785 at 150–300).
 *   Since the vision socket reads into a shared buffer, little external
 *   memory churns and a larger factor buys nothing: at 100, bench (b) used
 *   23.6 % of a core (22.7 at 50, same code) and (c) took 54.5 KiB a session.
 *
 * A test keeps package.json and the Dockerfile in step with this list.
 */
export const SERVER_NODE_FLAGS = [
  '--disable-warning=ExperimentalWarning',
  '--max-semi-space-size=2',
  '--single-threaded-gc',
  '--heap-growing-percent=50',
] as const;
