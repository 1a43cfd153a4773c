import { createExecutionContext, createScheduledController, waitOnExecutionContext } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import worker from '../src/index.ts';
import type { Env } from '../src/env.ts';
import { VERBATIM_PREFIX } from '../../src/machines/intervention.ts';
import { postJson, rows, testEnv } from './helpers.ts';

afterEach(() => vi.restoreAllMocks());

const completion = (decision: object) => ({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1_700_000_000,
  model: 'gpt-4o-mini-2024-07-18',
  choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: JSON.stringify(decision), refusal: null } }],
  usage: { prompt_tokens: 120, completion_tokens: 30, total_tokens: 150 },
});

/** Outbound fetch of the Worker, answered here: OpenAI's chat completions and Poke's webhook. */
function mockUpstreams(decision: object) {
  const calls: Array<{ url: string; headers: Headers; body: unknown }> = [];
  const real = globalThis.fetch;
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
    const request = new Request(input, init);
    const url = request.url;
    if (!url.startsWith('https://api.openai.com/') && !url.startsWith('https://poke.test/')) return real(input, init);
    calls.push({ url, headers: request.headers, body: await request.json() });
    if (url.startsWith('https://api.openai.com/')) return Response.json(completion(decision));
    return Response.json({ success: true });
  });
  return calls;
}

async function runCron(scheduledTime = Date.now()) {
  const ctx = createExecutionContext();
  await worker.scheduled(createScheduledController({ scheduledTime, cron: '* * * * *' }), testEnv as unknown as Env, ctx);
  await waitOnExecutionContext(ctx);
}

describe('cron: the intervention tick against D1 (SPEC §6, §8)', () => {
  it('asks OpenAI about the last minute, sends the nudge through Poke and records the intervention', async () => {
    await postJson('/biometrics/upload', { windowId: 'cron-bio-1', timestamp: Date.now(), durationMs: 60_000, hr_mean: 128 });
    await postJson('/captions/upload', { windowId: 'cron-cap-1', timestamp: Date.now(), chunkStartS: 0, chunkEndS: 1, caption: 'A person runs up stairs.' });
    const calls = mockUpstreams({ decision: 'yes', reasoning: 'heart rate high while climbing', nudge: 'Slow down and breathe.' });
    const started = Date.now();
    await runCron();

    const [openai, poke] = calls;
    expect(openai!.url).toBe('https://api.openai.com/v1/chat/completions');
    expect(openai!.headers.get('authorization')).toBe('Bearer sk-worker-openai');
    expect(JSON.stringify(openai!.body)).toContain('A person runs up stairs.');
    expect(poke!.url).toBe('https://poke.test/api/v1/inbound-sms/webhook');
    expect(poke!.headers.get('authorization')).toBe('Bearer pk-worker-secret');
    expect(poke!.body).toEqual({ message: `${VERBATIM_PREFIX}Slow down and breathe.` });

    const [row] = await rows<Record<string, unknown>>('SELECT * FROM interventions ORDER BY id DESC LIMIT 1');
    const [bio] = await rows<{ id: number }>("SELECT id FROM biometric_windows WHERE window_id = 'cron-bio-1'");
    const [cap] = await rows<{ id: number }>("SELECT id FROM caption_windows WHERE window_id = 'cron-cap-1'");
    expect(row).toMatchObject({
      decision: 'yes',
      reasoning: 'heart rate high while climbing',
      nudge: 'Slow down and breathe.',
      model: 'gpt-4o-mini-2024-07-18',
      total_tokens: 150,
      poke_message: `${VERBATIM_PREFIX}Slow down and breathe.`,
    });
    expect(JSON.parse(String(row!.biometric_ids))).toContain(bio!.id);
    expect(JSON.parse(String(row!.caption_ids))).toContain(cap!.id);
    expect(Number(row!.poke_sent_at)).toBeGreaterThanOrEqual(started);
  });

  it('runs one tick per minute however many times the cron fires for it (finding 7)', async () => {
    const at = Date.now() + 2 * 86_400_000; // a minute of its own, past every other test's cooldown
    await postJson('/biometrics/upload', { windowId: 'cron-twice-1', timestamp: at, durationMs: 60_000, hr_mean: 131 });
    await testEnv.DB.prepare("UPDATE biometric_windows SET created_at = ? WHERE window_id = 'cron-twice-1'").bind(at - 10_000).run();
    const calls = mockUpstreams({ decision: 'yes', reasoning: 'high', nudge: 'Breathe out slowly.' });
    await Promise.all([runCron(at), runCron(at + 1)]);
    expect(calls.filter((c) => c.url.startsWith('https://api.openai.com/'))).toHaveLength(1);
    expect(calls.filter((c) => c.url.startsWith('https://poke.test/'))).toHaveLength(1);
    // Leave no future rows for the other tests' ticks to find.
    await testEnv.DB.batch([
      testEnv.DB.prepare("DELETE FROM biometric_windows WHERE window_id = 'cron-twice-1'"),
      testEnv.DB.prepare('DELETE FROM interventions WHERE created_at >= ?').bind(at - 60_000),
      testEnv.DB.prepare('DELETE FROM intervention_ticks WHERE period_start >= ?').bind(at - 60_000),
    ]);
  });

  it('makes no OpenAI call and records nothing when the last minute has no data', async () => {
    const calls = mockUpstreams({ decision: 'no', reasoning: 'n/a', nudge: null });
    const before = await rows('SELECT COUNT(*) AS n FROM interventions');
    await runCron(Date.now() + 3_600_000); // an hour ahead: nothing was created in the minute before
    expect(calls).toEqual([]);
    expect(await rows('SELECT COUNT(*) AS n FROM interventions')).toEqual(before);
  });
});
