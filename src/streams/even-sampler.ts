/**
 * Keeps at most `capacity` items of an unbounded sequence, spread evenly over it,
 * first and latest included, in O(capacity) memory.
 *
 * Items at indices that are multiples of `stride` are kept; when the next item
 * finds no room, every other kept item is dropped and the stride doubles. An
 * item off the stride is held on the side as the latest, so the sample always
 * ends at the present. A sequence no longer than `capacity` is kept whole.
 */
export class EvenSampler<T> {
  private kept: T[] = [];
  private latest: T | undefined = undefined;
  private stride = 1;
  private seenCount = 0;
  readonly capacity: number;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
    this.capacity = capacity;
  }

  /** Items offered since the last reset. */
  get seen(): number {
    return this.seenCount;
  }

  push(item: T): void {
    const index = this.seenCount++;
    if (this.capacity === 1) {
      this.latest = item;
      return;
    }
    if (this.kept.length === this.capacity) this.compact();
    if (index % this.stride === 0) {
      this.kept.push(item);
      this.latest = undefined;
    } else {
      this.latest = item;
    }
  }

  /** The sample, oldest first. */
  sample(): T[] {
    return this.latest === undefined ? this.kept.slice() : [...this.kept, this.latest];
  }

  reset(): void {
    this.kept = [];
    this.latest = undefined;
    this.stride = 1;
    this.seenCount = 0;
  }

  private compact(): void {
    let write = 0;
    for (let read = 0; read < this.kept.length; read += 2) this.kept[write++] = this.kept[read] as T;
    this.kept.length = write;
    this.stride *= 2;
  }
}
