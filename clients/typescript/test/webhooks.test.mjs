// Webhook signatures: the same vectors as the Python SDK's `webhooks.sign` (Standard Webhooks).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { PlutosError, signWebhook, verifyWebhook, WebhookVerificationError } from '../dist/esm/index.js';

const BODY =
  '{"event":"processing.completed","timestamp":"2026-11-30T12:00:00Z","data":{"id":"proc_0123456789abcdef"}}';
const WHSEC = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const TS = 1764504000;
// Computed by clients/python's plutos_ai.webhooks.sign.
const SIG_WHSEC = 'v1,j5OEjJNB2uv/EoTm3UOPNH7Bk9V4YHbq4U3Zu6ox9a8=';
const SIG_PLAIN = 'v1,w87jIuLZsif2n8C7w3adOYifGnKRV1yQQ/t/NjLtCxE=';

const headers = (signature, timestamp = TS) => ({
  'webhook-id': 'msg_2Lq',
  'webhook-timestamp': String(timestamp),
  'webhook-signature': signature,
});

describe('webhooks', () => {
  test('signs like the Python SDK', () => {
    assert.equal(signWebhook(BODY, { msgId: 'msg_2Lq', timestamp: TS, secret: WHSEC }), SIG_WHSEC);
    assert.equal(signWebhook(BODY, { msgId: 'msg_2Lq', timestamp: TS, secret: 'plain-secret' }), SIG_PLAIN);
  });

  test('verifies a delivery and returns its payload', () => {
    const event = verifyWebhook(BODY, headers(`v1,bogus ${SIG_WHSEC}`), WHSEC, { now: TS + 10 });
    assert.equal(event.data.id, 'proc_0123456789abcdef');
    const fromHeaders = new Headers(headers(SIG_PLAIN));
    assert.equal(verifyWebhook(Buffer.from(BODY), fromHeaders, 'plain-secret', { now: TS }).event, 'processing.completed');
  });

  test('refuses tampered, stale, unsigned or unparsable deliveries', () => {
    const cases = [
      [BODY.replace('proc_', 'proc-'), headers(SIG_WHSEC), 'no matching webhook signature'],
      [BODY, headers(SIG_WHSEC, TS - 1000), 'webhook timestamp too old'],
      [BODY, headers(SIG_WHSEC, TS + 1000), 'webhook timestamp too new'],
      [BODY, { 'webhook-id': 'msg_2Lq', 'webhook-timestamp': String(TS) }, 'missing webhook-signature header'],
      [BODY, headers(SIG_WHSEC, 'soon'), 'invalid webhook-timestamp header'],
    ];
    for (const [body, given, message] of cases) {
      assert.throws(
        () => verifyWebhook(body, given, WHSEC, { now: TS }),
        (err) => err instanceof WebhookVerificationError && err instanceof PlutosError && err.message === message,
      );
    }
    const notJson = 'not json';
    const sig = signWebhook(notJson, { msgId: 'msg_2Lq', timestamp: TS, secret: WHSEC });
    assert.throws(() => verifyWebhook(notJson, headers(sig), WHSEC, { now: TS }), /not valid JSON/);
  });
});
