import type { OpenResponse } from './client.js';
import { APIConnectionError, PlutosError, errorFromBody } from './errors.js';
import { parseServerSentEvents } from './sse.js';
import type { StreamChunkEvent, StreamCompleteEvent, StreamEvent } from './types.js';

function parseData(data: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(data);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new PlutosError(`Invalid stream event data: ${data.slice(0, 200)}`, { code: 'invalid_response' });
}

/**
 * The events of one POST /stream call: `chunk` events, then one `complete` event.
 * Iterate it once with `for await`; `abort()` (or leaving the loop) closes the connection.
 */
export class Stream implements AsyncIterable<StreamEvent> {
  #open: () => Promise<OpenResponse>;
  #signal: AbortSignal | undefined;
  #started = false;
  #abortCurrent: (() => void) | undefined;
  #aborted = false;

  /** @internal */
  constructor(open: () => Promise<OpenResponse>, signal?: AbortSignal) {
    this.#open = open;
    this.#signal = signal;
  }

  /** Closes the connection; a running iteration ends with an APIConnectionError. */
  abort(): void {
    this.#aborted = true;
    this.#abortCurrent?.();
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    if (this.#started) throw new PlutosError('A stream can be iterated only once', { code: 'stream_consumed' });
    this.#started = true;
    return this.#events();
  }

  /** Reads the whole stream and returns its complete event. */
  async final(): Promise<StreamCompleteEvent> {
    let last: StreamCompleteEvent | undefined;
    for await (const event of this) if (event.event === 'complete') last = event;
    // #events throws when the stream ends without a complete event.
    return last as StreamCompleteEvent;
  }

  async *#events(): AsyncGenerator<StreamEvent> {
    if (this.#aborted) throw new APIConnectionError('Stream aborted');
    const open = await this.#open();
    this.#abortCurrent = open.abort;
    const requestId = open.response.headers.get('x-request-id') ?? undefined;
    let completed = false;
    try {
      const body = open.response.body;
      if (!body) throw new APIConnectionError('Stream response has no body', { requestId });
      for await (const sse of parseServerSentEvents(body as AsyncIterable<Uint8Array>)) {
        if (sse.data === '' && sse.event !== 'error') continue;
        const data = parseData(sse.data);
        let kind = sse.event;
        if (kind === 'message') {
          // No `event:` line: tell the kind from the payload.
          kind = 'error' in data ? 'error' : data.chunk === 'final' ? 'complete' : 'chunk';
        }
        if (kind === 'error') {
          const err = errorFromBody(data, undefined);
          throw err.requestId === undefined && requestId !== undefined ? errorFromBody(withRequestId(data, requestId), undefined) : err;
        }
        if (kind === 'chunk') {
          yield { ...data, event: 'chunk' } as StreamChunkEvent;
        } else if (kind === 'complete') {
          completed = true;
          yield { ...data, event: 'complete' } as StreamCompleteEvent;
        }
        // Unknown event names are skipped, so the server can add new ones.
      }
      if (!completed) {
        throw new APIConnectionError('The stream ended before its complete event', { requestId });
      }
    } catch (error) {
      if (this.#signal?.aborted) throw this.#signal.reason;
      if (error instanceof PlutosError) throw error;
      throw new APIConnectionError(
        this.#aborted ? 'Stream aborted' : `Stream broken: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error, requestId },
      );
    } finally {
      open.release();
      // Leaving early (break, return, throw) or finishing: either way close the connection.
      open.abort();
    }
  }
}

function withRequestId(data: Record<string, unknown>, requestId: string): Record<string, unknown> {
  const inner = typeof data.error === 'object' && data.error !== null ? (data.error as Record<string, unknown>) : data;
  return { error: { ...inner, requestId } };
}
