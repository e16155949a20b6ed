// A tiny local HTTP server on 127.0.0.1 for unit tests: each request is recorded and answered
// by the next handler in the list (the last one repeats).
import { createServer } from 'node:http';

export async function startServer(...handlers) {
  const requests = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const record = { method: req.method, url: req.url, headers: req.headers, body, json: body ? safeJson(body) : undefined, at: Date.now() };
      requests.push(record);
      const handler = handlers[Math.min(requests.length - 1, handlers.length - 1)];
      Promise.resolve(handler(req, res, record)).catch((err) => {
        res.destroy(err);
      });
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    server,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export function json(status, body, headers = {}) {
  return (_req, res) => {
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
}

export function apiError(status, code, message = code, extra = {}, headers = {}) {
  return json(status, { error: { code, message, details: extra.details ?? {}, requestId: extra.requestId ?? 'req_test' } }, headers);
}

/** Answers with an SSE body written frame by frame. */
export function sse(frames, { status = 200, headers = {}, delayMs = 0 } = {}) {
  return async (_req, res) => {
    res.writeHead(status, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', ...headers });
    for (const frame of frames) {
      res.write(frame);
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    }
    res.end();
  };
}

export function frame(event, data) {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** Client options that keep retry backoff short in tests. */
export const fastRetry = { initialRetryDelay: 10, maxRetryDelay: 40 };
