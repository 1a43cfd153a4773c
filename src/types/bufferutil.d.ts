/** ws's optional native helper; it has no types of its own. */
declare module 'bufferutil' {
  /** XORs `length` bytes of `source` with `mask` (from its first byte) into `output` at `offset`. */
  export function mask(source: Uint8Array, mask: Uint8Array, output: Uint8Array, offset: number, length: number): void;
  export function unmask(buffer: Uint8Array, mask: Uint8Array): void;
  const bufferUtil: { mask: typeof mask; unmask: typeof unmask };
  export default bufferUtil;
}
