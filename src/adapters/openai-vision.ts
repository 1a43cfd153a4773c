import OpenAI from 'openai';
import type { ChatCompletion, ChatCompletionContentPart } from 'openai/resources/chat/completions';
import { err, ok, type Result } from '../result.ts';
import { boundedFetch, MAX_VENDOR_RESPONSE_BYTES, ResponseTooLargeError } from './bounded-fetch.ts';
import { cleanCaption, cutText, secretScrubber, type Caption, type FrameChunk, type InferenceError, type InferencePort, type InferenceSession, type OpenRequest } from './inference.ts';

/** Settings of an OpenAI-compatible vision endpoint (README "Captions without Modal"). */
export interface OpenAIVisionOptions {
  /** The API root, `…/v1` (OpenAI, Ollama's `http://127.0.0.1:11434/v1`, vLLM, llama.cpp, LM Studio). */
  baseUrl: string;
  /** Sent as `Authorization: Bearer …`; undefined sends no Authorization header (local servers). */
  apiKey: string | undefined;
  model: string;
  /** `max_tokens` of each request. */
  maxTokens: number;
  /** The image parts' `detail`. */
  detail: 'low' | 'high' | 'auto';
  /** Per chunk, in ms (VISION_INFERENCE_TIMEOUT_MS): the request is aborted after it. */
  timeoutMs: number;
}

/** Longest caption kept, in characters, after the cut to one sentence. */
export const MAX_CAPTION_CHARS = 300;
/** Longest upstream error text kept in a reason (never shown to clients as is). */
const MAX_MESSAGE = 200;
/** The request headers the SDK itself sets; any other (from OPENAI_CUSTOM_HEADERS) is not sent to a vision server. */
const SDK_HEADER = /^(accept|content-type|content-length|authorization|user-agent|x-stainless-[a-z-]+)$/;

/** The image MIME type of a frame, from its leading bytes, or undefined for anything else. */
export function sniffImageType(bytes: Uint8Array): 'image/jpeg' | 'image/png' | 'image/webp' | undefined {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg';
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47 && bytes[4] === 0x0d && bytes[5] === 0x0a && bytes[6] === 0x1a && bytes[7] === 0x0a) {
    return 'image/png';
  }
  // RIFF....WEBP
  if (
    bytes.length >= 12 &&
    bytes[0] === 0x52 && bytes[1] === 0x49 && bytes[2] === 0x46 && bytes[3] === 0x46 &&
    bytes[8] === 0x57 && bytes[9] === 0x45 && bytes[10] === 0x42 && bytes[11] === 0x50
  ) {
    return 'image/webp';
  }
  return undefined;
}

/** The first sentence of a model's answer, cleaned (`cleanCaption`), at most `MAX_CAPTION_CHARS`. */
export function firstSentence(text: string): string {
  const flat = cleanCaption(text);
  const sentence = /^.+?[.!?](?=\s|$)/.exec(flat)?.[0] ?? flat;
  return sentence.length > MAX_CAPTION_CHARS ? `${cutText(sentence, MAX_CAPTION_CHARS - 1)}…` : sentence;
}

/**
 * The text part of a chunk's request: the prompt, where the frames sit in the
 * stream, and the session's earlier captions (the same wording as the Modal
 * apps' `build_prompt`).
 */
export function chunkText(prompt: string, chunk: FrameChunk, images: number): string {
  const lines = [
    `${prompt}\n`,
    `The ${images === 1 ? 'image is one frame' : `${images} images are frames, oldest first,`} from the wearer's camera, ` +
      `${chunk.startS.toFixed(1)} s to ${chunk.endS.toFixed(1)} s into the stream.`,
  ];
  if (chunk.history && chunk.history.length > 0) {
    lines.push("Earlier captions of this wearer's view, oldest first (do not repeat them word for word):");
    for (const caption of chunk.history) lines.push(`- ${caption}`);
  }
  return lines.join('\n');
}

/**
 * The inference port over an OpenAI-compatible Chat Completions API with image
 * inputs, through the official `openai` SDK: one request per chunk, the
 * chunk's frames as `data:` URL image parts. One SDK client serves every
 * session (it holds no per-session state). The SDK never retries
 * (`maxRetries: 0`): the session machine owns retries and the circuit.
 *
 * Errors, as the port's kinds: 401/403 → `open-failed` (the session degrades
 * at once; the reason says the key was refused, never any of it); 404 (no
 * such model) → `open-failed`; 429, 5xx, other 4xx and network failures →
 * `remote`; the timeout → `timeout`; an empty or refused answer, or a chunk
 * with no JPEG, PNG or WebP frame → `invalid-output`.
 */
