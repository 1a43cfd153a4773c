import type { VisionProvider } from '../config.ts';
import { err } from '../result.ts';
import type { InferencePort, OpenRequest } from './inference.ts';
import type { Logger } from './logger.ts';
import { createModalInference, type ModalInference, type ModalInferenceOptions } from './modal.ts';
import { createOpenAIVisionInference } from './openai-vision.ts';

/** The inference port the server runs on, and who captions a given connection. */
export interface VisionInference extends InferencePort {
  /** `modal`, `openai` or `none`: the provider that opens a session for this request (observers show it). */
  providerFor(request: Pick<OpenRequest, 'target'>): VisionProvider['kind'];
  close(): void;
}

export interface VisionInferenceOptions {
  provider: VisionProvider;
  modal: { tokenId: string | undefined; tokenSecret: string | undefined; appName: string; className: string };
  /** Per chunk (VISION_INFERENCE_TIMEOUT_MS). */
  timeoutMs: number;
  logger?: Logger;
  /** Extra Modal SDK client settings (tests stand in for Modal's control plane with `grpcMiddleware`). */
  modalClient?: ModalInferenceOptions['client'];
}

/**
 * The server's vision model, chosen by VISION_PROVIDER (config.ts
 * `visionProvider`). A connection that brings its own Modal token pair in its
 * upgrade headers (SPEC §7) is captioned by Modal whatever the provider: its
 * headers win for that connection.
 */
export function createVisionInference(options: VisionInferenceOptions): VisionInference {
  const { provider } = options;
  const modal: ModalInference = createModalInference({
    credentials:
      options.modal.tokenId !== undefined && options.modal.tokenSecret !== undefined
        ? { tokenId: options.modal.tokenId, tokenSecret: options.modal.tokenSecret }
        : undefined,
    appName: options.modal.appName,
    className: options.modal.className,
    timeoutMs: options.timeoutMs,
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.modalClient ? { client: options.modalClient } : {}),
  });
  const own: InferencePort =
    provider.kind === 'openai'
      ? createOpenAIVisionInference({
          baseUrl: provider.baseUrl,
          apiKey: provider.apiKey,
          model: provider.model,
          maxTokens: provider.maxTokens,
          detail: provider.detail,
          timeoutMs: options.timeoutMs,
        })
      : provider.kind === 'none'
        ? { open: async () => err({ kind: 'no-credentials', message: 'captions are off (VISION_PROVIDER=none)' }) }
        : modal;
  return {
    open: (request, signal) => (request.target ? modal.open(request, signal) : own.open(request, signal)),
    providerFor: (request) => (request.target ? 'modal' : provider.kind),
    close() {
      modal.close();
    },
  };
}

/** What the start-up log says of the provider: never a key, and the base URL without user info or query. */
export function describeVisionProvider(options: Pick<VisionInferenceOptions, 'provider' | 'modal'>): Record<string, unknown> {
  const { provider } = options;
  if (provider.kind === 'openai') {
    const base = new URL(provider.baseUrl);
    return {
      provider: 'openai',
      chosenBy: provider.chosenBy,
      baseUrl: `${base.protocol}//${base.host}${base.pathname}`,
      model: provider.model,
      key: provider.apiKey === undefined ? 'none' : 'set',
      maxTokens: provider.maxTokens,
      detail: provider.detail,
    };
  }
  if (provider.kind === 'none') return { provider: 'none', chosenBy: provider.chosenBy };
  return {
    provider: 'modal',
    chosenBy: provider.chosenBy,
    app: options.modal.appName,
    class: options.modal.className,
    credentials: options.modal.tokenId !== undefined ? 'set' : 'none (no captions unless a connection brings a token pair)',
  };
}
