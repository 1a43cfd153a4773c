/**
 * Vendor answers read whole (the OpenAI SDK's `response.json()`, Poke's text)
 * are capped, so a broken or hostile endpoint cannot make the server buffer
 * gigabytes or stall its event loop parsing them. The cap counts the bytes as
 * the platform's `fetch` hands them over, after any content decoding, so a
 * compressed answer cannot slip past it. Runs in Node and in workerd.
 */

/** The longest answer read from a vendor API (OpenAI-compatible vision, the tick's OpenAI), in bytes. */
export const MAX_VENDOR_RESPONSE_BYTES = 1_048_576;

/** An answer longer than its limit: the rest of it is not read (the connection is dropped). */
export class ResponseTooLargeError extends Error {
  override readonly name = 'ResponseTooLargeError';
  readonly limitBytes: number;
  constructor(limitBytes: number) {
    super(`the answer is longer than ${limitBytes} bytes`);
    this.limitBytes = limitBytes;
  }
}

/** Statuses whose Response cannot carry a body (Fetch standard, "null body status"). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/**
 * The same response, its body erroring with `ResponseTooLargeError` once more
 * than `maxBytes` have been read (at the first read when `Content-Length` says
 * so: a body never read, as an SDK cancels one before it retries, stays
 * cancellable).
 */
export function limitResponse(response: Response, maxBytes: number): Response {
  const body = response.body;
  if (!body || NULL_BODY.has(response.status)) return response;
  let seen = 0;
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  const limited = body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        seen += chunk.byteLength;
        if (declared > maxBytes || seen > maxBytes) controller.error(new ResponseTooLargeError(maxBytes));
        else controller.enqueue(chunk);
      },
    }),
  );
  return new Response(limited, { status: response.status, statusText: response.statusText, headers: response.headers });
}

export interface BoundedFetchOptions {
  /** Answers longer than this (bytes) fail with `ResponseTooLargeError` while being read. */
  maxResponseBytes: number;
  /** `error`: a redirect fails the request, so what is sent goes only where it was configured to. */
  redirect?: 'error';
  /** Request headers to keep (lower-case names); the rest are dropped. Default: all. */
  keepHeader?: (name: string) => boolean;
}

/** A `fetch` for SDKs (`new OpenAI({ fetch })`) whose answers are capped as `limitResponse` does. */
export function boundedFetch(options: BoundedFetchOptions, base: typeof fetch = (input, init) => fetch(input, init)): typeof fetch {
  return async (input, init) => {
    let next: RequestInit = { ...init };
    if (options.keepHeader && init?.headers) {
      const headers = new Headers(init.headers);
      for (const name of [...headers.keys()]) if (!options.keepHeader(name)) headers.delete(name);
      next.headers = headers;
    }
    if (options.redirect) next = { ...next, redirect: options.redirect };
    return limitResponse(await base(input, next), options.maxResponseBytes);
  };
}
