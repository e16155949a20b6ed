// Requests: the account's request history (newest first, paged, filtered by model, status and
// date); a row opens the stored record.
import { get } from '../api.js';
import { empty, errorBox, field, fmtInt, fmtTime, h, loading, notAvailable, table } from '../dom.js';

const PAGE_SIZE = 20;

function preview(text, n = 80) {
  const s = String(text || '').replace(/\s+/g, ' ');
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

export async function render(view, params) {
  if (params[0]) return renderRecord(view, params[0]);
  view.append(h('h1', { id: 'page-title' }, 'Requests'));
  const model = h('input', { type: 'text', name: 'model', placeholder: 'any', autocomplete: 'off' });
  const status = h('select', { name: 'status' }, ['', 'completed', 'failed', 'cancelled'].map((s) => h('option', { value: s }, s || 'any')));
  const start = h('input', { type: 'date', name: 'start_date' });
  const end = h('input', { type: 'date', name: 'end_date' });
  const form = h(
    'form',
    { class: 'toolbar', 'aria-label': 'Filter requests' },
    field('Model', model),
    field('Status', status),
    field('From', start),
    field('To', end),
    h('button', { type: 'submit', class: 'primary' }, 'Filter'),
  );
  const listBox = h('div', { 'aria-live': 'polite' });
  view.append(form, listBox);

  let cursor = '';
  let cursors = [];
  async function load() {
    listBox.replaceChildren(loading());
    let data;
    try {
      ({ data } = await get('/v1/process', {
        limit: PAGE_SIZE,
        after: cursor,
        model: model.value.trim(),
        status: status.value,
        start_date: start.value,
        end_date: end.value,
      }));
    } catch (err) {
      const missing = err.missingRoute || err.code === 'method_not_allowed';
      listBox.replaceChildren(missing ? notAvailable('Request history') : errorBox(err, 'Could not load the requests'));
      form.hidden = missing;
      return;
    }
    const rows = data.data || [];
    const next = data.hasMore ? data.lastId || rows[rows.length - 1]?.id || '' : '';
    if (!rows.length) {
      listBox.replaceChildren(empty(cursor ? 'No more requests.' : 'No requests match. Run one in the Playground.'));
    } else {
      listBox.replaceChildren(
        table(
          [
            { label: 'Created', value: (r) => fmtTime(r.createdAt) },
            { label: 'Id', value: (r) => h('a', { href: `#/requests/${encodeURIComponent(r.id)}` }, r.id) },
            { label: 'Model', value: (r) => h('code', {}, r.model || '') },
            { label: 'Status', value: (r) => h('span', { class: `badge status-${r.status}` }, r.status || '') },
            { label: 'Input', value: (r) => h('span', { class: 'preview' }, preview(r.input)) },
            { label: 'Tokens', value: (r) => fmtInt(r.usage?.totalTokens), class: 'num' },
            { label: 'Time (ms)', value: (r) => fmtInt(r.processingTime), class: 'num' },
          ],
          rows,
          {
            caption: 'Requests, newest first',
            onRowClick: (r) => { window.location.hash = `#/requests/${encodeURIComponent(r.id)}`; },
            rowLabel: (r) => `Open ${r.id}`,
          },
        ),
      );
    }
    const pager = h('div', { class: 'pager' });
    if (cursors.length) pager.append(h('button', { type: 'button', onclick: () => { cursor = cursors.pop(); load(); } }, 'Previous page'));
    if (next) pager.append(h('button', { type: 'button', onclick: () => { cursors.push(cursor); cursor = next; load(); } }, 'Next page'));
    listBox.append(pager);
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    cursor = '';
    cursors = [];
    load();
  });
  await load();
  return undefined;
}

async function renderRecord(view, id) {
  view.append(h('p', {}, h('a', { href: '#/requests' }, '← All requests')), h('h1', { id: 'page-title' }, 'Request ', h('code', {}, id)));
  let r;
  try {
    ({ data: r } = await get(`/v1/process/${encodeURIComponent(id)}`));
  } catch (err) {
    view.append(errorBox(err, 'Could not load the record'));
    return undefined;
  }
  const u = r.usage || {};
  const opts = r.options || {};
  view.append(
    h(
      'dl',
      { class: 'kv panel' },
      h('dt', {}, 'Status'), h('dd', {}, h('span', { class: `badge status-${r.status}` }, r.status || '')),
      h('dt', {}, 'Model'), h('dd', {}, h('code', {}, r.model || '')),
      h('dt', {}, 'Created'), h('dd', {}, fmtTime(r.createdAt)),
      h('dt', {}, 'Processing time'), h('dd', {}, `${fmtInt(r.processingTime)} ms`),
      h('dt', {}, 'Usage'), h('dd', {}, `${fmtInt(u.promptTokens)} prompt + ${fmtInt(u.completionTokens)} completion = ${fmtInt(u.totalTokens)} tokens`),
      h('dt', {}, 'Record id'), h('dd', {}, h('code', {}, r.id)),
      r.errorCode ? [h('dt', {}, 'Error'), h('dd', {}, h('code', {}, r.errorCode))] : null,
      r.cached ? [h('dt', {}, 'Cached'), h('dd', { id: 'record-cached' }, 'yes: answered from the response cache, no model ran')] : null,
      r.batchId ? [h('dt', {}, 'Batch'), h('dd', {}, h('code', {}, r.batchId), r.batchIndex !== undefined ? ` (item ${r.batchIndex})` : '')] : null,
    ),
    h('h2', {}, 'Input'),
    h('pre', { class: 'output', id: 'record-input', tabindex: '0' }, r.input || ''),
    h('h2', {}, 'Output'),
    h('pre', { class: 'output', id: 'record-output', tabindex: '0' }, r.output || ''),
    h('h2', {}, 'Options'),
    h('pre', { class: 'snippet', tabindex: '0' }, JSON.stringify(opts, null, 2)),
  );
  return undefined;
}
