/**
 * Node flags the server runs with in production (`npm start`, the Dockerfile)
 * and in the benchmark; measurements in bench/RESULTS.md.
 *
 * - `--max-semi-space-size=4`: smaller, more frequent scavenges (Node's
 *   default is 16 MiB), so per-session garbage dies young instead of growing
 *   the old space.
 * - `--single-threaded-gc`: the garbage collector works on the JavaScript
 *   thread only. On a container's one or fractional core its helper threads
 *   only compete with that thread, and every time they are scheduled in,
 *   acks wait: under load this takes the ack p99 from about 20 to about 6 ×
 *   the bare `ws` server's.
 * - `--heap-growing-percent=50`: after each mark-compact the old space may
 *   grow by half before the next. Frame buffers are external memory, which
 *   V8 counts towards the old space's limit; with V8's own growth factor
 *   (about 1.1 once the heap is steady) 200 camera streams kept it a few MB
 *   under the limit and the server ran mark-compacts back to back. A fixed
 *   factor also keeps the heap of many slow sessions from growing far ahead
 *   of what they use (bench (c)); at 100 or more, bench (b)'s memory per
 *   session went over its 600 KiB (648–785 KiB).
 *
 * A test keeps package.json and the Dockerfile in step with this list.
 */
export const SERVER_NODE_FLAGS = [
  '--disable-warning=ExperimentalWarning',
  '--max-semi-space-size=4',
  '--single-threaded-gc',
  '--heap-growing-percent=50',
] as const;
