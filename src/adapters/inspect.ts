import { createWebSocketInspector } from '@statelyai/inspect';
import { createInspectorServer } from '@statelyai/inspect/server';
import type { InspectionEvent, Observer } from 'xstate';

/** Keys whose values never leave the process. */
const SECRET_KEY = /(api[-_]?key|token[-_]?(id|secret)|secret|magic[-_]?word|authorization|password)$/i;
const MAX_DEPTH = 6;

/**
 * What the inspector may see of a value: frame bytes become `{bytes: N}`,
 * secrets `[redacted]`, functions, streams and handles a short tag.
 */
export function redact(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object') {
    return typeof value === 'function' ? '[function]' : value;
  }
  if (ArrayBuffer.isView(value)) return { bytes: value.byteLength };
  if (value instanceof ArrayBuffer) return { bytes: value.byteLength };
  if (depth >= MAX_DEPTH) return '[…]';
  if (Array.isArray(value)) return value.map((item) => redact(item, depth + 1));
  const proto = Object.getPrototypeOf(value) as object | null;
  if (proto !== Object.prototype && proto !== null) {
    // Class instances (observables, actor refs, SDK clients, errors) are not data.
    if (value instanceof Error) return { error: value.message };
    return `[${(proto.constructor as { name?: string } | undefined)?.name ?? 'object'}]`;
  }
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    out[key] = SECRET_KEY.test(key) ? '[redacted]' : redact(inner, depth + 1);
  }
  return out;
}

export interface Inspection {
  /** Pass to `createActor(..., { inspect })` of the root actor. */
  inspect: Observer<InspectionEvent>;
  /** Where a person opens the inspector, when this process runs the relay. */
  url: string | undefined;
  stop(): void;
}

/**
 * Streams every actor's events and snapshots to the Stately inspector through
 * a local relay (SPEC §11), redacted first. With `relayUrl` it reports to an
 * existing relay instead of starting one.
 */
export function startInspection(options: { port: number; relayUrl?: string }): Inspection {
  const relay = options.relayUrl ? undefined : createInspectorServer({ port: options.port, autoOpen: false });
  const inspector = createWebSocketInspector({
    url: options.relayUrl ?? `ws://127.0.0.1:${options.port}`,
    // Events are redacted before they reach the inspector (below), contexts here.
    sanitizeContext: (context) => redact(context) as typeof context,
    // A last pass over the whole event: actor inputs and outputs are not covered by the two.
    serialize: (event) => redact(event) as typeof event,
  });
  const report = inspector.inspect as Observer<InspectionEvent>;
  return {
    // The inspector reports on a later tick, by which time a chunk's frames may have been freed
    // (src/streams/frame-copies.ts): the event is summarised now, as it was when it happened.
    inspect: {
      next: (event) => report.next?.('event' in event ? { ...event, event: redact(event.event) as typeof event.event } : event),
    },
    url: relay ? `http://localhost:${options.port}` : undefined,
    stop() {
      inspector.stop();
      relay?.stop();
    },
  };
}
