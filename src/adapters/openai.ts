import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { err, ok, type Result } from '../result.ts';
import { boundedFetch, MAX_VENDOR_RESPONSE_BYTES, ResponseTooLargeError } from './bounded-fetch.ts';

/** The model's answer, strict JSON (SPEC §6). */
export const nudgeDecisionSchema = z.object({
  decision: z.enum(['yes', 'no']),
  reasoning: z.string(),
  nudge: z.string().nullable(),
});

export type NudgeDecision = z.output<typeof nudgeDecisionSchema>;

export interface DecisionResult extends NudgeDecision {
  model: string;
  promptTokens: number | null;
  completionTokens: number | null;
  totalTokens: number | null;
}

export interface AdvisorError {
  kind: 'refusal' | 'malformed' | 'api' | 'timeout';
  /** Short; logged, never shown raw to a client. */
  message: string;
}

/** What the intervention tick asks the model to decide on. */
export interface DecisionRequest {
  biometrics: unknown[];
  captions: unknown[];
  recentInterventions: unknown[];
  nowIso: string;
}

/** The role the intervention machine needs: decide whether to nudge. */
export interface NudgeAdvisor {
  decide(request: DecisionRequest, signal?: AbortSignal): Promise<Result<DecisionResult, AdvisorError>>;
}

export const ADVISOR_INSTRUCTIONS = [
  'You watch over a person wearing smart glasses and a wrist wearable.',
  'Given the biometric windows and the captions of what they saw in the last minute,',
  'decide whether a short, kind, actionable nudge sent to their phone would help right now.',
  'Nudge rarely: only when the data clearly calls for it, and never repeat a recent intervention',
  '(listed with the time it was sent). Answer "no" with nudge null when in doubt.',
  'A nudge is one or two plain sentences addressed to the wearer.',
].join(' ');

export interface OpenAIAdvisorConfig {
  apiKey: string;
  baseURL?: string;
  model: string;
  timeoutMs?: number;
}

/** The official SDK with a strict JSON schema built from the zod schema; the answer is validated again with zod. */
export function createOpenAIAdvisor(config: OpenAIAdvisorConfig): NudgeAdvisor {
  const client = new OpenAI({
    apiKey: config.apiKey,
    ...(config.baseURL ? { baseURL: config.baseURL } : {}),
    maxRetries: 1,
    timeout: config.timeoutMs ?? 30_000,
    // An answer past 1 MiB is not read (a decision is a few hundred bytes).
    fetch: boundedFetch({ maxResponseBytes: MAX_VENDOR_RESPONSE_BYTES }),
  });
  return {
    async decide(request, signal) {
      try {
        const completion = await client.chat.completions.parse(
          {
            model: config.model,
            messages: [
              { role: 'system', content: ADVISOR_INSTRUCTIONS },
              { role: 'user', content: JSON.stringify(request) },
            ],
            response_format: zodResponseFormat(nudgeDecisionSchema, 'intervention_decision'),
          },
          signal ? { signal } : {},
        );
        const message = completion.choices[0]?.message;
        if (message?.refusal) return err({ kind: 'refusal', message: 'the model refused' });
        const parsed = nudgeDecisionSchema.safeParse(message?.parsed);
        if (!parsed.success) return err({ kind: 'malformed', message: 'the model answered outside the schema' });
        return ok({
          ...parsed.data,
          model: completion.model ?? config.model,
          promptTokens: completion.usage?.prompt_tokens ?? null,
          completionTokens: completion.usage?.completion_tokens ?? null,
          totalTokens: completion.usage?.total_tokens ?? null,
        });
      } catch (error) {
        if (error instanceof OpenAI.APIConnectionTimeoutError) return err({ kind: 'timeout', message: 'OpenAI timed out' });
        if (error instanceof OpenAI.APIError) return err({ kind: 'api', message: `OpenAI answered ${error.status ?? 'an error'}` });
        if (error instanceof ResponseTooLargeError) return err({ kind: 'malformed', message: `OpenAI's answer is longer than ${error.limitBytes} bytes` });
        // The SDK throws on JSON it cannot parse into the schema.
        return err({ kind: 'malformed', message: 'the model answer could not be parsed' });
      }
    },
  };
}
