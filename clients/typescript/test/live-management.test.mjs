// The management methods against a running server; skipped unless PLUTOS_TEST_BASE_URL and
// PLUTOS_TEST_ADMIN_KEY (a key with the admin scope: `plutos keys create --admin`) are set.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  AccountSuspendedError,
  AuthenticationError,
  ConflictError,
  InvalidParametersError,
  NotFoundError,
  PermissionDeniedError,
  PlutosAI,
} from '@plutos-ai/sdk';

const baseUrl = process.env.PLUTOS_TEST_BASE_URL;
const adminKey = process.env.PLUTOS_TEST_ADMIN_KEY;
const skip = baseUrl && adminKey ? false : 'set PLUTOS_TEST_BASE_URL and PLUTOS_TEST_ADMIN_KEY to run';
const SELF_SERVICE = ['process', 'batch', 'stream', 'models', 'usage', 'webhooks', 'keys'];

describe('live management', { skip }, () => {
  test('operator creates an account and a key; the key manages its own keys', async () => {
    const admin = new PlutosAI({ apiKey: adminKey, baseUrl, timeout: 60_000 });
    const { account } = await admin.createAccount({ name: 'sdk-ts', plan: 'free' });
    assert.equal(account.plan, 'free');
    assert.equal(account.suspended, false);
    const owner = await admin.createKey({ accountId: account.id, name: 'owner', scopes: SELF_SERVICE });
    assert.match(owner.secret, /^pk_/);
    assert.equal(owner.key.accountId, account.id);
    assert.equal((await admin.listKeys({ accountId: account.id })).keys.length, 1);

    const client = new PlutosAI({ apiKey: owner.secret, baseUrl, timeout: 60_000 });
    const child = await client.createKey({ name: 'child', scopes: ['models'], limits: { requestsPerMinute: 5 } });
    assert.deepEqual(child.key.scopes, ['models']);
    assert.equal(child.key.limits.requestsPerMinute, 5);
    assert.equal((await client.updateKey(child.key.id, { name: 'renamed' })).name, 'renamed');
    const rotated = await client.rotateKey(child.key.id, { graceSeconds: 60 });
    assert.equal(rotated.replaced.replacedBy, rotated.key.id);
    await assert.rejects(client.rotateKey(child.key.id), ConflictError);
    const revoked = await client.revokeKey(rotated.key.id);
    assert.equal(revoked.status, 'revoked');
    assert.equal(child.key.lastUsedAt, undefined, 'a key never used has no lastUsedAt');
    await assert.rejects(client.createKey({ scopes: ['admin'] }), InvalidParametersError);
    await assert.rejects(client.revokeKey(owner.key.id), InvalidParametersError);
    await assert.rejects(client.getKey('key_0000000000000000'), NotFoundError);
    await assert.rejects(client.listAccounts(), PermissionDeniedError);

    const page = await client.listProcesses({ limit: 5 });
    assert.deepEqual(page.data, []);
    assert.equal(page.hasMore, false);
    assert.deepEqual((await client.getDailyUsage()).data, []);
    const hook = await client.createWebhook({ url: 'http://127.0.0.1:9/sdk-ts', events: ['processing.completed'] });
    assert.match(hook.secret ?? '', /^whsec_/, 'a webhook created without a secret gets a generated one');
    const ping = await client.testWebhook(hook.id);
    assert.equal(ping.delivered, false);
    assert.ok(ping.error);
    const deliveries = await client.listWebhookDeliveries(hook.id);
    assert.deepEqual(deliveries.data, []);
    assert.match(deliveries._requestId ?? '', /^req_/);
    await assert.rejects(client.redeliverWebhookDelivery(hook.id, 'msg_0000000000000000'), NotFoundError);
    await client.deleteWebhook(hook.id);

    assert.equal((await admin.updateAccount(account.id, { suspended: true })).account.suspended, true);
    await assert.rejects(client.listKeys(), AccountSuspendedError);
    await admin.updateAccount(account.id, { suspended: false });
    await client.revokeKey(owner.key.id, { allowSelf: true });
    await assert.rejects(client.listKeys(), AuthenticationError);

    const audit = await admin.listAuditEvents({ accountId: account.id, limit: 100 });
    assert.equal(audit.data.at(-1).action, 'account.created');
    assert.equal(audit.data[0].action, 'key.revoked');
    const accounts = await admin.listAccounts({ limit: 100 });
    assert.ok(accounts.data.some((a) => a.id === account.id));

    // Every result carries its response's request id, the key-returning methods included.
    const results = [
      ['createAccount', await admin.getAccount(account.id)],
      ['createKey', child],
      ['listKeys', await admin.listKeys({ accountId: account.id })],
      ['getKey', await admin.getKey(owner.key.id, { accountId: account.id })],
      ['updateKey', await admin.updateKey(owner.key.id, { name: 'owner2' }, { accountId: account.id })],
      ['rotateKey', rotated],
      ['revokeKey', revoked],
      ['listProcesses', page],
      ['getDailyUsage', await admin.getDailyUsage()],
      ['testWebhook', ping],
      ['listAccounts', await admin.listAccounts({ limit: 1 })],
      ['listAuditEvents', await admin.listAuditEvents({ limit: 1 })],
    ];
    for (const [name, result] of results) assert.match(result._requestId ?? '', /^req_/, name);
  });
});
