// Verify webhook deliveries (Standard Webhooks signatures), as the Python SDK's `webhooks.verify`.
//
// A delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
// (space-separated `v1,<base64 HMAC-SHA256>` of `${id}.${timestamp}.${body}`). The HMAC key is the
// webhook's secret: for a `whsec_`-prefixed secret the base64-decoded remainder, else its UTF-8 bytes.
//
//   import { verifyWebhook } from '@plutos-ai/sdk';
//   const event = verifyWebhook(rawBody, request.headers, process.env.WEBHOOK_SECRET!);
import { createHmac, timingSafeEqual } from 'node:crypto';

import { PlutosError } from './errors.js';

/** Thrown when a delivery's headers, timestamp, signature or JSON do not check out. */
export class WebhookVerificationError extends PlutosError {
  constructor(message: string) {
    super(message, { code: 'webhook_verification_failed' });
  }
}

/** Seconds a delivery's timestamp may differ from now. */
export const DEFAULT_WEBHOOK_TOLERANCE = 300;

export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

function key(secret: string): Buffer {
  if (!secret) throw new WebhookVerificationError('no webhook secret given');
  if (secret.startsWith('whsec_')) {
    // Padding optional, as Standard Webhooks libraries read it.
    const bare = secret.slice('whsec_'.length);
    const encoded = bare + '='.repeat((4 - (bare.length % 4)) % 4);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(encoded) || encoded.length % 4 !== 0 || bare.length % 4 === 1) {
      throw new WebhookVerificationError('the whsec_ secret is not valid base64');
    }
    return Buffer.from(encoded, 'base64');
  }
  return Buffer.from(secret, 'utf8');
}

function header(headers: WebhookHeaders, name: string): string {
  let value: string | string[] | null | undefined;
  if (typeof Headers !== 'undefined' && headers instanceof Headers) {
    value = headers.get(name);
  } else {
    const record = headers as Record<string, string | string[] | undefined>;
    value = record[name] ?? Object.entries(record).find(([k]) => k.toLowerCase() === name)?.[1];
  }
  const text = Array.isArray(value) ? value.join(' ') : value;
  if (text == null || text === '') throw new WebhookVerificationError(`missing ${name} header`);
  return text;
}

function bytes(payload: string | Uint8Array): Buffer {
  return typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload);
}

/** The `webhook-signature` header value (one `v1,` signature) for a payload: for testing a receiver. */
export function signWebhook(
  payload: string | Uint8Array,
  options: { msgId: string; timestamp: number; secret: string },
): string {
  const hmac = createHmac('sha256', key(options.secret));
  hmac.update(`${options.msgId}.${options.timestamp}.`);
  hmac.update(bytes(payload));
  return `v1,${hmac.digest('base64')}`;
}

/**
 * Checks a delivery's signature and timestamp and returns its parsed JSON payload.
 * `payload` is the raw body exactly as received; `tolerance` is in seconds; `now` (Unix seconds) is for tests.
 * @throws WebhookVerificationError
 */
export function verifyWebhook(
  payload: string | Uint8Array,
  headers: WebhookHeaders,
  secret: string,
  options: { tolerance?: number; now?: number } = {},
): unknown {
  const msgId = header(headers, 'webhook-id');
  const rawTimestamp = header(headers, 'webhook-timestamp');
  const signatures = header(headers, 'webhook-signature');
  if (!/^\d+$/.test(rawTimestamp.trim())) throw new WebhookVerificationError('invalid webhook-timestamp header');
  const timestamp = Number(rawTimestamp.trim());
  const now = options.now ?? Date.now() / 1000;
  const tolerance = options.tolerance ?? DEFAULT_WEBHOOK_TOLERANCE;
  if (timestamp < now - tolerance) throw new WebhookVerificationError('webhook timestamp too old');
  if (timestamp > now + tolerance) throw new WebhookVerificationError('webhook timestamp too new');
  const expected = Buffer.from(signWebhook(payload, { msgId, timestamp, secret }), 'ascii');
  let matched = false;
  for (const candidate of signatures.split(/\s+/)) {
    const given = Buffer.from(candidate, 'ascii');
    // Every v1 signature is compared in constant time, without stopping at the first match.
    if (candidate.startsWith('v1,') && given.length === expected.length && timingSafeEqual(given, expected)) {
      matched = true;
    }
  }
  if (!matched) throw new WebhookVerificationError('no matching webhook signature');
  try {
    return JSON.parse(bytes(payload).toString('utf8')) as unknown;
  } catch {
    throw new WebhookVerificationError('the webhook payload is not valid JSON');
  }
}
