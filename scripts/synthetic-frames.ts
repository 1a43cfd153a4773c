import jpeg from 'jpeg-js';

export interface SyntheticFrameOptions {
  /** Pixels; defaults 320 × 240. */
  width?: number;
  height?: number;
  /** JPEG quality, 1–100 (default 80). */
  quality?: number;
}

/**
 * `count` JPEG frames of a made-up scene: a sky-to-ground gradient with a
 * bright square that crosses it, one step a frame. Real images (a vision
 * model can caption them, and the server's image sniffing accepts them), made
 * without files or ffmpeg.
 */
export function syntheticJpegFrames(count: number, options: SyntheticFrameOptions = {}): Uint8Array[] {
  const width = options.width ?? 320;
  const height = options.height ?? 240;
  const quality = options.quality ?? 80;
  const side = Math.max(2, Math.round(Math.min(width, height) / 4));
  const frames: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const data = Buffer.alloc(width * height * 4);
    const left = Math.round(((i * 8) % (width + side)) - side);
    const top = Math.round(height / 2 - side / 2);
    for (let y = 0; y < height; y++) {
      const sky = y < height / 2;
      for (let x = 0; x < width; x++) {
        const at = (y * width + x) * 4;
        const inSquare = x >= left && x < left + side && y >= top && y < top + side;
        data[at] = inSquare ? 250 : sky ? 90 + Math.round((y / height) * 120) : 70;
        data[at + 1] = inSquare ? 200 : sky ? 150 + Math.round((y / height) * 80) : 120 - Math.round(((y - height / 2) / height) * 60);
        data[at + 2] = inSquare ? 40 : sky ? 235 : 60;
        data[at + 3] = 255;
      }
    }
    frames.push(new Uint8Array(jpeg.encode({ data, width, height }, quality).data));
  }
  return frames;
}
