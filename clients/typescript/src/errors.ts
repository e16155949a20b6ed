// Every error the SDK throws:
//
//   PlutosError                      base class: message, code, status, requestId
//   ├── APIConnectionError           no usable HTTP response (DNS, refused, reset, broken stream)
//   │   └── APITimeoutError          an attempt took longer than `timeout`
//   └── APIError                     the API answered with {"error": {...}} (or an SSE `event: error`)
//       ├── BadRequestError          400 (any other 400 code)
//       │   ├── InvalidParametersError   invalid_parameters
//       │   ├── InvalidModelError        invalid_model
//       │   └── InputTooLongError        input_too_long
//       ├── AuthenticationError      401 invalid_api_key
//       ├── PermissionDeniedError    403 permission_denied
//       │   └── AccountSuspendedError    account_suspended (the operator suspended the account)
//       ├── NotFoundError            404 not_found
//       ├── ConflictError            409 conflict (e.g. rotating a key that is not active)
//       ├── IdempotencyInProgressError 409 idempotency_in_progress (retried after retryAfter)
//       ├── IdempotencyKeyReusedError  422 idempotency_key_reused
//       ├── RateLimitError           429 rate_limit_exceeded (retryAfter, seconds)
//       ├── InsufficientQuotaError   429 insufficient_quota (never retried)
//       ├── InternalServerError      500 internal_error (and other 5xx)
//       ├── UpstreamError            502 upstream_error
//       ├── ServiceUnavailableError  503 service_unavailable
//       └── GatewayTimeoutError      504 timeout
//
// Aborting through `signal` rethrows the signal's reason (an AbortError), not a PlutosError.

import { ERROR_TABLE, type ErrorCode } from './error-table.js';

export interface PlutosErrorInit {
  code: string;
  status?: number | undefined;
  requestId?: string | undefined;
  cause?: unknown;
}

export class PlutosError extends Error {
  /** The reference's error code, e.g. "rate_limit_exceeded"; "connection_error" / "client_timeout" for client-side failures. */
  readonly code: string;
  /** The HTTP status, when there was a response. */
  readonly status: number | undefined;
  /** The server's request id (error body `requestId` or the `X-Request-Id` header), when known. */
  readonly requestId: string | undefined;

  constructor(message: string, init: PlutosErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.code = init.code;
    this.status = init.status;
    this.requestId = init.requestId;
  }
}

export class APIConnectionError extends PlutosError {
  constructor(message: string, init: Partial<PlutosErrorInit> = {}) {
    super(message, { code: 'connection_error', ...init });
  }
}

export class APITimeoutError extends APIConnectionError {
  constructor(message = 'Request timed out', init: Partial<PlutosErrorInit> = {}) {
    super(message, { code: 'client_timeout', ...init });
  }
}

export interface APIErrorInit extends PlutosErrorInit {
  status: number;
  details?: Record<string, unknown> | undefined;
  headers?: Headers | undefined;
  retryAfter?: number | undefined;
}

export class APIError extends PlutosError {
  declare readonly status: number;
  /** The error body's `details` object ({} when absent). */
  readonly details: Record<string, unknown>;
  /** Response headers (absent for errors that arrive inside a stream). */
  readonly headers: Headers | undefined;
  /** Seconds the server asked us to wait (Retry-After header or details.retryAfter), if any. */
  readonly retryAfter: number | undefined;

  constructor(message: string, init: APIErrorInit) {
    super(message, init);
    this.details = init.details ?? {};
    this.headers = init.headers;
    this.retryAfter = init.retryAfter;
  }
}

export class BadRequestError extends APIError {}
export class InvalidParametersError extends BadRequestError {}
export class InvalidModelError extends BadRequestError {}
export class InputTooLongError extends BadRequestError {}
export class AuthenticationError extends APIError {}
export class PermissionDeniedError extends APIError {}
export class AccountSuspendedError extends PermissionDeniedError {}
export class NotFoundError extends APIError {}
export class ConflictError extends APIError {}
/** The first request with this Idempotency-Key is still running; retried after `retryAfter`. */
export class IdempotencyInProgressError extends APIError {}
/** The Idempotency-Key was already used with a different request. */
export class IdempotencyKeyReusedError extends APIError {}
export class RateLimitError extends APIError {}
export class InsufficientQuotaError extends APIError {}
export class InternalServerError extends APIError {}
export class UpstreamError extends APIError {}
export class ServiceUnavailableError extends APIError {}
export class GatewayTimeoutError extends APIError {}