export function createOpenAIVisionInference(options: OpenAIVisionOptions): InferencePort {
  const client = new OpenAI({
    baseURL: options.baseUrl,
    // The SDK wants a key; without one, the header is removed (`Authorization: null`).
    apiKey: options.apiKey ?? 'none',
    ...(options.apiKey === undefined ? { defaultHeaders: { Authorization: null } } : {}),
    // The SDK reads no OPENAI_ORG_ID / OPENAI_PROJECT_ID for these requests.
    organization: null,
    project: null,
    maxRetries: 0,
    timeout: options.timeoutMs,
    // Answers capped at 1 MiB; no redirect is followed (frames go only to the configured root); only
    // the SDK's own headers are sent (not, say, the tick's OPENAI_CUSTOM_HEADERS, which the SDK reads itself).
    fetch: boundedFetch({ maxResponseBytes: MAX_VENDOR_RESPONSE_BYTES, redirect: 'error', keepHeader: (name) => SDK_HEADER.test(name) }),
  });
  const scrub = scrubber(options.apiKey);
  return {
    async open(request: OpenRequest): Promise<Result<InferenceSession, InferenceError>> {
      return ok(openAIVisionSession(client, options, request.prompt, scrub));
    },
  };
}

function openAIVisionSession(client: OpenAI, options: OpenAIVisionOptions, prompt: string, scrub: (text: string) => string): InferenceSession {
  return {
    async infer(chunk: FrameChunk, signal: AbortSignal): Promise<Result<Caption, InferenceError>> {
      const images: ChatCompletionContentPart[] = [];
      for (const frame of chunk.frames) {
        const type = sniffImageType(frame);
        // The frames are lent: encoding them here copies them before the first await.
        if (type) images.push({ type: 'image_url', image_url: { url: `data:${type};base64,${Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength).toString('base64')}`, detail: options.detail } });
      }
      if (images.length === 0) return err({ kind: 'invalid-output', message: 'no frame of the chunk is a JPEG, PNG or WebP image' });
      const started = performance.now();
      try {
        const completion = await client.chat.completions.create(
          {
            model: options.model,
            max_tokens: options.maxTokens,
            messages: [{ role: 'user', content: [{ type: 'text', text: chunkText(prompt, chunk, images.length) }, ...images] }],
          },
          { signal, timeout: options.timeoutMs, maxRetries: 0 },
        );
        const latencyMs = Math.round(performance.now() - started);
        // A 200 whose body is `null`, empty or not an object is no answer.
        const answer = completion as ChatCompletion | null | undefined;
        const message = typeof answer === 'object' && answer !== null && Array.isArray(answer.choices) ? answer.choices[0]?.message : undefined;
        if (message?.refusal) return err({ kind: 'invalid-output', message: 'the model refused to caption the chunk' });
        const caption = typeof message?.content === 'string' ? firstSentence(message.content) : '';
        if (caption === '') return err({ kind: 'invalid-output', message: 'the model gave no caption' });
        return ok({
          caption,
          chunkStartS: chunk.startS,
          chunkEndS: chunk.endS,
          latencyMs,
          tokensGenerated: answer?.usage?.completion_tokens ?? null,
        });
      } catch (error) {
        return err(describe(error, signal, scrub));
      }
    },
    async close(): Promise<void> {
      // Chat Completions are stateless: nothing to release per session.
    },
  };
}

/** Maps an SDK failure to the port's kinds, with a message that never holds the key. */
function describe(error: unknown, signal: AbortSignal, scrub: (text: string) => string): InferenceError {
  if (error instanceof OpenAI.APIConnectionTimeoutError) return { kind: 'timeout', message: 'inference timed out' };
  if (error instanceof ResponseTooLargeError) return { kind: 'invalid-output', message: `the vision API's answer is longer than ${error.limitBytes} bytes` };
  if (error instanceof SyntaxError) return { kind: 'invalid-output', message: "the vision API's answer is not JSON" };
  if (error instanceof OpenAI.APIUserAbortError || signal.aborted) return { kind: 'remote', message: 'cancelled' };
  if (error instanceof OpenAI.AuthenticationError || error instanceof OpenAI.PermissionDeniedError) {
    // The API's own text quotes part of the key: it is not kept.
    return { kind: 'open-failed', message: `the vision API refused the key (${error.status})` };
  }
  if (error instanceof OpenAI.APIConnectionError) return { kind: 'remote', message: `vision API unreachable: ${scrub(causeOf(error))}` };
  if (error instanceof OpenAI.APIError) {
    const detail = scrub(upstreamMessage(error));
    if (error instanceof OpenAI.NotFoundError) return { kind: 'open-failed', message: `the vision API answered 404${detail ? `: ${detail}` : ''}` };
    return { kind: 'remote', message: `the vision API answered ${error.status ?? 'an error'}${detail ? `: ${detail}` : ''}` };
  }
  return { kind: 'remote', message: scrub(cut(error instanceof Error ? error.message : String(error))) };
}

/** The `error.message` of an API error body, cut; the SDK's own text repeats the status. */
function upstreamMessage(error: InstanceType<typeof OpenAI.APIError>): string {
  const body = error.error as { message?: unknown } | undefined;
  return typeof body?.message === 'string' ? cut(body.message) : '';
}

function causeOf(error: Error): string {
  const cause = (error as { cause?: unknown }).cause;
  const code = (cause as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string') return code;
  return cut(cause instanceof Error ? cause.message : error.message);
}

const cut = (text: string) => (text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE)}…` : text);

/** Replaces the key, and anything shaped like an OpenAI key, in a text from upstream. */
function scrubber(apiKey: string | undefined): (text: string) => string {
  const scrubKey = secretScrubber([apiKey]);
  return (text) => scrubKey(text).replace(/\bsk-[A-Za-z0-9_*-]{3,}/g, '[redacted]');
}
