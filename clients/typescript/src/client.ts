import { APIPromise, type WithResponse } from './api-promise.js';
import { ENVIRONMENTS, type Environment } from './environments.js';
import { type TlsOptions, tlsFetch } from './node-tls.js';
import { APIConnectionError, APITimeoutError, PlutosError, errorFromBody } from './errors.js';
import { DEFAULT_RETRY_POLICY, type RetryPolicy, retryDelay, sleep } from './retry.js';
import { Stream } from './stream.js';
import type {
  AccountResponse,
  AccountScope,
  ApiKey,
  ApiKeyResult,
  BatchRequest,
  CreateAccountRequest,
  CreateKeyRequest,
  CreateKeyResponse,
  GetDailyUsageParams,
  GetDailyUsageResponse,
  ListAccountsResponse,
  ListAuditEventsParams,
  ListAuditEventsResponse,
  ListKeysResponse,
  ListProcessesParams,
  ListProcessesResponse,
  ListWebhookDeliveriesParams,
  ListWebhookDeliveriesResponse,
  PageParams,
  RedeliverWebhookDeliveryResponse,
  RotateKeyResponse,
  TestWebhookResponse,
  UpdateAccountRequest,
  UpdateKeyRequest,
  BatchResponse,
  CreateWebhookRequest,
  CreateWebhookResponse,
  DeleteWebhookResponse,
  GetProcessResponse,
  GetUsageParams,
  GetUsageResponse,
  ListModelsResponse,
  ListWebhooksResponse,
  ProcessRequest,
  ProcessResponse,
  RequestOptions,
  StreamRequest,
} from './types.js';
import { VERSION } from './version.js';

export interface ClientOptions extends TlsOptions {
  /** Defaults to the PLUTOS_API_KEY environment variable. */
  apiKey?: string;
  /** "production" (default), "staging" or "development". */
  environment?: Environment;
  /**
   * Overrides the environment's URL, e.g. "http://localhost:3000/v1". Without it the
   * PLUTOS_BASE_URL environment variable, when set, is used instead of the environment's URL.
   */
  baseUrl?: string;
  /** Milliseconds per attempt (default 600 000, ten minutes). For streams: until the response headers arrive. */
  timeout?: number;
  /** Retries after the first attempt (default 2). */
  maxRetries?: number;
  /** Backoff before the first retry in ms (default 500); doubles each retry, with jitter. */
  initialRetryDelay?: number;
  /** Cap of the backoff in ms (default 8 000). */
  maxRetryDelay?: number;
  /** A Retry-After longer than this many ms is not waited for (default 60 000). */
  maxRetryAfter?: number;
  /** Headers sent with every request. */
  defaultHeaders?: Record<string, string>;
  /** A fetch implementation (default: the global fetch). */
  fetch?: typeof fetch;
}

interface RequestSpec {
  method: 'GET' | 'POST' | 'DELETE' | 'PATCH';
  path: string;
  query?: Record<string, string | undefined>;
  body?: unknown;
  accept?: string;
}

export interface OpenResponse {
  response: Response;
  /** The body, read within the attempt (empty for streams, whose body is left unread). */
  text: string;
  /** Detaches the call's timeout and abort listeners. */
  release: () => void;
  /** Aborts the underlying HTTP exchange (closing a stream). */
  abort: () => void;
}

function env(name: string): string | undefined {
  const value = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
  return value === undefined || value === '' ? undefined : value;
}

function keysPath(accountId: string | undefined, id?: string, verb?: string): string {
  let path = accountId ? `/admin/accounts/${encodeURIComponent(accountId)}/keys` : '/keys';
  if (id !== undefined) path += `/${encodeURIComponent(id)}`;
  return verb ? `${path}:${verb}` : path;
}

function pageQuery(params: PageParams): Record<string, string | undefined> {
  return { limit: params.limit === undefined ? undefined : String(params.limit), after: params.after };
}

