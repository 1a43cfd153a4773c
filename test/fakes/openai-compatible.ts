import type { ServerResponse } from 'node:http';
import { FakeHttpServer, type ReceivedRequest } from './http-server.ts';

/** A Chat Completions body as the API answers it. */
export const completion = (content: string | null, options: { refusal?: string | null; completionTokens?: number; model?: string } = {}) => ({
  id: 'chatcmpl-fake',
  object: 'chat.completion',
  created: 1,
  model: options.model ?? 'gpt-4o-mini-2024-07-18',
  choices: [{ index: 0, message: { role: 'assistant', content, refusal: options.refusal ?? null }, finish_reason: 'stop', logprobs: null }],
  usage: { prompt_tokens: 600, completion_tokens: options.completionTokens ?? 11, total_tokens: 600 + (options.completionTokens ?? 11) },
});

/** The parts of a recorded vision request that tests look at. */
export interface VisionRequest {
  authorization: string | undefined;
  model: string;
  maxTokens: number | undefined;
  text: string;
  images: Array<{ url: string; detail: string | undefined }>;
}

interface ChatBody {
  model?: string;
  max_tokens?: number;
  response_format?: unknown;
  messages?: Array<{ role: string; content: string | Array<{ type: string; text?: string; image_url?: { url: string; detail?: string } }> }>;
}

/**
 * A loopback OpenAI-compatible server (what OpenAI, Ollama, vLLM and llama.cpp
 * all answer on `/v1/chat/completions`). Requests with image parts are vision
 * requests, answered by `vision`; requests with a `response_format` are the
 * intervention tick's, answered by `tick`. Every request is recorded.
 */
export class FakeOpenAICompatible {
  readonly http = new FakeHttpServer();
  vision: (request: VisionRequest, res: ServerResponse) => void = (_req, res) => json(res, 200, completion('A person walks past a yellow square. It moves.'));
  tick: (request: ReceivedRequest, res: ServerResponse) => void = (_req, res) =>
    json(res, 200, completion(JSON.stringify({ decision: 'no', reasoning: 'all calm', nudge: null })));

  constructor() {
    this.http.respond = (request, res) => {
      const body = request.body as ChatBody;
      if (request.path !== '/v1/chat/completions') return json(res, 404, { error: { message: `no route ${request.path}` } });
      if (body.response_format !== undefined) return this.tick(request, res);
      this.vision(visionRequest(request), res);
    };
  }

  start(): Promise<string> {
    return this.http.start();
  }

  stop(): Promise<void> {
    return this.http.stop();
  }

  /** The vision requests so far, oldest first. */
  visionRequests(): VisionRequest[] {
    return this.http.received.filter((r) => r.path === '/v1/chat/completions' && (r.body as ChatBody).response_format === undefined).map(visionRequest);
  }

  /** The tick's requests so far, oldest first. */
  tickRequests(): ReceivedRequest[] {
    return this.http.received.filter((r) => (r.body as ChatBody).response_format !== undefined);
  }
}

function visionRequest(request: ReceivedRequest): VisionRequest {
  const body = request.body as ChatBody;
  const parts = body.messages?.flatMap((m) => (typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content)) ?? [];
  return {
    authorization: request.headers.authorization,
    model: body.model ?? '',
    maxTokens: body.max_tokens,
    text: parts.filter((p) => p.type === 'text').map((p) => p.text ?? '').join('\n'),
    images: parts.filter((p) => p.type === 'image_url').map((p) => ({ url: p.image_url?.url ?? '', detail: p.image_url?.detail })),
  };
}

export function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
