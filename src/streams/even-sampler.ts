/**
 * What a sampler does with the items it holds: `own` is applied to an item it
 * keeps (say, to copy it out of a shared buffer), `release` to an owned item it
 * lets go of. The items `take` hands out stay owned, by the caller now.
 */
export interface SampleOwnership<T> {
  own(item: T): T;
  release(item: T): void;
}

const borrowed: SampleOwnership<never> = { own: (item) => item, release: () => undefined };

/**
 * Keeps at most `capacity` items of an unbounded sequence, spread evenly over it,
 * first and latest included, in O(capacity) memory.
 *
 * Items at indices that are multiples of `stride` are kept; when the next item
 * finds no room, every other kept item is dropped and the stride doubles. An
 * item off the stride is held on the side as the latest, so the sample always
 * ends at the present. A sequence no longer than `capacity` is kept whole.
 * The latest is held as given and owned only if it ends up in a sample.
 */
export class EvenSampler<T> {
  private kept: T[] = [];
  private latest: T | undefined = undefined;
  private stride = 1;
  /** The stride each run starts with: 1, or what `take` expects the next runs to need. */
  private initialStride = 1;
  private seenCount = 0;
  readonly capacity: number;
  private readonly ownership: SampleOwnership<T>;

  constructor(capacity: number, ownership: SampleOwnership<T> = borrowed) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
    this.capacity = capacity;
    this.ownership = ownership;
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
      this.kept.push(this.ownership.own(item));
      this.latest = undefined;
    } else {
      this.latest = item;
    }
  }

  /**
   * The sample, oldest first, handed over to the caller; the sampler starts
   * over. Given how many items the next run will likely see, it starts with
   * the stride that spreads the capacity over them, so it keeps only what it
   * will send instead of filling up early and thinning out later.
   */
  take(expectedNext = 0): T[] {
    const sample = this.kept;
    if (this.latest !== undefined) sample.push(this.ownership.own(this.latest));
    this.kept = [];
    this.initialStride = expectedNext > this.capacity && this.capacity > 1 ? Math.ceil(expectedNext / (this.capacity - 1)) : 1;
    this.clear();
    return sample;
  }

  /** Lets go of the sample and starts over, with the stride the last `take` expected. */
  reset(): void {
    for (const item of this.kept) this.ownership.release(item);
    this.kept = [];
    this.clear();
  }

  private clear(): void {
    this.latest = undefined;
    this.stride = this.initialStride;
    this.seenCount = 0;
  }

  private compact(): void {
    let write = 0;
    for (let read = 0; read < this.kept.length; read++) {
      const item = this.kept[read] as T;
      if (read % 2 === 0) this.kept[write++] = item;
      else this.ownership.release(item);
    }
    this.kept.length = write;
    this.stride *= 2;
  }
}
