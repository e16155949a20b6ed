// Compiled (not run) by `npm test`: pins the public types of the package.
import {
  APIError,
  PlutosAI,
  RateLimitError,
  type BatchResponse,
  type GetProcessResponse,
  type GetUsageResponse,
  type ListModelsResponse,
  type ProcessResponse,
  type StreamEvent,
} from '@plutos-ai/sdk';

export async function surface(client: PlutosAI): Promise<void> {
  const r: ProcessResponse = await client.processData({ input: 'x', model: 'm', options: { temperature: 0, stop: ['\n'] } });
  const n: number = r.usage?.totalTokens ?? 0;
  const p: GetProcessResponse = await client.getProcess(r.id);
  const s: string = p.status;
  const b: BatchResponse = await client.batch({ inputs: ['a'], model: 'm' });
  const e: string | undefined = b.results[0]?.error?.code;
  for await (const ev of client.stream({ input: 'x', model: 'm' })) {
    const typed: StreamEvent = ev;
    if (ev.event === 'chunk') ev.output.toUpperCase();
    else ev.usage?.completionTokens.toFixed();
    void typed;
  }
  const m: ListModelsResponse = await client.listModels();
  const withRaw: { data: ProcessResponse; response: Response } = await client
    .processData({ input: 'x', model: 'm' })
    .withResponse();
  const remaining: string | null = withRaw.response.headers.get('x-ratelimit-remaining-requests');
  void remaining;
  const price: number | undefined = m.models[0]?.pricing?.inputTokens;
  const u: GetUsageResponse = await client.getUsage({ startDate: '2024-01-01' });
  const byModel: Record<string, number> | undefined = u.usage?.requestsByModel;
  const wh = await client.createWebhook({ url: 'https://example.test', events: ['processing.completed'] });
  const hasSecret: boolean = wh.hasSecret;
  const generatedSecret: string | undefined = wh.secret;
  const list = await client.listWebhooks();
  const deleted: boolean = (await client.deleteWebhook(list.webhooks[0]!.id)).deleted;
  try {
    await client.listModels({ timeout: 1000, maxRetries: 0 });
  } catch (err) {
    if (err instanceof RateLimitError) {
      const wait: number | undefined = err.retryAfter;
      void wait;
    }
    if (err instanceof APIError) {
      const fields: [string, number, string | undefined] = [err.code, err.status, err.requestId];
      void fields;
    }
  }
  void [n, s, e, price, byModel, hasSecret, generatedSecret, deleted];
}
