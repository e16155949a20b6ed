// The official openai npm package against PlutosAI's /openai/v1: a chat, a stream, a legacy
// completion, the model list and the typed errors. Prints one JSON object the Python test checks.
// PLUTOS_OPENAI_BASE_URL, PLUTOS_API_KEY and PLUTOS_MODEL come from tests/openai_clients_support.py.
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.PLUTOS_OPENAI_BASE_URL,
  apiKey: process.env.PLUTOS_API_KEY,
  maxRetries: 0,
});
const model = process.env.PLUTOS_MODEL;
const messages = [{ role: 'user', content: 'Say hi.' }];
const out = {};

const { data: chat, response } = await client.chat.completions
  .create({ model, messages, max_tokens: 6 })
  .withResponse();
out.chat = { id: chat.id, content: chat.choices[0].message.content, usage: chat.usage };
out.headers = {
  limit: response.headers.get('x-ratelimit-limit-requests'),
  requestId: response.headers.get('x-request-id'),
};

const stream = await client.chat.completions.create({
  model,
  messages,
  max_tokens: 6,
  stream: true,
  stream_options: { include_usage: true },
});
const deltas = [];
let usage = null;
let finish = null;
for await (const chunk of stream) {
  if (chunk.choices.length) {
    deltas.push(chunk.choices[0].delta.content ?? '');
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  if (chunk.usage) usage = chunk.usage;
}
out.stream = { text: deltas.join(''), finish, usage };

const completion = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 4 });
out.completion = { id: completion.id, text: completion.choices[0].text };

const models = [];
for await (const m of client.models.list()) models.push(m.id);
out.models = models;

async function errorOf(call) {
  try {
    await call();
    return null;
  } catch (err) {
    return { class: err.constructor.name, status: err.status, code: err.code, param: err.param ?? null };
  }
}
const badKey = new OpenAI({ baseURL: process.env.PLUTOS_OPENAI_BASE_URL, apiKey: 'pk_wrong', maxRetries: 0 });
out.errors = {
  badKey: await errorOf(() => badKey.chat.completions.create({ model, messages })),
  unknownModel: await errorOf(() => client.chat.completions.create({ model: 'no-such-model', messages })),
  missingModel: await errorOf(() => client.models.retrieve('no-such-model')),
};
console.log(JSON.stringify(out));