type APIErrorClass = new (message: string, init: APIErrorInit) => APIError;

/** The class of each code; the codes and their statuses come from the server's table (./error-table.ts). */
const CLASS_FOR_CODE: Partial<Record<ErrorCode, APIErrorClass>> = {
  invalid_parameters: InvalidParametersError,
  invalid_model: InvalidModelError,
  input_too_long: InputTooLongError,
  invalid_api_key: AuthenticationError,
  permission_denied: PermissionDeniedError,
  account_suspended: AccountSuspendedError,
  not_found: NotFoundError,
  conflict: ConflictError,
  rate_limit_exceeded: RateLimitError,
  insufficient_quota: InsufficientQuotaError,
  internal_error: InternalServerError,
  upstream_error: UpstreamError,
  service_unavailable: ServiceUnavailableError,
  timeout: GatewayTimeoutError,
  idempotency_in_progress: IdempotencyInProgressError,
  idempotency_key_reused: IdempotencyKeyReusedError,
};

/** Every error code of the server's table: HTTP status and class of each. */
export const ERROR_CODES: Readonly<Record<string, { status: number; errorClass: APIErrorClass }>> = Object.fromEntries(
  (Object.keys(ERROR_TABLE) as ErrorCode[]).map((code) => [
    code,
    { status: ERROR_TABLE[code].httpStatus, errorClass: CLASS_FOR_CODE[code] ?? APIError },
  ]),
);

/** The class for a status whose code the SDK doesn't know. */
function classForStatus(status: number): APIErrorClass {
  switch (status) {
    case 400:
    case 422:
      return BadRequestError;
    case 401:
      return AuthenticationError;
    case 403:
      return PermissionDeniedError;
    case 404:
      return NotFoundError;
    case 409:
      return ConflictError;
    case 429:
      return RateLimitError;
    case 502:
      return UpstreamError;
    case 503:
      return ServiceUnavailableError;
    case 504:
      return GatewayTimeoutError;
    default:
      return status >= 500 ? InternalServerError : APIError;
  }
}

/** Parses a Retry-After header: delay-seconds (fractions accepted) or an HTTP date. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value == null || value.trim() === '') return undefined;
  const seconds = Number(value.trim());
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, (date - now) / 1000);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Builds the typed error for an error envelope `{"error": {...}}` (or its inner object).
 * `status` is the HTTP status; for errors inside a stream it is taken from the code table.
 */
export function errorFromBody(body: unknown, status: number | undefined, headers?: Headers): APIError {
  const inner = isRecord(body) && isRecord(body.error) ? body.error : isRecord(body) ? body : {};
  const code = typeof inner.code === 'string' && inner.code !== '' ? inner.code : undefined;
  const known = code === undefined ? undefined : ERROR_CODES[code];
  const httpStatus = status ?? known?.status ?? 500;
  const details = isRecord(inner.details) ? inner.details : {};
  const requestId =
    (typeof inner.requestId === 'string' ? inner.requestId : undefined) ??
    headers?.get('x-request-id') ??
    undefined;
  let retryAfter = parseRetryAfter(headers?.get('retry-after'));
  if (retryAfter === undefined && typeof details.retryAfter === 'number') retryAfter = Math.max(0, details.retryAfter);
  const message =
    typeof inner.message === 'string' && inner.message !== '' ? inner.message : `HTTP ${httpStatus}${code ? ` (${code})` : ''}`;
  const errorClass = known?.errorClass ?? classForStatus(httpStatus);
  return new errorClass(message, {
    code: code ?? `http_${httpStatus}`,
    status: httpStatus,
    requestId,
    details,
    headers,
    retryAfter,
  });
}

/**
 * Whether a failed attempt may be retried: network errors, codes the server's table marks retryable
 * (idempotency_in_progress, rate_limit_exceeded, upstream_error, service_unavailable, timeout); for unknown codes 429, 502, 503, 504.
 */
export function isRetryable(error: unknown): boolean {
  if (error instanceof APIConnectionError) return true;
  if (!(error instanceof APIError)) return false;
  if (Object.hasOwn(ERROR_TABLE, error.code)) return ERROR_TABLE[error.code as ErrorCode].retryable;
  if (error.status === 429) return error.code !== 'insufficient_quota';
  return error.status === 502 || error.status === 503 || error.status === 504;
}
