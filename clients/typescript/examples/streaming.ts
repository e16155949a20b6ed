// Streams an answer to stdout. It is plain JavaScript too, so after `npm run build`, from this folder:
//   PLUTOS_API_KEY=... PLUTOS_MODEL=... node --input-type=module < examples/streaming.ts
import { APIError, PlutosAI } from '@plutos-ai/sdk';

const client = new PlutosAI({ environment: 'development' });

try {
  for await (const event of client.stream({
    input: 'Write a short story about a robot.',
    model: process.env.PLUTOS_MODEL ?? 'gpt-4',
    options: { maxTokens: 200 },
  })) {
    if (event.event === 'chunk') process.stdout.write(event.output);
    else console.log(`\nComplete! ${event.usage?.totalTokens} tokens, id ${event.id}`);
  }
} catch (error) {
  if (error instanceof APIError) console.error(`\n${error.code} (HTTP ${error.status}, request ${error.requestId}): ${error.message}`);
  else throw error;
}
