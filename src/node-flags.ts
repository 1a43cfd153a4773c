/**
 * Node flags the server runs with in production (`npm start`, the Dockerfile)
 * and in the benchmark. A 4 MiB semi-space (Node's default is 16 MiB on
 * 64-bit) makes scavenges smaller and more frequent, so per-session garbage
 * is collected young instead of growing the old space: memory per session in
 * bench (b) drops from about 630 to about 520 KiB, with acks/s in (a)
 * unchanged (bench/RESULTS.md). A test keeps package.json and the Dockerfile
 * in step with this list.
 */
export const SERVER_NODE_FLAGS = ['--disable-warning=ExperimentalWarning', '--max-semi-space-size=4'] as const;
