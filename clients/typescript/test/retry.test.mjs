// Retries: which failures, how often, how long between attempts.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, test } from 'node:test';

import {
  APIConnectionError,
  APITimeoutError,
  AuthenticationError,
  InsufficientQuotaError,
  InternalServerError,
  InvalidParametersError,
  PlutosAI,
  RateLimitError,
  ServiceUnavailableError,
} from '@plutos-ai/sdk';

import { apiError, fastRetry, json, startServer } from './helpers.mjs';

const ok = json(200, { id: 'proc_0123456789abcdef', output: 'fine' });

async function withServer(handlers, fn) {
  const srv = await startServer(...handlers);
  try {
    return await fn(srv, new PlutosAI({ apiKey: 'k', baseUrl: srv.baseUrl, ...fastRetry }));
  } finally {
    await srv.close();
  }
}

describe('retries', () => {
  for (const [status, code] of [
    [429, 'rate_limit_exceeded'],
    [502, 'upstream_error'],
    [503, 'service_unavailable'],
    [504, 'timeout'],
  ]) {
    test(`${status} ${code} is retried`, () =>
      withServer([apiError(status, code), ok], async (srv, client) => {
        const res = await client.processData({ input: 'x', model: 'm' });
        assert.equal(res.output, 'fine');
        assert.equal(srv.requests.length, 2);
        assert.deepEqual(srv.requests[1].json, srv.requests[0].json, 'the same body is resent');
      }));
  }

  for (const [status, code, cls] of [
    [400, 'invalid_parameters', InvalidParametersError],
    [401, 'invalid_api_key', AuthenticationError],
    [429, 'insufficient_quota', InsufficientQuotaError],
    [500, 'internal_error', InternalServerError],
  ]) {
    test(`${status} ${code} is not retried`, () =>
      withServer([apiError(status, code), ok], async (srv, client) => {
        await assert.rejects(client.processData({ input: 'x', model: 'm' }), cls);
        assert.equal(srv.requests.length, 1);
      }));
  }

  test('gives up after maxRetries and throws the last error', () =>
    withServer([apiError(503, 'service_unavailable')], async (srv, client) => {
      await assert.rejects(client.listModels(), ServiceUnavailableError);
      assert.equal(srv.requests.length, 3, 'default: 1 attempt + 2 retries');
    }));

  test('maxRetries is configurable per client and per call', () =>
    withServer([apiError(503, 'service_unavailable')], async (srv) => {
      const client = new PlutosAI({ apiKey: 'k', baseUrl: srv.baseUrl, maxRetries: 4, ...fastRetry });
      await assert.rejects(client.listModels(), ServiceUnavailableError);
      assert.equal(srv.requests.length, 5);
      await assert.rejects(client.listModels({ maxRetries: 0 }), ServiceUnavailableError);
      assert.equal(srv.requests.length, 6);
    }));

  test('backoff grows exponentially between attempts', () =>
    withServer([apiError(503, 'service_unavailable')], async (srv) => {
      const client = new PlutosAI({ apiKey: 'k', baseUrl: srv.baseUrl, maxRetries: 3, initialRetryDelay: 100, maxRetryDelay: 10_000 });
      await assert.rejects(client.listModels(), ServiceUnavailableError);
      const gaps = srv.requests.slice(1).map((r, i) => r.at - srv.requests[i].at);
      // Equal jitter: retry n waits between 100*2^n/2 and 100*2^n ms.
      assert.ok(gaps[0] >= 45, `gap ${gaps[0]}`);
      assert.ok(gaps[1] >= 95, `gap ${gaps[1]}`);
      assert.ok(gaps[2] >= 195, `gap ${gaps[2]}`);
    }));

  test('Retry-After is honoured', () =>
    withServer(
      [apiError(429, 'rate_limit_exceeded', 'wait', { details: { retryAfter: 1 } }, { 'Retry-After': '1' }), ok],
      async (srv, client) => {
        const res = await client.processData({ input: 'x', model: 'm' });
        assert.equal(res.output, 'fine');
        const gap = srv.requests[1].at - srv.requests[0].at;
        assert.ok(gap >= 950, `waited only ${gap} ms`);
      },
    ));

  test('details.retryAfter is honoured when there is no header', () =>
    withServer([apiError(503, 'service_unavailable', 'busy', { details: { retryAfter: 0.5 } }), ok], async (srv, client) => {
      await client.listModels();
      const gap = srv.requests[1].at - srv.requests[0].at;
      assert.ok(gap >= 450, `waited only ${gap} ms`);
    }));

  test('a Retry-After longer than maxRetryAfter is thrown, not waited for', () =>
    withServer([apiError(429, 'rate_limit_exceeded', 'wait', {}, { 'Retry-After': '3600' }), ok], async (srv, client) => {
      const err = await client.listModels().catch((e) => e);
      assert.ok(err instanceof RateLimitError);
      assert.equal(err.retryAfter, 3600);
      assert.equal(srv.requests.length, 1);
    }));

  test('a dropped connection is retried', () =>
    withServer([(req) => req.socket.destroy(), ok], async (srv, client) => {
      const res = await client.listModels();
      assert.equal(res.output, 'fine');
      assert.equal(srv.requests.length, 2);
    }));

  test('a refused connection ends in APIConnectionError after the retries', async () => {
    // Reserve a port, then close it so nothing listens there.
    const probe = createServer();
    await new Promise((r) => probe.listen(0, '127.0.0.1', r));
    const { port } = probe.address();
    await new Promise((r) => probe.close(r));
    const client = new PlutosAI({ apiKey: 'k', baseUrl: `http://127.0.0.1:${port}/v1`, ...fastRetry });
    const err = await client.listModels().catch((e) => e);
    assert.ok(err instanceof APIConnectionError, String(err));
    assert.equal(err.code, 'connection_error');
    assert.equal(err.status, undefined);
  });

  test('a slow response times out with APITimeoutError, and is retried', () =>
    withServer([() => {}, ok], async (srv) => {
      const client = new PlutosAI({ apiKey: 'k', baseUrl: srv.baseUrl, timeout: 200, ...fastRetry });
      const res = await client.listModels();
      assert.equal(res.output, 'fine');
      assert.equal(srv.requests.length, 2);
    }));

  test('timeouts throw APITimeoutError when retries run out', () =>
    withServer([() => {}], async (srv) => {
      const client = new PlutosAI({ apiKey: 'k', baseUrl: srv.baseUrl, timeout: 100, maxRetries: 1, ...fastRetry });
      const err = await client.listModels().catch((e) => e);
      assert.ok(err instanceof APITimeoutError, String(err));
      assert.ok(err instanceof APIConnectionError);
      assert.equal(srv.requests.length, 2);
    }));

  test('aborting through the signal stops at once, without retries', () =>
    withServer([() => {}], async (srv, client) => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      const err = await client.listModels({ signal: controller.signal }).catch((e) => e);
      assert.equal(err.name, 'AbortError');
      assert.equal(srv.requests.length, 1);
    }));

  test('aborting during the backoff stops the retries', () =>
    withServer([apiError(503, 'service_unavailable', 'busy', {}, { 'Retry-After': '5' })], async (srv, client) => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 200);
      const started = Date.now();
      const err = await client.listModels({ signal: controller.signal }).catch((e) => e);
      assert.equal(err.name, 'AbortError');
      assert.ok(Date.now() - started < 2000);
      assert.equal(srv.requests.length, 1);
    }));
});
