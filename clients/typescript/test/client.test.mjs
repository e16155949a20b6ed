// Request shapes and client configuration.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, afterEach, before, describe, test } from 'node:test';

import { ENVIRONMENTS, PlutosAI, PlutosError } from '@plutos-ai/sdk';

import { json, startServer } from './helpers.mjs';

describe('requests', () => {
  let srv;
  let client;
  before(async () => {
    srv = await startServer((req, res, rec) => json(200, { echo: { method: rec.method, url: rec.url } })(req, res));
    client = new PlutosAI({ apiKey: 'sk-test', baseUrl: srv.baseUrl });
  });
  after(() => srv.close());

  const last = () => srv.requests.at(-1);

  test('processData POSTs the request body to /process with the bearer key', async () => {
    const req = { input: 'What is the capital of France?', model: 'm', options: { temperature: 0.7, maxTokens: 100 } };
    await client.processData(req);
    const r = last();
    assert.equal(r.method, 'POST');
    assert.equal(r.url, '/v1/process');
    assert.equal(r.headers.authorization, 'Bearer sk-test');
    assert.equal(r.headers['content-type'], 'application/json');
    assert.match(r.headers['user-agent'], /^plutos-ai-sdk-typescript\//);
    assert.deepEqual(r.json, req);
  });

  test('getProcess GETs /process/{id} with the id escaped', async () => {
    await client.getProcess('proc_1/../x');
    assert.equal(last().method, 'GET');
    assert.equal(last().url, '/v1/process/proc_1%2F..%2Fx');
  });

  test('batch POSTs to /batch', async () => {
    await client.batch({ inputs: ['a', 'b'], model: 'm' });
    assert.equal(last().url, '/v1/batch');
    assert.deepEqual(last().json, { inputs: ['a', 'b'], model: 'm' });
  });

  test('listModels GETs /models', async () => {
    await client.listModels();
    assert.equal(last().method, 'GET');
    assert.equal(last().url, '/v1/models');
    assert.equal(last().body, '');
  });

  test('getUsage sends start_date and end_date', async () => {
    await client.getUsage({ startDate: '2024-01-01', endDate: '2024-01-31' });
    assert.equal(last().url, '/v1/usage?start_date=2024-01-01&end_date=2024-01-31');
    await client.getUsage();
    assert.equal(last().url, '/v1/usage');
    await client.getUsage({ endDate: '2024-02-01' });
    assert.equal(last().url, '/v1/usage?end_date=2024-02-01');
  });

  test('webhooks: create, list, delete', async () => {
    await client.createWebhook({ url: 'https://example.test/hook', events: ['processing.completed'], secret: 's' });
    assert.equal(last().method, 'POST');
    assert.equal(last().url, '/v1/webhooks');
    assert.deepEqual(last().json, { url: 'https://example.test/hook', events: ['processing.completed'], secret: 's' });
    await client.listWebhooks();
    assert.equal(last().method, 'GET');
    assert.equal(last().url, '/v1/webhooks');
    await client.deleteWebhook('wh_0123456789abcdef');
    assert.equal(last().method, 'DELETE');
    assert.equal(last().url, '/v1/webhooks/wh_0123456789abcdef');
  });

  test('the parsed JSON body is returned', async () => {
    const res = await client.listModels();
    assert.deepEqual(res, { echo: { method: 'GET', url: '/v1/models' } });
  });

  test('per-call headers are sent, but cannot replace Authorization', async () => {
    await client.listModels({ headers: { 'X-Trace': 't1', Authorization: 'Bearer other' } });
    assert.equal(last().headers['x-trace'], 't1');
    assert.equal(last().headers.authorization, 'Bearer sk-test');
    await client.listModels({ headers: { authorization: 'Bearer other' } });
    assert.equal(last().headers.authorization, 'Bearer sk-test');
  });
});

describe('configuration', () => {
  const saved = { key: process.env.PLUTOS_API_KEY, url: process.env.PLUTOS_BASE_URL };
  afterEach(() => {
    for (const [name, value] of [['PLUTOS_API_KEY', saved.key], ['PLUTOS_BASE_URL', saved.url]]) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  test('environments map to the reference base URLs', () => {
    delete process.env.PLUTOS_BASE_URL;
    assert.equal(new PlutosAI({ apiKey: 'k', environment: 'production' }).baseUrl, 'https://api.plutos-ai.com/v1');
    assert.equal(new PlutosAI({ apiKey: 'k', environment: 'staging' }).baseUrl, 'https://staging-api.plutos-ai.com/v1');
    assert.equal(new PlutosAI({ apiKey: 'k', environment: 'development' }).baseUrl, 'http://localhost:3000/v1');
    assert.equal(new PlutosAI({ apiKey: 'k' }).baseUrl, ENVIRONMENTS.production);
  });

  test('PLUTOS_BASE_URL overrides the environment, baseUrl overrides both', () => {
    process.env.PLUTOS_BASE_URL = 'http://127.0.0.1:9/v1/';
    assert.equal(new PlutosAI({ apiKey: 'k', environment: 'production' }).baseUrl, 'http://127.0.0.1:9/v1');
    assert.equal(new PlutosAI({ apiKey: 'k', baseUrl: 'http://h:1/v1' }).baseUrl, 'http://h:1/v1');
  });

  test('apiKey falls back to PLUTOS_API_KEY', async () => {
    const srv = await startServer(json(200, {}));
    try {
      process.env.PLUTOS_API_KEY = 'from-env';
      await new PlutosAI({ baseUrl: srv.baseUrl }).listModels();
      assert.equal(srv.requests[0].headers.authorization, 'Bearer from-env');
    } finally {
      await srv.close();
    }
  });

  test('a missing API key throws at construction', () => {
    delete process.env.PLUTOS_API_KEY;
    assert.throws(() => new PlutosAI({}), (e) => e instanceof PlutosError && e.code === 'missing_api_key');
  });

  test('an unknown environment throws at construction', () => {
    assert.throws(() => new PlutosAI({ apiKey: 'k', environment: 'prod' }), /Unknown environment/);
  });
});

test('the CommonJS build exports the same API', () => {
  const require = createRequire(import.meta.url);
  const cjs = require('@plutos-ai/sdk');
  assert.equal(typeof cjs.PlutosAI, 'function');
  assert.equal(typeof cjs.RateLimitError, 'function');
  assert.equal(new cjs.PlutosAI({ apiKey: 'k', baseUrl: 'http://x/v1' }).baseUrl, 'http://x/v1');
});

describe('results', () => {
  test('carry the response X-Request-Id as a non-enumerable _requestId', async () => {
    const srv = await startServer(json(200, { models: [] }, { 'X-Request-Id': 'req_abc' }));
    try {
      const client = new PlutosAI({ apiKey: 'sk-test', baseUrl: srv.baseUrl });
      const result = await client.listModels();
      assert.equal(result._requestId, 'req_abc');
      assert.deepEqual(Object.keys(result), ['models']);
      assert.equal(JSON.stringify(result), '{"models":[]}');
    } finally {
      srv.close();
    }
  });

  test('withResponse() gives the data and the raw Response with its headers; the request is sent once', async () => {
    const headers = { 'X-Request-Id': 'req_raw', 'x-ratelimit-remaining-requests': '59' };
    const srv = await startServer(json(200, { key: { id: 'key_1', name: 'k' } }, headers));
    try {
      const client = new PlutosAI({ apiKey: 'sk-test', baseUrl: srv.baseUrl });
      const { data, response } = await client.listModels().withResponse();
      assert.deepEqual(data, { key: { id: 'key_1', name: 'k' } });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('x-request-id'), 'req_raw');
      assert.equal(response.headers.get('x-ratelimit-remaining-requests'), '59');
      // Methods that unwrap (getKey returns the key) keep the response.
      const key = await client.getKey('key_1').withResponse();
      assert.equal(key.data.id, 'key_1');
      assert.equal(key.response.headers.get('x-request-id'), 'req_raw');
      const raw = await client.getProcess('p').asResponse();
      assert.equal(raw.status, 200);
      // Awaiting and withResponse() on one call share one request.
      const before = srv.requests.length;
      const call = client.listModels();
      const [plain, both] = await Promise.all([call, call.withResponse()]);
      assert.equal(plain, both.data);
      assert.equal(srv.requests.length, before + 1);
    } finally {
      srv.close();
    }
  });

  test('withResponse() rejects with the API error like awaiting does', async () => {
    const srv = await startServer(json(404, { error: { code: 'not_found', message: 'nope', requestId: 'req_x' } }));
    try {
      const client = new PlutosAI({ apiKey: 'sk-test', baseUrl: srv.baseUrl, maxRetries: 0 });
      await assert.rejects(client.getProcess('p').withResponse(), (e) => e instanceof PlutosError && e.status === 404);
      await assert.rejects(client.getProcess('p'), (e) => e instanceof PlutosError && e.status === 404);
    } finally {
      srv.close();
    }
  });
});
