// The API reference's JavaScript/TypeScript example, exactly as written there.
// test/live.test.mjs runs it against a live server (with its key and model swapped in).
import { PlutosAI } from '@plutos-ai/sdk';

const client = new PlutosAI({
  apiKey: 'your-api-key',
  environment: 'production'
});

// Process data
try {
  const result = await client.processData({
    input: 'What is the capital of France?',
    model: 'gpt-4',
    options: {
      temperature: 0.7,
      maxTokens: 100
    }
  });
  
  console.log(result.output);
} catch (error) {
  console.error('Error:', error.message);
}
