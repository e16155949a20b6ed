export { APIPromise, type WithResponse } from './api-promise.js';
export { PlutosAI, type ClientOptions } from './client.js';
export type { TlsOptions } from './node-tls.js';
export { ENVIRONMENTS, type Environment } from './environments.js';
export {
  AccountSuspendedError,
  APIConnectionError,
  APIError,
  APITimeoutError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  ERROR_CODES,
  GatewayTimeoutError,
  IdempotencyInProgressError,
  IdempotencyKeyReusedError,
  InputTooLongError,
  InsufficientQuotaError,
  InternalServerError,
  InvalidModelError,
  InvalidParametersError,
  NotFoundError,
  PermissionDeniedError,
  PlutosError,
  RateLimitError,
  ServiceUnavailableError,
  UpstreamError,
} from './errors.js';
export { ERROR_TABLE, type ErrorCode } from './error-table.js';
export { Stream } from './stream.js';
export {
  DEFAULT_WEBHOOK_TOLERANCE,
  signWebhook,
  verifyWebhook,
  WebhookVerificationError,
  type WebhookHeaders,
} from './webhooks.js';
export { parseServerSentEvents, type ServerSentEvent } from './sse.js';
export type * from './types.js';
export { VERSION } from './version.js';
