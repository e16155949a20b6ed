// Webhooks: endpoints with their events; create, delete; each endpoint's deliveries (status,
// attempts, last answer), redeliver, send a test event.
import { del, get, post } from '../api.js';
import { confirmDialog, empty, errorBox, field, fmtTime, h, loading, notAvailable, table } from '../dom.js';

const EVENTS = ['processing.completed', 'processing.failed', 'usage.threshold'];

export async function render(view, params) {
  if (params[0]) return renderDeliveries(view, params[0]);
  view.append(h('h1', { id: 'page-title' }, 'Webhooks'));
  const listBox = h('div', { 'aria-live': 'polite' });
  const url = h('input', { type: 'url', name: 'url', required: true, placeholder: 'https://example.com/hooks/plutos', autocomplete: 'off' });
  const secret = h('input', { type: 'password', name: 'secret', autocomplete: 'new-password', placeholder: 'optional' });
  const boxes = EVENTS.map((ev) => h('input', { type: 'checkbox', name: 'events', value: ev, checked: ev === 'processing.completed' }));
  const formStatus = h('div', { 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'panel form-grid', 'aria-labelledby': 'wh-create-title' },
    h('h2', { id: 'wh-create-title' }, 'Add an endpoint'),
    field('Endpoint URL', url),
    h('fieldset', {}, h('legend', {}, 'Events'), boxes.map((b) => h('label', { class: 'check' }, b, b.value))),
    field('Signing secret', secret, 'Deliveries are signed with it (Standard Webhooks headers). Leave empty to have one generated: it is shown once.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add endpoint')),
    formStatus,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const events = boxes.filter((b) => b.checked).map((b) => b.value);
    formStatus.replaceChildren();
    if (!url.value.trim() || !events.length) {
      formStatus.append(errorBox({ message: 'Give a URL and at least one event.' }, 'Cannot add the endpoint'));
      return;
    }
    const body = { url: url.value.trim(), events };
    if (secret.value) body.secret = secret.value;
    try {
      const { data } = await post('/v1/webhooks', body);
      formStatus.append(h('p', { class: 'ok', role: 'status' }, 'Added ', h('code', {}, data.id), '.'));
      if (data.secret) {
        formStatus.append(h('p', {}, 'Signing secret (shown only now, store it): ', h('code', { class: 'secret' }, data.secret)));
      }
      form.reset();
      boxes[0].checked = true;
      await loadList();
    } catch (err) {
      formStatus.append(errorBox(err, 'Could not add the endpoint'));
    }
  });

  async function loadList() {
    listBox.replaceChildren(loading());
    let hooks;
    try {
      ({ data: { webhooks: hooks = [] } = {} } = await get('/v1/webhooks'));
    } catch (err) {
      listBox.replaceChildren(err.missingRoute ? notAvailable('Webhooks') : errorBox(err, 'Could not load the webhooks'));
      return;
    }
    if (!hooks.length) {
      listBox.replaceChildren(empty('No webhook endpoints yet.'));
      return;
    }
    listBox.replaceChildren(
      table(
        [
          { label: 'URL', value: (w) => h('span', { class: 'url' }, w.url) },
          { label: 'Events', value: (w) => (w.events || []).join(', ') },
          { label: 'Signed', value: (w) => (w.hasSecret ? 'Yes' : 'No') },
          { label: 'Created', value: (w) => fmtTime(w.createdAt) },
          {
            label: 'Actions',
            value: (w) =>
              h(
                'div',
                { class: 'row-actions' },
                h('a', { href: `#/webhooks/${encodeURIComponent(w.id)}`, class: 'button small', 'aria-label': `Deliveries of ${w.url}` }, 'Deliveries'),
                h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete ${w.url}`, onclick: () => remove(w) }, 'Delete'),
              ),
          },
        ],
        hooks,
        { caption: 'Webhook endpoints' },
      ),
    );
  }

  async function remove(w) {
    if (!(await confirmDialog('Delete webhook endpoint?', `Deliveries to ${w.url} stop. This cannot be undone.`, 'Delete'))) return;
    try {
      await del(`/v1/webhooks/${encodeURIComponent(w.id)}`);
      await loadList();
    } catch (err) {
      listBox.prepend(errorBox(err, 'Could not delete the endpoint'));
    }
  }

  view.append(h('h2', {}, 'Endpoints'), listBox, form);
  await loadList();
  return undefined;
}

function answer(d) {
  const code = d.lastStatusCode ?? d.lastHttpStatus ?? d.responseStatus ?? d.statusCode;
  const error = d.lastError ?? d.error;
  if (code) return `HTTP ${code}${error ? ` — ${error}` : ''}`;
  return error || '—';
}

async function renderDeliveries(view, id) {
  view.append(
    h('p', {}, h('a', { href: '#/webhooks' }, '← All webhooks')),
    h('h1', { id: 'page-title' }, 'Deliveries'),
  );
  const head = h('div', { class: 'panel' });
  const testStatus = h('div', { 'aria-live': 'polite' });
  const listBox = h('div', { 'aria-live': 'polite' });
  try {
    const { data } = await get('/v1/webhooks');
    const hook = (data.webhooks || []).find((w) => w.id === id);
    if (!hook) {
      view.append(errorBox({ message: `No webhook ${id} on this account.`, code: 'not_found' }, 'Not found'));
      return undefined;
    }
    head.append(h('p', {}, h('span', { class: 'url' }, hook.url)), h('p', { class: 'muted' }, `Events: ${(hook.events || []).join(', ')}`));
  } catch (err) {
    view.append(errorBox(err, 'Could not load the webhook'));
    return undefined;
  }
  const testButton = h('button', { type: 'button' }, 'Send test event');
  testButton.addEventListener('click', async () => {
    testButton.disabled = true;
    testStatus.replaceChildren(loading('Sending a ping…'));
    try {
      const { data } = await post(`/v1/webhooks/${encodeURIComponent(id)}:test`, {});
      testStatus.replaceChildren(h('p', { role: 'status', class: 'test-result' }, `Test event sent. Receiver answered: ${answer(data)}`));
      await loadDeliveries();
    } catch (err) {
      testStatus.replaceChildren(err.missingRoute ? notAvailable('Sending a test event') : errorBox(err, 'Could not send the test event'));
    } finally {
      testButton.disabled = false;
    }
  });
  head.append(h('div', { class: 'actions' }, testButton), testStatus);
  view.append(head, h('h2', {}, 'Recent deliveries'), listBox);

  let cursor = '';
  const cursors = [];
  async function loadDeliveries() {
    listBox.replaceChildren(loading());
    let data;
    try {
      ({ data } = await get(`/v1/webhooks/${encodeURIComponent(id)}/deliveries`, { limit: 20, after: cursor }));
    } catch (err) {
      listBox.replaceChildren(err.missingRoute ? notAvailable('Webhook delivery history') : errorBox(err, 'Could not load the deliveries'));
      return;
    }
    const rows = data.deliveries || data.data || [];
    const next = data.hasMore && data.lastId ? data.lastId : '';
    if (!rows.length) {
      listBox.replaceChildren(empty(cursor ? 'No more deliveries.' : 'No deliveries yet. Send a test event, or make a request with this key.'));
    } else {
      listBox.replaceChildren(
        table(
          [
            { label: 'Event', value: (d) => d.event || d.eventType || '' },
            { label: 'Status', value: (d) => h('span', { class: `badge status-${d.status}` }, d.status || '') },
            { label: 'Attempts', value: (d) => String(d.attempts ?? 0), class: 'num' },
            { label: 'Last answer', value: (d) => answer(d) },
            { label: 'Next attempt', value: (d) => fmtTime(d.nextAttemptAt) },
            { label: 'Created', value: (d) => fmtTime(d.createdAt) },
            {
              label: 'Actions',
              value: (d) => h('button', { type: 'button', class: 'small', 'aria-label': `Redeliver ${d.id}`, onclick: (e) => redeliver(d, e.currentTarget) }, 'Redeliver'),
            },
          ],
          rows,
          { caption: 'Deliveries, newest first' },
        ),
      );
    }
    const pager = h('div', { class: 'pager' });
    if (cursors.length) pager.append(h('button', { type: 'button', onclick: () => { cursor = cursors.pop(); loadDeliveries(); } }, 'Previous page'));
    if (next) pager.append(h('button', { type: 'button', onclick: () => { cursors.push(cursor); cursor = next; loadDeliveries(); } }, 'Next page'));
    listBox.append(pager);
  }

  async function redeliver(d, button) {
    button.disabled = true;
    try {
      await post(`/v1/webhooks/${encodeURIComponent(id)}/deliveries/${encodeURIComponent(d.id)}:redeliver`, {});
      testStatus.replaceChildren(h('p', { role: 'status', class: 'ok' }, `Delivery ${d.id} queued again.`));
      await loadDeliveries();
    } catch (err) {
      testStatus.replaceChildren(errorBox(err, 'Could not redeliver'));
      button.disabled = false;
    }
  }

  await loadDeliveries();
  return undefined;
}