/** The client for the PlutosAI REST API. */
export class PlutosAI {
  readonly baseUrl: string;
  readonly timeout: number;
  readonly maxRetries: number;
  readonly #apiKey: string;
  readonly #retry: RetryPolicy;
  readonly #defaultHeaders: Record<string, string>;
  readonly #fetch: typeof fetch;

  constructor(options: ClientOptions = {}) {
    const apiKey = options.apiKey ?? env('PLUTOS_API_KEY');
    if (!apiKey) {
      throw new PlutosError('No API key: pass `apiKey` or set PLUTOS_API_KEY', { code: 'missing_api_key' });
    }
    this.#apiKey = apiKey;
    const environment = options.environment ?? 'production';
    if (!Object.prototype.hasOwnProperty.call(ENVIRONMENTS, environment)) {
      throw new PlutosError(
        `Unknown environment "${environment}"; expected one of ${Object.keys(ENVIRONMENTS).join(', ')}`,
        { code: 'invalid_environment' },
      );
    }
    const baseUrl = options.baseUrl ?? env('PLUTOS_BASE_URL') ?? ENVIRONMENTS[environment];
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.timeout = options.timeout ?? 600_000;
    this.maxRetries = options.maxRetries ?? DEFAULT_RETRY_POLICY.maxRetries;
    this.#retry = {
      maxRetries: this.maxRetries,
      initialDelay: options.initialRetryDelay ?? DEFAULT_RETRY_POLICY.initialDelay,
      maxDelay: options.maxRetryDelay ?? DEFAULT_RETRY_POLICY.maxDelay,
      maxRetryAfter: options.maxRetryAfter ?? DEFAULT_RETRY_POLICY.maxRetryAfter,
    };
    this.#defaultHeaders = { ...options.defaultHeaders };
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') throw new PlutosError('No fetch implementation available', { code: 'no_fetch' });
    // A CA bundle / client certificate (Node): https:// requests go through node:https with them.
    this.#fetch = options.caFile || options.clientCert ? tlsFetch(options, f) : f;
  }

  /** POST /process — process one input with a model. */
  processData(request: ProcessRequest, options?: RequestOptions): APIPromise<ProcessResponse> {
    return this.#json({ method: 'POST', path: '/process', body: request }, options);
  }

  /** GET /process/{id} — a stored processing result. */
  getProcess(id: string, options?: RequestOptions): APIPromise<GetProcessResponse> {
    return this.#json({ method: 'GET', path: `/process/${encodeURIComponent(id)}` }, options);
  }

  /** POST /batch — up to 100 inputs; results come back in input order, failed items carry `error`. */
  batch(request: BatchRequest, options?: RequestOptions): APIPromise<BatchResponse> {
    return this.#json({ method: 'POST', path: '/batch', body: request }, options);
  }

  /**
   * POST /stream — iterate the events as they arrive:
   *
   *     for await (const event of client.stream({ input, model })) {
   *       if (event.event === 'chunk') process.stdout.write(event.output);
   *       else console.log('\ndone:', event.usage);
   *     }
   *
   * The request is sent when iteration starts; connection failures and retryable errors before
   * the first event are retried. An `event: error` frame is thrown as the matching APIError.
   * Leaving the loop early (break/return/throw) closes the connection.
   */
  stream(request: StreamRequest, options?: RequestOptions): Stream {
    return new Stream(
      () => this.#send({ method: 'POST', path: '/stream', body: request, accept: 'text/event-stream' }, options, true),
      options?.signal,
    );
  }

  /** GET /models — the model catalogue. */
  listModels(options?: RequestOptions): APIPromise<ListModelsResponse> {
    return this.#json({ method: 'GET', path: '/models' }, options);
  }

  /** GET /usage — usage for a period (default: the current calendar month). */
  getUsage(params: GetUsageParams = {}, options?: RequestOptions): APIPromise<GetUsageResponse> {
    return this.#json(
      { method: 'GET', path: '/usage', query: { start_date: params.startDate, end_date: params.endDate } },
      options,
    );
  }

  /** POST /webhooks — register a webhook. */
  createWebhook(request: CreateWebhookRequest, options?: RequestOptions): APIPromise<CreateWebhookResponse> {
    return this.#json({ method: 'POST', path: '/webhooks', body: request }, options);
  }

  /** GET /webhooks — the caller's webhooks. */
  listWebhooks(options?: RequestOptions): APIPromise<ListWebhooksResponse> {
    return this.#json({ method: 'GET', path: '/webhooks' }, options);
  }

  /** DELETE /webhooks/{id} — remove a webhook. */
  deleteWebhook(id: string, options?: RequestOptions): APIPromise<DeleteWebhookResponse> {
    return this.#json({ method: 'DELETE', path: `/webhooks/${encodeURIComponent(id)}` }, options);
  }

  // -- management: keys, accounts, audit, history, daily usage, webhook deliveries ---------------

  /** POST /keys (or /admin/accounts/{accountId}/keys) — a new key; its `secret` is returned only here. */
  createKey(request: CreateKeyRequest = {}, options?: RequestOptions): APIPromise<CreateKeyResponse> {
    const { accountId, ...body } = request;
    return this.#json({ method: 'POST', path: keysPath(accountId), body }, options);
  }

  /** GET /keys — the account's keys (prefixes only). */
  listKeys(scope: AccountScope = {}, options?: RequestOptions): APIPromise<ListKeysResponse> {
    return this.#json({ method: 'GET', path: keysPath(scope.accountId) }, options);
  }

  /** GET /keys/{id}. */
  getKey(id: string, scope: AccountScope = {}, options?: RequestOptions): APIPromise<ApiKeyResult> {
    return this.#json<{ key: ApiKey }>({ method: 'GET', path: keysPath(scope.accountId, id) }, options)._map((r) => r.key);
  }

  /** PATCH /keys/{id} — change the fields given. */
  updateKey(
    id: string,
    request: UpdateKeyRequest,
    scope: AccountScope = {},
    options?: RequestOptions,
  ): APIPromise<ApiKeyResult> {
    const spec: RequestSpec = { method: 'PATCH', path: keysPath(scope.accountId, id), body: request };
    return this.#json<{ key: ApiKey }>(spec, options)._map((r) => r.key);
  }

  /** POST /keys/{id}:rotate — a replacement; the old key works `graceSeconds` more (default 86400). */
  rotateKey(
    id: string,
    request: { graceSeconds?: number } = {},
    scope: AccountScope = {},
    options?: RequestOptions,
  ): APIPromise<RotateKeyResponse> {
    return this.#json({ method: 'POST', path: keysPath(scope.accountId, id, 'rotate'), body: request }, options);
  }

  /** POST /keys/{id}:revoke — revoking the calling key itself needs `allowSelf: true`. */
  revokeKey(
    id: string,
    request: { allowSelf?: boolean } = {},
    scope: AccountScope = {},
    options?: RequestOptions,
  ): APIPromise<ApiKeyResult> {
    const spec: RequestSpec = { method: 'POST', path: keysPath(scope.accountId, id, 'revoke'), body: request };
    return this.#json<{ key: ApiKey }>(spec, options)._map((r) => r.key);
  }

  /** GET /process — the account's processing records, newest first. */
  listProcesses(params: ListProcessesParams = {}, options?: RequestOptions): APIPromise<ListProcessesResponse> {
    const query = {
      ...pageQuery(params),
      model: params.model,
      status: params.status,
      start_date: params.startDate,
      end_date: params.endDate,
    };
    return this.#json({ method: 'GET', path: '/process', query }, options);
  }

  /** GET /usage/daily — one row per UTC day and model. */
  getDailyUsage(params: GetDailyUsageParams = {}, options?: RequestOptions): APIPromise<GetDailyUsageResponse> {
    const query = { start_date: params.startDate, end_date: params.endDate, model: params.model };
    return this.#json({ method: 'GET', path: '/usage/daily', query }, options);
  }

  /** GET /webhooks/{id}/deliveries — newest first. */
  listWebhookDeliveries(
    webhookId: string,
    params: ListWebhookDeliveriesParams = {},
    options?: RequestOptions,
  ): APIPromise<ListWebhookDeliveriesResponse> {
    const path = `/webhooks/${encodeURIComponent(webhookId)}/deliveries`;
    return this.#json({ method: 'GET', path, query: { ...pageQuery(params), status: params.status } }, options);
  }

  /** POST /webhooks/{id}/deliveries/{deliveryId}:redeliver — send a delivered or failed delivery again. */
  redeliverWebhookDelivery(
    webhookId: string,
    deliveryId: string,
    options?: RequestOptions,
  ): APIPromise<RedeliverWebhookDeliveryResponse> {
    const path = `/webhooks/${encodeURIComponent(webhookId)}/deliveries/${encodeURIComponent(deliveryId)}:redeliver`;
    return this.#json({ method: 'POST', path, body: {} }, options);
  }

  /** POST /webhooks/{id}:test — a signed `ping` now; the receiver's answer. */
  testWebhook(id: string, options?: RequestOptions): APIPromise<TestWebhookResponse> {
    return this.#json({ method: 'POST', path: `/webhooks/${encodeURIComponent(id)}:test`, body: {} }, options);
  }

  /** POST /admin/accounts (admin scope). */
  createAccount(request: CreateAccountRequest = {}, options?: RequestOptions): APIPromise<AccountResponse> {
    return this.#json({ method: 'POST', path: '/admin/accounts', body: request }, options);
  }

  /** GET /admin/accounts — with this month's usage, newest first. */
  listAccounts(params: PageParams = {}, options?: RequestOptions): APIPromise<ListAccountsResponse> {
    return this.#json({ method: 'GET', path: '/admin/accounts', query: pageQuery(params) }, options);
  }

  /** GET /admin/accounts/{id}. */
  getAccount(id: string, options?: RequestOptions): APIPromise<AccountResponse> {
    return this.#json({ method: 'GET', path: `/admin/accounts/${encodeURIComponent(id)}` }, options);
  }

  /** PATCH /admin/accounts/{id} — name, plan, suspended. */
  updateAccount(id: string, request: UpdateAccountRequest, options?: RequestOptions): APIPromise<AccountResponse> {
    return this.#json({ method: 'PATCH', path: `/admin/accounts/${encodeURIComponent(id)}`, body: request }, options);
  }

  /** GET /admin/audit — changes to keys and accounts, newest first. */
  listAuditEvents(params: ListAuditEventsParams = {}, options?: RequestOptions): APIPromise<ListAuditEventsResponse> {
    const query = { ...pageQuery(params), account_id: params.accountId };
    return this.#json({ method: 'GET', path: '/admin/audit', query }, options);
  }

  #json<T>(spec: RequestSpec, options?: RequestOptions): APIPromise<T> {
    return new APIPromise(this.#parse<T>(spec, options));
  }

  async #parse<T>(spec: RequestSpec, options?: RequestOptions): Promise<WithResponse<T>> {
    const { response, text, release } = await this.#send(spec, options, false);
    release();
    const requestId = response.headers.get('x-request-id') ?? undefined;
    let result: unknown;
    try {
      result = text === '' ? {} : JSON.parse(text);
    } catch (cause) {
      throw new PlutosError(`Invalid JSON in response (HTTP ${response.status})`, {
        code: 'invalid_response',
        status: response.status,
        requestId,
        cause,
      });
    }
    // Every result carries its response's request id (non-enumerable: JSON.stringify leaves it out).
    if (typeof result === 'object' && result !== null) {
      Object.defineProperty(result, '_requestId', { value: requestId, enumerable: false });
    }
    return { data: result as T, response };
  }

  #url(spec: RequestSpec): string {
    let url = this.baseUrl + spec.path;
    if (spec.query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(spec.query)) if (value !== undefined) params.set(key, value);
      const qs = params.toString();
      if (qs) url += `?${qs}`;
    }
    return url;
  }

  #headers(spec: RequestSpec, options?: RequestOptions): Headers {
    const headers = new Headers({
      Accept: spec.accept ?? 'application/json',
      'User-Agent': `plutos-ai-sdk-typescript/${VERSION}`,
    });
    for (const extra of [this.#defaultHeaders, options?.headers ?? {}]) {
      for (const [name, value] of Object.entries(extra)) headers.set(name, value);
    }
    // Set last (case-insensitively) so no extra header can replace them.
    headers.set('Authorization', `Bearer ${this.#apiKey}`);
    if (spec.body !== undefined) headers.set('Content-Type', 'application/json');
    // One key per call, built once so every retry of the call repeats it: the call runs once.
    if (spec.method === 'POST') {
      const key = options?.idempotencyKey ?? headers.get('Idempotency-Key') ?? `plutos-ts-retry-${crypto.randomUUID()}`;
      headers.set('Idempotency-Key', key);
    }
    return headers;
  }

  /**
   * Sends a request with retries. For `stream` calls the successful response is returned with
   * its body unread (the timeout stops once headers arrive); otherwise the body is read into
   * `text` within the attempt, so a connection dropped mid-body is retried too.
   */
  async #send(spec: RequestSpec, options: RequestOptions | undefined, stream: boolean): Promise<OpenResponse> {
    const policy: RetryPolicy = { ...this.#retry, maxRetries: options?.maxRetries ?? this.#retry.maxRetries };
    const timeout = options?.timeout ?? this.timeout;
    const userSignal = options?.signal;
    const url = this.#url(spec);
    const init: RequestInit = {
      method: spec.method,
      headers: this.#headers(spec, options),
      ...(spec.body === undefined ? {} : { body: JSON.stringify(spec.body) }),
    };

    for (let attempt = 0; ; attempt++) {
      const call = linkAbort(userSignal, timeout);
      let error: unknown;
      try {
        const response = await this.#fetch(url, { ...init, signal: call.signal });
        if (response.ok) {
          if (stream) {
            call.stopTimer();
            return { response, text: '', release: call.release, abort: call.abort };
          }
          const text = await response.text();
          return { response, text, release: call.release, abort: call.abort };
        }
        const body = await response.text();
        let parsed: unknown;
        try {
          parsed = JSON.parse(body);
        } catch {
          parsed = { error: { message: body.trim().slice(0, 500) || undefined } };
        }
        error = errorFromBody(parsed, response.status, response.headers);
      } catch (cause) {
        if (userSignal?.aborted) {
          call.release();
          throw userSignal.reason;
        }
        error = call.timedOut()
          ? new APITimeoutError(`Request timed out after ${timeout} ms`, { cause })
          : new APIConnectionError(`Connection error: ${describe(cause)}`, { cause });
      }
      call.release();
      const delay = retryDelay(error, attempt, policy);
      if (delay === undefined) throw error;
      await sleep(delay, userSignal);
    }
  }
}

function describe(cause: unknown): string {
  if (cause instanceof Error) {
    const inner = (cause as { cause?: unknown }).cause;
    return inner instanceof Error ? `${cause.message} (${inner.message})` : cause.message;
  }
  return String(cause);
}

/** One attempt's AbortSignal: follows the caller's signal and fires on the attempt's timeout. */
function linkAbort(user: AbortSignal | undefined, timeoutMs: number) {
  const controller = new AbortController();
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (Number.isFinite(timeoutMs) && timeoutMs > 0) {
    timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new APITimeoutError(`Request timed out after ${timeoutMs} ms`));
    }, timeoutMs);
  }
  const onAbort = () => controller.abort(user?.reason);
  if (user) {
    if (user.aborted) controller.abort(user.reason);
    else user.addEventListener('abort', onAbort, { once: true });
  }
  const stopTimer = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  return {
    signal: controller.signal,
    timedOut: () => timedOut,
    stopTimer,
    release: () => {
      stopTimer();
      user?.removeEventListener('abort', onAbort);
    },
    abort: () => controller.abort(),
  };
}
