// SSE parsing and POST /stream.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import {
  APIConnectionError,
  AuthenticationError,
  PlutosAI,
  RateLimitError,
  UpstreamError,
  parseServerSentEvents,
} from '@plutos-ai/sdk';

import { apiError, fastRetry, frame, sse, startServer } from './helpers.mjs';

async function* bytes(...parts) {
  for (const p of parts) yield typeof p === 'string' ? new TextEncoder().encode(p) : p;
}

async function collect(iterable) {
  const out = [];
  for await (const x of iterable) out.push(x);
  return out;
}

describe('parseServerSentEvents', () => {
  test('parses named events and skips comments', async () => {
    const events = await collect(
      parseServerSentEvents(bytes(': keep-alive\n\n', 'event: chunk\ndata: {"a":1}\n\n', ':ping\n', 'event: complete\ndata: {"b":2}\n\n')),
    );
    assert.deepEqual(events, [
      { event: 'chunk', data: '{"a":1}' },
      { event: 'complete', data: '{"b":2}' },
    ]);
  });

  test('handles frames split at every byte, multi-byte UTF-8 included', async () => {
    const text = 'event: chunk\ndata: {"output":"héllo — 世界 🌍"}\n\nevent: complete\ndata: {"output":"x"}\n\n';
    const all = new TextEncoder().encode(text);
    const parts = [...all].map((b) => new Uint8Array([b]));
    const events = await collect(parseServerSentEvents(bytes(...parts)));
    assert.equal(events.length, 2);
    assert.equal(JSON.parse(events[0].data).output, 'héllo — 世界 🌍');
  });

  test('accepts CRLF and CR line endings, even split between chunks', async () => {
    const events = await collect(parseServerSentEvents(bytes('event: a\r', '\ndata: 1\r\n\r', '\nevent: b\rdata: 2\r\r')));
    assert.deepEqual(events, [
      { event: 'a', data: '1' },
      { event: 'b', data: '2' },
    ]);
  });

  test('joins multiple data lines and defaults the event name to "message"', async () => {
    const events = await collect(parseServerSentEvents(bytes('data: one\ndata:two\n\n')));
    assert.deepEqual(events, [{ event: 'message', data: 'one\ntwo' }]);
  });

  test('discards a last event that lacks the final blank line (as the standard says)', async () => {
    const events = await collect(parseServerSentEvents(bytes('event: complete\ndata: {}')));
    assert.deepEqual(events, []);
  });

  // The shared corpus: the gateway's upstream reader and every SDK parse these streams alike.
  const corpus = JSON.parse(readFileSync(new URL('../../sse_corpus.json', import.meta.url), 'utf8')).cases;
  const parse = async (parts) =>
    (await collect(parseServerSentEvents(bytes(...parts)))).map((e) => ({ event: e.event, data: e.data }));
  for (const c of corpus) {
    test(`corpus: ${c.name}`, async () => {
      const raw = new TextEncoder().encode(c.stream);
      assert.deepEqual(await parse([raw]), c.events);
      for (let cut = 1; cut < raw.length; cut++) {
        assert.deepEqual(await parse([raw.slice(0, cut), raw.slice(cut)]), c.events, `cut at ${cut}`);
      }
      assert.deepEqual(await parse([...raw].map((b) => new Uint8Array([b]))), c.events);
    });
  }
});

const chunks = [
  frame('chunk', { chunk: 'partial', output: 'Hello' }),
  ': keep-alive\n\n',
  frame('chunk', { chunk: 'partial', output: ' world' }),
  frame('chunk', { chunk: 'partial', output: '!' }),
];
const complete = frame('complete', {
  chunk: 'final',
  output: 'Hello world!',
  usage: { promptTokens: 3, completionTokens: 3, totalTokens: 6 },
  id: 'proc_0123456789abcdef',
  model: 'm',
  createdAt: '2024-01-01T12:00:00Z',
  processingTime: 12,
});

async function withServer(handlers, fn) {
  const srv = await startServer(...handlers);
  try {
    return await fn(srv, new PlutosAI({ apiKey: 'k', baseUrl: srv.baseUrl, ...fastRetry }));
  } finally {
    await srv.close();
  }
}

