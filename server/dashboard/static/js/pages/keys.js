// Keys: list; create (the secret shown once, with a copy button and a warning); rename; rotate with
// a grace period; revoke with a confirmation. `#/keys/<accountId>` manages another account's keys
// with an admin key.
import { get, patch, post, session } from '../api.js';
import { confirmDialog, dialog, empty, errorBox, field, fmtTime, h, loading, notAvailable, secretBox, table } from '../dom.js';

const SCOPES = ['process', 'batch', 'stream', 'models', 'usage', 'webhooks', 'keys'];

export async function render(view, params, ctx) {
  const accountId = params[0] || '';
  const base = accountId ? `/v1/admin/accounts/${encodeURIComponent(accountId)}/keys` : '/v1/keys';
  if (accountId) view.append(h('p', {}, h('a', { href: '#/operator' }, '← Accounts')));
  view.append(h('h1', { id: 'page-title' }, accountId ? ['Keys of ', h('code', {}, accountId)] : 'API keys'));
  const notice = h('div', { class: 'notice-area', 'aria-live': 'polite' });
  const listBox = h('div', { 'aria-live': 'polite' });

  const name = h('input', { type: 'text', name: 'name', maxlength: 200, autocomplete: 'off', placeholder: 'my-app' });
  const scopeBoxes = SCOPES.map((s) => h('input', { type: 'checkbox', name: 'scopes', value: s }));
  const models = h('input', { type: 'text', name: 'models', autocomplete: 'off', placeholder: 'all the models this key may use' });
  const expires = h('input', { type: 'date', name: 'expires' });
  const form = h(
    'form',
    { class: 'panel form-grid', 'aria-labelledby': 'key-create-title' },
    h('h2', { id: 'key-create-title' }, 'Create a key'),
    field('Name', name),
    h('fieldset', {}, h('legend', {}, 'Scopes (none ticked: the same as the signed-in key)'), scopeBoxes.map((b) => h('label', { class: 'check' }, b, b.value))),
    field('Models', models, 'Comma-separated model ids; empty: the same as the signed-in key'),
    field('Expires', expires, 'Optional (UTC midnight)'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create key')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { name: name.value.trim() };
    const scopes = scopeBoxes.filter((b) => b.checked).map((b) => b.value);
    if (scopes.length) body.scopes = scopes;
    const modelList = models.value.split(',').map((m) => m.trim()).filter(Boolean);
    if (modelList.length) body.models = modelList;
    if (expires.value) body.expiresAt = `${expires.value}T00:00:00Z`;
    notice.replaceChildren();
    try {
      const { data } = await post(base, body);
      notice.replaceChildren(
        h('h2', {}, 'Key created: ', h('span', { class: 'key-name' }, data.key?.name || data.key?.id || '')),
        secretBox(data.secret),
      );
      form.reset();
      await loadList();
      notice.querySelector('input.secret')?.focus();
    } catch (err) {
      notice.replaceChildren(errorBox(err, 'Could not create the key'));
    }
  });

  function isSelf(k) {
    return !accountId && k.prefix && (session.key || '').startsWith(k.prefix);
  }

  async function rename(k) {
    const input = h('input', { type: 'text', value: k.name || '', maxlength: 200, 'aria-label': 'New name' });
    input.addEventListener('keydown', (e) => e.key === 'Enter' && input.closest('dialog').close('confirm'));
    const answer = await dialog('Rename key', [h('p', {}, 'Key ', h('code', {}, k.prefix || k.id)), input], [
      { label: 'Cancel', value: 'cancel' },
      { label: 'Rename', value: 'confirm', class: 'primary' },
    ]);
    if (answer !== 'confirm') return;
    try {
      await patch(`${base}/${encodeURIComponent(k.id)}`, { name: input.value.trim(), updateMask: 'name' });
      await loadList();
    } catch (err) {
      notice.replaceChildren(errorBox(err, 'Could not rename the key'));
    }
  }

  async function rotate(k) {
    const grace = h('input', { type: 'number', min: 0, max: 2592000, step: 1, value: '86400', 'aria-label': 'Grace period in seconds' });
    const answer = await dialog('Rotate key', [
      h('p', {}, 'A new secret replaces ', h('code', {}, k.prefix || k.id), '. The old one keeps working during the grace period, then stops.'),
      h('label', {}, 'Grace period (seconds, 0 to 2592000) ', grace),
    ], [
      { label: 'Cancel', value: 'cancel' },
      { label: 'Rotate', value: 'confirm', class: 'primary' },
    ]);
    if (answer !== 'confirm') return;
    try {
      const { data } = await post(`${base}/${encodeURIComponent(k.id)}:rotate`, { graceSeconds: Number(grace.value || 0) });
      notice.replaceChildren(
        h('h2', {}, 'Key rotated'),
        secretBox(data.secret, `It replaces ${k.prefix || k.id}, which works until ${fmtTime(data.replaced?.expiresAt)}. The new key is shown only this once.`),
      );
      await loadList();
    } catch (err) {
      notice.replaceChildren(errorBox(err, 'Could not rotate the key'));
    }
  }

  async function revoke(k) {
    const self = isSelf(k);
    const ok = await confirmDialog(
      'Revoke key?',
      self
        ? `${k.prefix} is the key you are signed in with. Revoking it signs you out and every client using it stops working.`
        : `Every client using ${k.prefix || k.id}${k.name ? ` (${k.name})` : ''} stops working within seconds. This cannot be undone.`,
      'Revoke',
    );
    if (!ok) return;
    try {
      await post(`${base}/${encodeURIComponent(k.id)}:revoke`, self ? { allowSelf: true } : {});
      if (self) {
        ctx.signOut();
        return;
      }
      await loadList();
    } catch (err) {
      notice.replaceChildren(errorBox(err, 'Could not revoke the key'));
    }
  }

  async function loadList() {
    listBox.replaceChildren(loading());
    let keys;
    try {
      ({ data: { keys = [] } = {} } = await get(base));
    } catch (err) {
      if (err.missingRoute) listBox.replaceChildren(notAvailable('Key management'));
      else if (err.status === 403) listBox.replaceChildren(errorBox(err, 'This key may not manage keys (it needs the "keys" scope)'));
      else listBox.replaceChildren(errorBox(err, 'Could not load the keys'));
      form.hidden = Boolean(err.missingRoute || err.status === 403);
      return;
    }
    if (!keys.length) {
      listBox.replaceChildren(empty('No keys.'));
      return;
    }
    listBox.replaceChildren(
      table(
        [
          { label: 'Prefix', value: (k) => h('code', {}, `${k.prefix || ''}…`) },
          { label: 'Name', value: (k) => h('span', { class: 'key-name' }, k.name || ''), class: 'name' },
          { label: 'Status', value: (k) => h('span', { class: `badge status-${k.status}` }, k.status || '', isSelf(k) ? ' (this session)' : '') },
          { label: 'Scopes', value: (k) => (k.scopes || []).join(', ') },
          { label: 'Models', value: (k) => ((k.models || []).length ? k.models.join(', ') : 'all') },
          { label: 'Created', value: (k) => fmtTime(k.createdAt) },
          // Written by the server within a minute of a call (docs/management-api.md).
          { label: 'Last used', value: (k) => (k.lastUsedAt ? fmtTime(k.lastUsedAt) : 'never') },
          { label: 'Expires', value: (k) => (k.expiresAt ? fmtTime(k.expiresAt) : 'never') },
          {
            label: 'Actions',
            value: (k) => {
              const active = !k.status || k.status === 'active';
              return h(
                'div',
                { class: 'row-actions' },
                h('button', { type: 'button', class: 'small', 'aria-label': `Rename ${k.prefix}`, disabled: k.status === 'revoked', onclick: () => rename(k) }, 'Rename'),
                h('button', { type: 'button', class: 'small', 'aria-label': `Rotate ${k.prefix}`, disabled: !active, onclick: () => rotate(k) }, 'Rotate'),
                h('button', { type: 'button', class: 'small danger', 'aria-label': `Revoke ${k.prefix}`, disabled: k.status === 'revoked' || k.status === 'expired', onclick: () => revoke(k) }, 'Revoke'),
              );
            },
          },
        ],
        keys,
        { caption: 'Keys (only their prefixes are kept readable)', className: 'compact' },
      ),
    );
  }

  view.append(notice, listBox, form);
  await loadList();
}
