/** A result together with the HTTP response that carried it. */
export interface WithResponse<T> {
  data: T;
  /** The raw response: status, headers (`x-request-id`, `x-ratelimit-*`, `retry-after`...). Its body has been read. */
  response: Response;
}

/**
 * What every non-streaming method returns: a Promise of the parsed result (await it as usual) that
 * also gives the raw HTTP response, as in the OpenAI SDK:
 *
 *     const { data, response } = await client.processData(req).withResponse();
 *     response.headers.get('x-ratelimit-remaining-requests');
 *     const raw = await client.listModels().asResponse();
 *
 * The request is sent once however many of `then` / `withResponse` / `asResponse` are used.
 */
export class APIPromise<T> extends Promise<T> {
  readonly #result: Promise<WithResponse<T>>;
  #data: Promise<T> | undefined;

  constructor(result: Promise<WithResponse<T>>) {
    // The executor's value is never observed: then/catch/finally read `#result`.
    super((resolve) => resolve(undefined as T));
    this.#result = result;
  }

  // `then` of a Promise subclass builds new promises through this species: plain Promises.
  static override get [Symbol.species]() {
    return Promise;
  }

  /** The parsed result and the raw `Response`. */
  withResponse(): Promise<WithResponse<T>> {
    return this.#result;
  }

  /** The raw `Response` only (its body has been read). */
  asResponse(): Promise<Response> {
    return this.#result.then((r) => r.response);
  }

  /** A new APIPromise whose data is `fn(data)`, with the same response. @internal */
  /** A part of the result (e.g. `key` of `{ key }`), still carrying the response's `_requestId`. */
  _map<U>(fn: (data: T) => U): APIPromise<U> {
    return new APIPromise(
      this.#result.then(({ data, response }) => {
        const mapped = fn(data);
        if (typeof mapped === 'object' && mapped !== null && !Object.hasOwn(mapped, '_requestId')) {
          const requestId = response.headers.get('x-request-id') ?? undefined;
          Object.defineProperty(mapped, '_requestId', { value: requestId, enumerable: false });
        }
        return { data: mapped, response };
      }),
    );
  }

  #parsed(): Promise<T> {
    this.#data ??= this.#result.then((r) => r.data);
    return this.#data;
  }

  override then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.#parsed().then(onfulfilled, onrejected);
  }

  override catch<R = never>(onrejected?: ((reason: unknown) => R | PromiseLike<R>) | null): Promise<T | R> {
    return this.#parsed().catch(onrejected);
  }

  override finally(onfinally?: (() => void) | null): Promise<T> {
    return this.#parsed().finally(onfinally);
  }
}
