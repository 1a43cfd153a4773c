import type { Result } from '../result.ts';

/** A time window of sampled frames, ready for the vision model. */
export interface FrameChunk {
  /** 0-based chunk index within the session. */
  index: number;
  /** `<session id>-<chunk index>`: stable, so a re-sent caption deduplicates. */
  windowId: string;
  /** At most `VISION_FRAMES_PER_CHUNK` frames spread evenly over the window, first and latest included. */
  frames: Uint8Array[];
  /** Seconds since the connection opened, of the first and latest frame in the window. */
  startS: number;
  endS: number;
  /** Frames that arrived in the window, of which `frames` is the sample. */
  framesSeen: number;
  /**
   * The session's latest captions, oldest first, at most VISION_HISTORY_CAPTIONS
   * (the session actor keeps them; models hold no per-session state). Absent or
   * empty: no history. Each entry is at most MAX_HISTORY_ENTRY_CHARS.
   */
  history?: readonly string[];
}

/**
 * Characters kept of each caption in a session's history: a model that answers
 * at length cannot make every later chunk carry it (the Modal apps cut each
 * entry to the same length, `clean_history` in modal/vlm_core.py).
 */
export const MAX_HISTORY_ENTRY_CHARS = 300;

/** C0 and C1 controls (terminal escapes, NUL, tabs and newlines) and the line and paragraph separators. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
/** The bidirectional embeddings, overrides and isolates (text that displays other than it reads). */
const BIDI_CONTROLS = /[\u202a-\u202e\u2066-\u2069]/g;

/**
 * A model's caption as clients, the store and terminals get it: control
 * characters become spaces (a model's answer cannot carry terminal escapes
 * or NULs) and runs of spaces one space, bidirectional overrides are removed,
 * and lone surrogates become U+FFFD so the text is well-formed UTF-16. Other
 * text (no-break spaces, joiners, any script) is kept as it is.
 */
export function cleanCaption(text: string): string {
  return text.replace(CONTROL_CHARS, ' ').replace(BIDI_CONTROLS, '').replace(/ {2,}/g, ' ').trim().toWellFormed();
}

/**
 * Replaces every given secret (4 characters or more; undefined ones are
 * skipped) with `[redacted]` in a text from upstream, so an error message
 * that quotes a key never reaches a log, a reason or a client.
 */
export function secretScrubber(secrets: ReadonlyArray<string | undefined>): (text: string) => string {
  const present = secrets.filter((s): s is string => s !== undefined && s.length >= 4);
  return (text) => present.reduce((out, secret) => out.split(secret).join('[redacted]'), text);
}

/** `text` cut to at most `max` UTF-16 units, never between the two halves of a surrogate pair. */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const last = text.charCodeAt(max - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

/** What a vision model says about one chunk. */
export interface Caption {
  caption: string;
  chunkStartS: number;
  chunkEndS: number;
  latencyMs: number;
  tokensGenerated: number | null;
}

export type InferenceErrorKind = 'no-credentials' | 'open-failed' | 'timeout' | 'remote' | 'invalid-output';

/** A typed inference failure; `message` is safe to show a client (never a secret). */
export interface InferenceError {
  kind: InferenceErrorKind;
  message: string;
}

/** One inference session per glasses connection. */
export interface InferenceSession {
  /**
   * The chunk's frames are lent: read (or copy) them before the returned promise
   * settles. Once it settles the session actor returns them to the frame pool,
   * which reuses their buffers. The signal may be handed to the next call once
   * this one settles: remove any listener added to it by then.
   */
  infer(chunk: FrameChunk, signal: AbortSignal): Promise<Result<Caption, InferenceError>>;
  close(): Promise<void>;
}

/**
 * Credentials (and optionally which model) a connection brought with it,
 * instead of the server's own. Never logged; the inspector redacts it by key.
 */
export interface InferenceTarget {
  tokenId: string;
  tokenSecret: string;
  appName?: string;
  className?: string;
}

export interface OpenRequest {
  sessionId: string;
  prompt: string;
  target?: InferenceTarget;
}

/** The role the session actor needs from a vision model: open → infer chunks → close. */
export interface InferencePort {
  open(request: OpenRequest, signal: AbortSignal): Promise<Result<InferenceSession, InferenceError>>;
  /** Releases what the port shares between sessions (SDK clients, channels); called at shutdown. */
  close?(): void | Promise<void>;
}

/** Thrown inside actor logic so the machine's `onError` can branch on `kind`. */
export class InferenceFailure extends Error implements InferenceError {
  override name = 'InferenceFailure';
  readonly kind: InferenceErrorKind;
  constructor(error: InferenceError) {
    super(error.message);
    this.kind = error.kind;
  }
}
