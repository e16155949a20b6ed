// Error envelopes map to typed errors carrying code, status, requestId and details.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  APIError,
  AuthenticationError,
  BadRequestError,
  ERROR_CODES,
  GatewayTimeoutError,
  InputTooLongError,
  InsufficientQuotaError,
  InternalServerError,
  InvalidModelError,
  InvalidParametersError,
  NotFoundError,
  PermissionDeniedError,
  PlutosAI,
  PlutosError,
  RateLimitError,
  ServiceUnavailableError,
  UpstreamError,
} from '@plutos-ai/sdk';

import { apiError, json, startServer } from './helpers.mjs';

const table = [
  ['invalid_api_key', 401, AuthenticationError],
  ['permission_denied', 403, PermissionDeniedError],
  ['not_found', 404, NotFoundError],
  ['invalid_parameters', 400, InvalidParametersError],
  ['invalid_model', 400, InvalidModelError],
  ['input_too_long', 400, InputTooLongError],
  ['rate_limit_exceeded', 429, RateLimitError],
  ['insufficient_quota', 429, InsufficientQuotaError],
  ['internal_error', 500, InternalServerError],
  ['upstream_error', 502, UpstreamError],
  ['service_unavailable', 503, ServiceUnavailableError],
  ['timeout', 504, GatewayTimeoutError],
];

describe('error mapping', () => {
  for (const [code, status, cls] of table) {
    test(`${status} ${code} -> ${cls.name}`, async () => {
      const srv = await startServer(apiError(status, code, `msg for ${code}`, { requestId: 'req_abc', details: { k: 1 } }));
      try {
        const client = new PlutosAI({ apiKey: 'k', baseUrl: srv.baseUrl, maxRetries: 0 });
        const err = await client.processData({ input: 'x', model: 'm' }).catch((e) => e);
        assert.ok(err instanceof cls, `got ${err?.constructor?.name}: ${err}`);
        assert.ok(err instanceof APIError);
        assert.ok(err instanceof PlutosError);
        assert.ok(err instanceof Error);
        assert.equal(err.name, cls.name);
        assert.equal(err.code, code);
        assert.equal(err.status, status);
        assert.equal(err.requestId, 'req_abc');
        assert.equal(err.message, `msg for ${code}`);
        assert.deepEqual(err.details, { k: 1 });
        assert.equal(ERROR_CODES[code].status, status);
      } finally {
        await srv.close();
      }
    });
  }

  test('the 400 codes share BadRequestError', () => {
    for (const cls of [InvalidParametersError, InvalidModelError, InputTooLongError]) {
      assert.ok(cls.prototype instanceof BadRequestError);
    }
  });

  test('the request id falls back to the X-Request-Id header', async () => {
    const srv = await startServer(json(404, { error: { code: 'not_found', message: 'nope' } }, { 'X-Request-Id': 'req_hdr' }));
    try {
      const err = await new PlutosAI({ apiKey: 'k', baseUrl: srv.baseUrl }).getProcess('p').catch((e) => e);
      assert.ok(err instanceof NotFoundError);
      assert.equal(err.requestId, 'req_hdr');
    } finally {
      await srv.close();
    }
  });

  test('an unknown code is mapped by status', async () => {
    const srv = await startServer(apiError(403, 'brand_new_code'), apiError(418, 'teapot'));
    try {
      const client = new PlutosAI({ apiKey: 'k', baseUrl: srv.baseUrl });
      const a = await client.listModels().catch((e) => e);
      assert.ok(a instanceof PermissionDeniedError);
      assert.equal(a.code, 'brand_new_code');
      const b = await client.listModels().catch((e) => e);
      assert.equal(b.constructor, APIError);
      assert.equal(b.status, 418);
      assert.equal(b.code, 'teapot');
    } finally {
      await srv.close();
    }
  });

  test('a non-JSON error body still gives a typed error', async () => {
    const srv = await startServer((_req, res) => {
      res.writeHead(502, { 'Content-Type': 'text/html' });
      res.end('<html>Bad Gateway</html>');
    });
    try {
      const err = await new PlutosAI({ apiKey: 'k', baseUrl: srv.baseUrl, maxRetries: 0 }).listModels().catch((e) => e);
      assert.ok(err instanceof UpstreamError);
      assert.equal(err.status, 502);
      assert.equal(err.code, 'http_502');
      assert.match(err.message, /Bad Gateway/);
    } finally {
      await srv.close();
    }
  });

  test('rate limit errors carry retryAfter from the Retry-After header', async () => {
    const srv = await startServer(apiError(429, 'rate_limit_exceeded', 'slow down', { details: { retryAfter: 60 } }, { 'Retry-After': '60' }));
    try {
      const err = await new PlutosAI({ apiKey: 'k', baseUrl: srv.baseUrl, maxRetries: 0 }).listModels().catch((e) => e);
      assert.ok(err instanceof RateLimitError);
      assert.equal(err.retryAfter, 60);
      assert.equal(err.details.retryAfter, 60);
      assert.equal(err.headers.get('retry-after'), '60');
    } finally {
      await srv.close();
    }
  });

  test('rate limit errors carry retryAfter from details when there is no header', async () => {
    const srv = await startServer(apiError(429, 'rate_limit_exceeded', 'slow down', { details: { retryAfter: 120 } }));
    try {
      const err = await new PlutosAI({ apiKey: 'k', baseUrl: srv.baseUrl }).listModels().catch((e) => e);
      assert.ok(err instanceof RateLimitError);
      assert.equal(err.retryAfter, 120);
    } finally {
      await srv.close();
    }
  });
});
