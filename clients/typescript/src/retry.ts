import { APIError, isRetryable } from './errors.js';

export interface RetryPolicy {
  /** Retries after the first attempt. */
  maxRetries: number;
  /** Backoff before the first retry, in ms; doubles each retry. */
  initialDelay: number;
  /** Cap of the exponential backoff, in ms. */
  maxDelay: number;
  /** A Retry-After longer than this (ms) is not waited for: the error is thrown instead. */
  maxRetryAfter: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxRetries: 2,
  initialDelay: 500,
  maxDelay: 8_000,
  maxRetryAfter: 60_000,
};

/**
 * The wait before retry number `retry` (0-based) after `error`, or undefined when the error
 * must be thrown: not retryable, out of retries, or the server asked for too long a wait.
 */
export function retryDelay(error: unknown, retry: number, policy: RetryPolicy, random = Math.random): number | undefined {
  if (retry >= policy.maxRetries || !isRetryable(error)) return undefined;
  if (error instanceof APIError && error.retryAfter !== undefined) {
    const ms = error.retryAfter * 1000;
    return ms > policy.maxRetryAfter ? undefined : ms;
  }
  // Exponential backoff with "equal jitter": half fixed, half random.
  const backoff = Math.min(policy.initialDelay * 2 ** retry, policy.maxDelay);
  return backoff / 2 + random() * (backoff / 2);
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
