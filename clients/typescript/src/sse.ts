// A Server-Sent Events parser (the WHATWG "event stream" format): lines end in \n, \r\n or \r;
// `event:` names the event, `data:` lines are joined with \n, a blank line dispatches (an event
// without data is not dispatched), lines starting with ':' are comments (keep-alives), an event
// the stream ends before its blank line is discarded. Bytes are decoded as UTF-8 across chunk borders.

export interface ServerSentEvent {
  /** The `event:` field; "message" when absent. */
  event: string;
  data: string;
  id?: string;
}

export async function* parseServerSentEvents(body: AsyncIterable<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder('utf-8');
  let buffer = '';
  let eventName = '';
  let data: string[] = [];
  let id: string | undefined;
  let sawData = false;

  const dispatch = (): ServerSentEvent | undefined => {
    const out = sawData ? { event: eventName || 'message', data: data.join('\n'), ...(id === undefined ? {} : { id }) } : undefined;
    eventName = '';
    data = [];
    sawData = false;
    return out;
  };

  const processLine = (line: string): ServerSentEvent | undefined => {
    if (line === '') return dispatch();
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        eventName = value;
        break;
      case 'data':
        data.push(value);
        sawData = true;
        break;
      case 'id':
        if (!value.includes('\0')) id = value;
        break;
      default: // "retry" and unknown fields are ignored
        break;
    }
    return undefined;
  };

  let first = true;
  const drainLines = function* (final: boolean): Generator<ServerSentEvent> {
    let start = 0;
    for (let i = 0; i < buffer.length; i++) {
      const ch = buffer[i];
      if (ch !== '\n' && ch !== '\r') continue;
      // A \r at the very end might be the first half of \r\n: wait for more input.
      if (ch === '\r' && i === buffer.length - 1 && !final) break;
      const line = buffer.slice(start, i);
      if (ch === '\r' && buffer[i + 1] === '\n') i++;
      start = i + 1;
      const ev = processLine(line);
      if (ev) yield ev;
    }
    buffer = buffer.slice(start);
  };

  for await (const chunk of body) {
    let text = decoder.decode(chunk, { stream: true });
    if (first && text.length > 0) {
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // BOM
      first = false;
    }
    buffer += text;
    yield* drainLines(false);
  }
  buffer += decoder.decode();
  yield* drainLines(true);
  // The stream is over: an event not ended by a blank line is discarded, as the standard says
  // (the shared corpus clients/sse_corpus.json checks this parser against the gateway's and the
  // other SDKs').
}
