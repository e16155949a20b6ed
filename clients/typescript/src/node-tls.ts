// HTTPS with a private CA bundle and/or a client certificate (mTLS) on Node: the global fetch takes
// no TLS options, so requests to https:// URLs go through node:https with an Agent holding them;
// other URLs use the global fetch. Loaded only when those options are given (browsers never are).

/** TLS options of the client (the same names as the Python SDK's `ca_file` / `client_cert`). */
export interface TlsOptions {
  /** A PEM CA bundle to trust instead of Node's built-in roots (a private CA, a self-made certificate). */
  caFile?: string;
  /** A PEM client certificate file (with its key in it), or `[certFile, keyFile]`. */
  clientCert?: string | [certFile: string, keyFile: string];
}

type Loaded = {
  https: typeof import('node:https');
  agent: import('node:https').Agent;
  toWeb: (stream: import('node:stream').Readable) => ReadableStream<Uint8Array>;
};

/** A fetch for `tls`: https:// URLs through node:https with these certificates, others through fetch. */
export function tlsFetch(tls: TlsOptions, fallback: typeof fetch): typeof fetch {
  let loaded: Promise<Loaded> | undefined;
  const load = async (): Promise<Loaded> => {
    const [https, fs, stream] = await Promise.all([import('node:https'), import('node:fs/promises'), import('node:stream')]);
    const read = (path: string | undefined) => (path ? fs.readFile(path) : Promise.resolve(undefined));
    const [certFile, keyFile] = typeof tls.clientCert === 'string' ? [tls.clientCert, tls.clientCert] : (tls.clientCert ?? []);
    const [ca, cert, key] = await Promise.all([read(tls.caFile), read(certFile), read(keyFile)]);
    const agent = new https.Agent({ keepAlive: true, ca, cert, key });
    const toWeb = (s: import('node:stream').Readable) => stream.Readable.toWeb(s) as ReadableStream<Uint8Array>;
    return { https, agent, toWeb };
  };
  const tlsAware = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    if (url.protocol !== 'https:') return fallback(input, init);
    const { https, agent, toWeb } = await (loaded ??= load());
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((value, name) => {
      headers[name] = value;
    });
    const method = init?.method ?? 'GET';
    const body = typeof init?.body === 'string' ? init.body : undefined;
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    return new Promise<Response>((resolve, reject) => {
      const request = https.request(url, { method, headers, agent, signal: init?.signal ?? undefined }, (res) => {
        const out = new Headers();
        for (const [name, value] of Object.entries(res.headers)) {
          if (Array.isArray(value)) for (const v of value) out.append(name, v);
          else if (value !== undefined) out.set(name, value);
        }
        const status = res.statusCode ?? 500;
        const empty = method === 'HEAD' || status === 204 || status === 304;
        if (empty) res.resume();
        resolve(new Response(empty ? null : toWeb(res), { status, statusText: res.statusMessage, headers: out }));
      });
      request.on('error', reject);
      request.end(body);
    });
  };
  return tlsAware as typeof fetch;
}
