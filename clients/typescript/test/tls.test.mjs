// Against a server in TLS mode (tests/test_tls.py runs this with certificates it made); skipped unless
// PLUTOS_TEST_TLS_BASE_URL (https://...) and PLUTOS_TEST_TLS_CA_FILE are set.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { APIConnectionError, AuthenticationError, PlutosAI } from '@plutos-ai/sdk';

const baseUrl = process.env.PLUTOS_TEST_TLS_BASE_URL;
const caFile = process.env.PLUTOS_TEST_TLS_CA_FILE;
const cert = process.env.PLUTOS_TEST_TLS_CLIENT_CERT;
const key = process.env.PLUTOS_TEST_TLS_CLIENT_KEY;
const skip = !baseUrl || !caFile ? 'set PLUTOS_TEST_TLS_BASE_URL and PLUTOS_TEST_TLS_CA_FILE' : false;

test('HTTPS with a CA bundle and a client certificate: TLS passes, the wrong key does not', { skip }, async () => {
  const client = new PlutosAI({ apiKey: 'pk_wrong', baseUrl, maxRetries: 0, caFile, clientCert: [cert, key] });
  await assert.rejects(client.listModels(), (e) => e instanceof AuthenticationError && e.status === 401);
});

test('HTTPS without the CA bundle fails to connect (Node does not know the CA)', { skip }, async () => {
  const client = new PlutosAI({ apiKey: 'pk_wrong', baseUrl, maxRetries: 0 });
  await assert.rejects(client.listModels(), (e) => e instanceof APIConnectionError);
});
