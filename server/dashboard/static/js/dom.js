// DOM helpers. Every piece of text goes in as a text node or through textContent, never as HTML:
// model outputs, inputs, key names and webhook URLs are untrusted.

/** h('button', {class: 'x', onclick: fn, 'aria-label': '...'}, 'text', child, [more]) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name === 'value') el.value = value;
    else if (name === 'checked') el.checked = Boolean(value);
    else if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

let uid = 0;
/** A labelled form field: returns [wrapper, control]. */
export function field(label, control, hint) {
  const id = control.id || `f${++uid}`;
  control.id = id;
  const hintEl = hint ? h('small', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
}

export function loading(text = 'Loading…') {
  return h('p', { class: 'state loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

export function empty(text) {
  return h('p', { class: 'state empty' }, text);
}

/** An API error as the person should see it: the envelope's message, code and request id. */
export function errorBox(err, title = 'Something went wrong') {
  const box = h('div', { class: 'error-box', role: 'alert' }, h('strong', {}, title), h('p', { class: 'error-message' }, err.message || String(err)));
  const meta = [];
  if (err.code) meta.push(h('span', {}, 'Code: ', h('code', {}, err.code)));
  if (err.requestId) meta.push(h('span', {}, 'Request id: ', h('code', { class: 'request-id' }, err.requestId)));
  if (meta.length) box.append(h('p', { class: 'error-meta' }, meta));
  return box;
}

/** The page's feature is missing from this server (the API answered 404 for its route). */
export function notAvailable(what, err) {
  return h(
    'div',
    { class: 'not-available', role: 'status' },
    h('strong', {}, `${what} is not available on this server.`),
    h('p', {}, 'The server answered 404 for its API endpoint; it may be an older version of PlutosAI.'),
    err && err.requestId ? h('p', { class: 'error-meta' }, 'Request id: ', h('code', {}, err.requestId)) : null,
  );
}

/** A table from column specs [{label, value: row => text|Node, class}] and rows. */
export function table(columns, rows, { caption, onRowClick, rowLabel, className } = {}) {
  const head = h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label))));
  const body = h('tbody');
  for (const row of rows) {
    const tr = h('tr', {}, columns.map((c) => h('td', { class: c.class, 'data-label': c.label }, c.value(row))));
    if (onRowClick) {
      tr.classList.add('clickable');
      tr.tabIndex = 0;
      if (rowLabel) tr.setAttribute('aria-label', rowLabel(row));
      tr.addEventListener('click', (e) => {
        if (!e.target.closest('button, a, input, select')) onRowClick(row);
      });
      tr.addEventListener('keydown', (e) => {
        if ((e.key === 'Enter' || e.key === ' ') && e.target === tr) {
          e.preventDefault();
          onRowClick(row);
        }
      });
    }
    body.append(tr);
  }
  return h('div', { class: 'table-wrap' }, h('table', className ? { class: className } : {}, caption ? h('caption', {}, caption) : null, head, body));
}

/** A modal <dialog>; resolves with the button's value ('cancel' on Escape). */
export function dialog(title, content, buttons = [{ label: 'Close', value: 'close' }]) {
  return new Promise((resolve) => {
    const titleId = `dlg${++uid}`;
    const dlg = h(
      'dialog',
      { 'aria-labelledby': titleId },
      h('h2', { id: titleId }, title),
      h('div', { class: 'dialog-body' }, content),
      h(
        'div',
        { class: 'dialog-actions' },
        buttons.map((b) => h('button', { type: 'button', class: b.class || '', onclick: () => dlg.close(b.value) }, b.label)),
      ),
    );
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(dlg.returnValue || 'cancel');
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

export async function confirmDialog(title, text, confirmLabel) {
  const answer = await dialog(title, h('p', {}, text), [
    { label: 'Cancel', value: 'cancel' },
    { label: confirmLabel, value: 'confirm', class: 'danger' },
  ]);
  return answer === 'confirm';
}

/** A secret shown once, with a copy button and a warning. */
export function secretBox(secret, note) {
  const input = h('input', { type: 'text', readonly: true, value: secret, class: 'secret', 'aria-label': 'New API key' });
  const status = h('span', { class: 'copy-status', role: 'status' });
  const copy = h('button', {
    type: 'button',
    onclick: async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(secret);
        status.textContent = 'Copied.';
      } catch {
        status.textContent = 'Select the key and copy it with Ctrl+C.';
      }
    },
  }, 'Copy');
  return h(
    'div',
    { class: 'secret-box' },
    h('p', { class: 'warning' }, h('strong', {}, 'Copy this key now. '), note || 'It is shown only this once; the server keeps only its hash.'),
    h('div', { class: 'secret-row' }, input, copy, status),
  );
}

// Formatting.
const intFmt = new Intl.NumberFormat('en-US');
export const fmtInt = (n) => intFmt.format(Number(n || 0));
export function fmtCost(n) {
  const v = Number(n || 0);
  return `$${v.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: v !== 0 && Math.abs(v) < 1 ? 6 : 2 })}`;
}
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC');
}
/** The UTC day of an ISO time, with the full time as its tooltip (narrow table columns). */
export function fmtDay(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return h('time', { datetime: d.toISOString(), title: fmtTime(iso) }, d.toISOString().slice(0, 10));
}
export const isoDay = (d) => d.toISOString().slice(0, 10);
export function monthStart(now = new Date()) {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
}