describe('client.stream', () => {
  test('yields the chunks, then the complete event', () =>
    withServer([sse([...chunks, complete], { delayMs: 5 })], async (srv, client) => {
      const events = await collect(client.stream({ input: 'hi', model: 'm', options: { maxTokens: 5 } }));
      assert.deepEqual(
        events.map((e) => [e.event, e.chunk, e.output]),
        [
          ['chunk', 'partial', 'Hello'],
          ['chunk', 'partial', ' world'],
          ['chunk', 'partial', '!'],
          ['complete', 'final', 'Hello world!'],
        ],
      );
      const last = events.at(-1);
      assert.equal(last.id, 'proc_0123456789abcdef');
      assert.deepEqual(last.usage, { promptTokens: 3, completionTokens: 3, totalTokens: 6 });
      const req = srv.requests[0];
      assert.equal(req.method, 'POST');
      assert.equal(req.url, '/v1/stream');
      assert.equal(req.headers.accept, 'text/event-stream');
      assert.equal(req.headers.authorization, 'Bearer k');
      assert.deepEqual(req.json, { input: 'hi', model: 'm', options: { maxTokens: 5 } });
    }));

  test('works with `await` before the stream too, and final() returns the complete event', () =>
    withServer([sse([...chunks, complete])], async (_srv, client) => {
      const final = await (await client.stream({ input: 'hi', model: 'm' })).final();
      assert.equal(final.output, 'Hello world!');
    }));

  test('an error before the stream starts throws the typed error', () =>
    withServer([apiError(401, 'invalid_api_key', 'bad key')], async (_srv, client) => {
      await assert.rejects(collect(client.stream({ input: 'hi', model: 'm' })), AuthenticationError);
    }));

  test('a retryable error before the stream starts is retried', () =>
    withServer([apiError(503, 'service_unavailable'), sse([...chunks, complete])], async (srv, client) => {
      const events = await collect(client.stream({ input: 'hi', model: 'm' }));
      assert.equal(events.length, 4);
      assert.equal(srv.requests.length, 2);
    }));

  test('an `event: error` frame mid-stream throws the typed error after the earlier chunks', () =>
    withServer(
      [
        sse([
          chunks[0],
          frame('error', { error: { code: 'upstream_error', message: 'backend died', details: {}, requestId: 'req_s' } }),
        ]),
      ],
      async (srv, client) => {
        const seen = [];
        const err = await (async () => {
          for await (const e of client.stream({ input: 'hi', model: 'm' })) seen.push(e);
        })().catch((e) => e);
        assert.equal(seen.length, 1);
        assert.ok(err instanceof UpstreamError, String(err));
        assert.equal(err.code, 'upstream_error');
        assert.equal(err.status, 502);
        assert.equal(err.requestId, 'req_s');
        assert.equal(err.message, 'backend died');
        assert.equal(srv.requests.length, 1, 'errors after the stream started are not retried');
      },
    ));

  test('a rate-limit `event: error` carries retryAfter', () =>
    withServer([sse([frame('error', { error: { code: 'rate_limit_exceeded', message: 'slow', details: { retryAfter: 7 } } })])], async (_s, client) => {
      const err = await collect(client.stream({ input: 'hi', model: 'm' })).catch((e) => e);
      assert.ok(err instanceof RateLimitError);
      assert.equal(err.retryAfter, 7);
    }));

  test('a stream that ends without its complete event throws APIConnectionError', () =>
    withServer([sse(chunks)], async (_s, client) => {
      await assert.rejects(collect(client.stream({ input: 'hi', model: 'm' })), APIConnectionError);
    }));

  test('a connection dropped mid-stream throws APIConnectionError', () =>
    withServer(
      [
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write(chunks[0]);
          await new Promise((r) => setTimeout(r, 20));
          res.destroy();
        },
      ],
      async (_s, client) => {
        const seen = [];
        const err = await (async () => {
          for await (const e of client.stream({ input: 'hi', model: 'm' })) seen.push(e);
        })().catch((e) => e);
        assert.equal(seen.length, 1);
        assert.ok(err instanceof APIConnectionError, String(err));
      },
    ));

  test('leaving the loop early closes the connection', async () => {
    let serverSawClose;
    const closed = new Promise((r) => (serverSawClose = r));
    await withServer(
      [
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.on('close', () => serverSawClose(true));
          for (let i = 0; i < 500 && !res.destroyed; i++) {
            res.write(frame('chunk', { chunk: 'partial', output: `${i}` }));
            await new Promise((r) => setTimeout(r, 10));
          }
          res.end();
        },
      ],
      async (_srv, client) => {
        let n = 0;
        for await (const _ of client.stream({ input: 'hi', model: 'm' })) {
          if (++n === 3) break;
        }
        assert.equal(n, 3);
        const result = await Promise.race([closed, new Promise((r) => setTimeout(r, 2000, false))]);
        assert.equal(result, true, 'the server saw the connection close');
      },
    );
  });

  test('a stream can be iterated only once', () =>
    withServer([sse([...chunks, complete])], async (_s, client) => {
      const s = client.stream({ input: 'hi', model: 'm' });
      await collect(s);
      assert.throws(() => s[Symbol.asyncIterator](), /only once/);
    }));

  test('abort() ends a running iteration', () =>
    withServer([sse([...chunks, ...chunks, ...chunks, complete], { delayMs: 30 })], async (_s, client) => {
      const s = client.stream({ input: 'hi', model: 'm' });
      const seen = [];
      const err = await (async () => {
        for await (const e of s) {
          seen.push(e);
          if (seen.length === 2) s.abort();
        }
      })().catch((e) => e);
      assert.ok(err instanceof APIConnectionError, String(err));
      assert.ok(seen.length < 10);
    }));

  test('aborting the signal mid-stream rejects with the abort reason', () =>
    withServer([sse([...chunks, ...chunks, ...chunks, complete], { delayMs: 30 })], async (_s, client) => {
      const controller = new AbortController();
      const seen = [];
      const err = await (async () => {
        for await (const e of client.stream({ input: 'hi', model: 'm' }, { signal: controller.signal })) {
          seen.push(e);
          if (seen.length === 2) controller.abort();
        }
      })().catch((e) => e);
      assert.equal(err.name, 'AbortError');
      assert.equal(seen.length, 2);
    }));

  test('the timeout covers the wait for headers only, not the whole stream', () =>
    withServer([sse([...chunks, complete], { delayMs: 80 })], async (_s, client) => {
      const events = await collect(client.stream({ input: 'hi', model: 'm' }, { timeout: 40 }));
      assert.equal(events.length, 4);
    }));
});
