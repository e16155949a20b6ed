// Public request/response types. The shapes come from the generated proto types in ./gen
// (one source of truth: protos/plutos/v1/*.proto); request types are loosened here so callers
// only pass what they mean to set.
import type * as admin from './gen/plutos/v1/admin.js';
import type * as keys from './gen/plutos/v1/keys.js';
import type * as models from './gen/plutos/v1/models.js';
import type * as processing from './gen/plutos/v1/processing.js';
import type * as usage from './gen/plutos/v1/usage.js';
import type * as webhooks from './gen/plutos/v1/webhooks.js';

/** On every result: the `X-Request-Id` of the response that carried it (quote it when reporting a
 * problem). A non-enumerable property: not part of the JSON. */
export interface ResultMeta {
  readonly _requestId?: string | undefined;
}

/** Generation options; every field is optional and omitted ones take the server's defaults. */
export type ProcessOptions = Partial<processing.ProcessOptions>;

/** Token counts of one call. */
export type Usage = processing.Usage;

export interface ProcessRequest {
  input: string;
  model: string;
  options?: ProcessOptions;
}
export type ProcessResponse = processing.ProcessResponse & ResultMeta;
export type GetProcessResponse = processing.GetProcessResponse & ResultMeta;

export interface BatchRequest {
  /** 1 to 100 inputs. */
  inputs: string[];
  model: string;
  options?: ProcessOptions;
}
export type BatchResponse = processing.BatchResponse & ResultMeta;
export type BatchResult = processing.BatchResult;
export type BatchItemError = processing.BatchItemError;

export interface StreamRequest {
  input: string;
  model: string;
  options?: ProcessOptions;
}
export type StreamChunk = processing.StreamChunk;
export type StreamComplete = processing.StreamComplete;

/** `event: chunk` — a piece of output (`chunk` is always "partial"). */
export type StreamChunkEvent = { event: 'chunk' } & StreamChunk;
/** `event: complete` — the end of the stream (`chunk` is "final"; `output` is the whole text). */
export type StreamCompleteEvent = { event: 'complete' } & StreamComplete;
/** One event of a stream: any number of chunks, then exactly one complete event. */
export type StreamEvent = StreamChunkEvent | StreamCompleteEvent;

export type Model = models.Model;
export type Pricing = models.Pricing;
export type ListModelsResponse = models.ListModelsResponse & ResultMeta;

export interface GetUsageParams {
  /** YYYY-MM-DD, inclusive. */
  startDate?: string;
  /** YYYY-MM-DD, inclusive. */
  endDate?: string;
}
export type GetUsageResponse = usage.GetUsageResponse & ResultMeta;
export type UsagePeriod = usage.UsagePeriod;
export type UsageTotals = usage.UsageTotals;
export type UsageLimits = usage.UsageLimits;

export interface CreateWebhookRequest {
  url: string;
  /** Any of "processing.completed", "processing.failed", "usage.threshold". */
  events: string[];
  /** Signs the deliveries: "whsec_" + base64, or any text. Unset: the server generates one and
   * returns it once, as the response's `secret`. */
  secret?: string;
}
export type CreateWebhookResponse = webhooks.CreateWebhookResponse & ResultMeta;
export type Webhook = webhooks.Webhook;
export type ListWebhooksResponse = webhooks.ListWebhooksResponse & ResultMeta;
export type DeleteWebhookResponse = webhooks.DeleteWebhookResponse & ResultMeta;

// -- management: keys, accounts, audit, history, daily usage, webhook deliveries -----------------

export type ApiKey = keys.ApiKey;
/** getKey / updateKey / revokeKey answer the key itself, with its response's request id. */
export type ApiKeyResult = ApiKey & ResultMeta;
export type KeyLimits = Partial<keys.KeyLimits>;
export type CreateKeyResponse = keys.CreateKeyResponse & ResultMeta;
export type ListKeysResponse = keys.ListKeysResponse & ResultMeta;
export type RotateKeyResponse = keys.RotateKeyResponse & ResultMeta;

/** For createKey / updateKey; `accountId` (operator, admin scope) acts on another account. */
export interface KeyFields {
  name?: string;
  /** Scopes the key holds; default: the caller's own. Never more than the caller has. */
  scopes?: string[];
  /** Model allow-list; default: the caller's own (every model if it has none). */
  models?: string[];
  limits?: KeyLimits;
  /** RFC 3339. */
  expiresAt?: string;
  /** `options.cache` for the key's calls that do not set it: "use", "refresh" or "bypass". */
  cacheDefault?: string;
}
export interface CreateKeyRequest extends KeyFields {
  accountId?: string;
}
export interface UpdateKeyRequest extends KeyFields {
  /** Field names to change (e.g. "models" with `models: []` to allow every model). */
  updateMask?: string;
}
/** `accountId`: an operator acting on another account's keys. */
export interface AccountScope {
  accountId?: string;
}

/** One page of a list, newest first; pass `lastId` as `after` for the next page. */
export interface Page<T> {
  data: T[];
  hasMore: boolean;
  firstId: string;
  lastId: string;
}
export interface PageParams {
  /** 1 to 100 (default 20). */
  limit?: number;
  /** The previous page's lastId. */
  after?: string;
}

export type ProcessHistoryItem = processing.ProcessRecord;
export interface ListProcessesParams extends PageParams {
  model?: string;
  /** "completed", "failed" or "cancelled". */
  status?: string;
  /** YYYY-MM-DD, inclusive. */
  startDate?: string;
  /** YYYY-MM-DD, inclusive. */
  endDate?: string;
}
export type ListProcessesResponse = processing.ListProcessesResponse & ResultMeta;

export type DailyUsage = usage.DailyUsage;
export interface GetDailyUsageParams extends GetUsageParams {
  model?: string;
}
export type GetDailyUsageResponse = usage.GetDailyUsageResponse & ResultMeta;

export type WebhookDelivery = webhooks.WebhookDelivery;
export interface ListWebhookDeliveriesParams extends PageParams {
  /** "pending", "delivered" or "failed". */
  status?: string;
}
export type ListWebhookDeliveriesResponse = webhooks.ListWebhookDeliveriesResponse & ResultMeta;
export type RedeliverWebhookDeliveryResponse = webhooks.RedeliverWebhookDeliveryResponse & ResultMeta;
export type TestWebhookResponse = webhooks.TestWebhookResponse & ResultMeta;

export type Account = admin.Account;
export type AccountUsage = admin.AccountUsage;
export type AuditEvent = admin.AuditEvent;
export interface CreateAccountRequest {
  name?: string;
  /** Default "free". */
  plan?: string;
}
export interface UpdateAccountRequest {
  name?: string;
  plan?: string;
  suspended?: boolean;
}
export interface ListAuditEventsParams extends PageParams {
  accountId?: string;
}
export type AccountResponse = admin.GetAccountResponse & ResultMeta;
export type ListAccountsResponse = admin.ListAccountsResponse & ResultMeta;
export type ListAuditEventsResponse = admin.ListAuditEventsResponse & ResultMeta;

/** Per-call settings that override the client's. */
export interface RequestOptions {
  /** Aborts the call (including retries and, for streams, reading). */
  signal?: AbortSignal;
  /** Milliseconds per attempt; for streams, until the response headers arrive. */
  timeout?: number;
  /** Retries after the first attempt. */
  maxRetries?: number;
  /** Extra HTTP headers. */
  headers?: Record<string, string>;
  /**
   * The Idempotency-Key of a POST (default: a fresh random key per call, the same on each of its
   * retries). Repeating a call with the same key replays the first answer instead of running again.
   */
  idempotencyKey?: string;
}
