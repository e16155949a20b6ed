// The public REST API, called with the signed-in key. No cookies, no private endpoints.

const STORAGE_KEY = 'plutos.apiKey';

export const session = {
  get key() {
    return sessionStorage.getItem(STORAGE_KEY);
  },
  signIn(key) {
    sessionStorage.setItem(STORAGE_KEY, key);
  },
  signOut() {
    sessionStorage.removeItem(STORAGE_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, code, message, requestId, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.details = details;
  }

  /** The route itself is missing (this server has no such endpoint), not a missing record. */
  get missingRoute() {
    return this.status === 404 && this.code === 'not_found' && /^No route for /.test(this.message);
  }
}

function errorFrom(res, data) {
  const e = data && typeof data === 'object' ? data.error : null;
  return new ApiError(
    res.status,
    (e && e.code) || `http_${res.status}`,
    (e && e.message) || `The server answered HTTP ${res.status}.`,
    (e && e.requestId) || res.headers.get('X-Request-Id'),
    e && e.details,
  );
}

function url(path, query) {
  const u = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, String(v));
  }
  return u;
}

async function send(method, path, { query, body, signal, key, accept } = {}) {
  const headers = { Authorization: `Bearer ${key ?? session.key ?? ''}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (accept) headers.Accept = accept;
  try {
    return await fetch(url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network_error', `Could not reach the server: ${err.message}`, null);
  }
}

/** A JSON call: resolves to {data, headers}; rejects with ApiError (the envelope's fields). */
export async function call(method, path, options = {}) {
  const res = await send(method, path, options);
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) throw errorFrom(res, data);
  return { data, headers: res.headers };
}

export const get = (path, query, options = {}) => call('GET', path, { ...options, query });
export const post = (path, body, options = {}) => call('POST', path, { ...options, body: body ?? {} });
export const patch = (path, body, options = {}) => call('PATCH', path, { ...options, body });
export const del = (path, options = {}) => call('DELETE', path, options);

/**
 * POST an SSE endpoint and yield {event, data} per frame. An `event: error` frame rejects with its
 * envelope as an ApiError; aborting `signal` closes the connection (the server stops generating).
 */
export async function* stream(path, body, signal) {
  const res = await send('POST', path, { body, signal, accept: 'text/event-stream' });
  if (!res.ok) {
    let data = null;
    try {
      data = await res.json();
    } catch {
      data = null;
    }
    throw errorFrom(res, data);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        const dataLines = [];
        for (const line of frame.split('\n')) {
          if (line.startsWith(':')) continue; // keep-alive comment
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) dataLines.push(line.slice(5).replace(/^ /, ''));
        }
        if (!dataLines.length) continue;
        const data = JSON.parse(dataLines.join('\n'));
        if (event === 'error') {
          const e = data.error || {};
          throw new ApiError(res.status, e.code || 'stream_error', e.message || 'The stream failed.', e.requestId || res.headers.get('X-Request-Id'), e.details);
        }
        yield { event, data, requestId: res.headers.get('X-Request-Id') };
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
