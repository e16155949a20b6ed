// Operator (admin key): accounts with plan and month-to-date usage; create an account; change its
// plan; suspend/resume; its keys; the audit trail.
import { get, patch, post } from '../api.js';
import { confirmDialog, empty, errorBox, field, fmtCost, fmtDay, fmtInt, fmtTime, h, loading, notAvailable, table } from '../dom.js';

const PLANS = ['free', 'pro', 'enterprise'];

export async function render(view) {
  view.append(h('h1', { id: 'page-title' }, 'Operator'));
  const notice = h('div', { 'aria-live': 'polite' });
  const listBox = h('div', { 'aria-live': 'polite' });
  const auditBox = h('div');
  const plansList = h('datalist', { id: 'plan-names' }, PLANS.map((p) => h('option', { value: p })));

  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off', maxlength: 200 });
  const plan = h('input', { type: 'text', name: 'plan', list: 'plan-names', value: 'free', autocomplete: 'off' });
  const form = h(
    'form',
    { class: 'panel form-grid', 'aria-labelledby': 'acct-create-title' },
    h('h2', { id: 'acct-create-title' }, 'Create an account'),
    field('Name', name),
    field('Plan', plan, 'A plan of the server configuration (free, pro, enterprise by default)'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create account')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const { data } = await post('/v1/admin/accounts', { name: name.value.trim(), plan: plan.value.trim() });
      notice.replaceChildren(h('p', { class: 'ok', role: 'status' }, 'Created account ', h('code', {}, data.account?.id || ''), '. Give it a key from its Keys page.'));
      form.reset();
      cursor = '';
      cursors = [];
      await load();
      await loadAudit();
    } catch (err) {
      notice.replaceChildren(errorBox(err, 'Could not create the account'));
    }
  });

  async function update(a, body, what) {
    try {
      await patch(`/v1/admin/accounts/${encodeURIComponent(a.id)}`, body);
      notice.replaceChildren(h('p', { class: 'ok', role: 'status' }, `${what}: `, h('span', {}, a.name || a.id), '.'));
      await load();
      await loadAudit();
    } catch (err) {
      notice.replaceChildren(errorBox(err, `Could not update ${a.name || a.id}`));
    }
  }

  let cursor = '';
  let cursors = [];
  async function load() {
    listBox.replaceChildren(loading());
    let data;
    try {
      ({ data } = await get('/v1/admin/accounts', { limit: 20, after: cursor }));
    } catch (err) {
      if (err.missingRoute) listBox.replaceChildren(notAvailable('Account administration'));
      else if (err.status === 403 || err.status === 401) listBox.replaceChildren(errorBox(err, 'The operator pages need an admin key'));
      else listBox.replaceChildren(errorBox(err, 'Could not load the accounts'));
      form.hidden = true;
      auditBox.hidden = true;
      return false;
    }
    form.hidden = false;
    const rows = data.data || data.accounts || [];
    if (!rows.length) listBox.replaceChildren(empty('No accounts.'));
    else {
      listBox.replaceChildren(
        table(
          [
            { label: 'Account', value: (a) => h('div', {}, h('span', { class: 'acct-name' }, a.name || ''), h('div', {}, h('code', { class: 'muted' }, a.id))) },
            {
              label: 'Plan',
              value: (a) => {
                const select = h('select', { 'aria-label': `Plan of ${a.name || a.id}` }, [...new Set([...PLANS, a.plan])].map((p) => h('option', { value: p }, p)));
                select.value = a.plan;
                select.addEventListener('change', () => update(a, { plan: select.value }, `Plan changed to ${select.value}`));
                return select;
              },
            },
            { label: 'Status', value: (a) => h('span', { class: `badge ${a.suspended ? 'status-failed' : 'status-completed'}` }, a.suspended ? 'suspended' : 'active') },
            { label: 'Keys', value: (a) => fmtInt(a.keyCount), class: 'num' },
            { label: 'Requests', value: (a) => fmtInt(a.usage?.totalRequests), class: 'num' },
            { label: 'Tokens', value: (a) => fmtInt(a.usage?.totalTokens), class: 'num' },
            { label: 'Cost', value: (a) => fmtCost(a.usage?.totalCost), class: 'num' },
            { label: 'Created', value: (a) => fmtDay(a.createdAt) },
            {
              label: 'Actions',
              value: (a) =>
                h(
                  'div',
                  { class: 'row-actions' },
                  h('a', { class: 'button small', href: `#/keys/${encodeURIComponent(a.id)}`, 'aria-label': `Keys of ${a.name || a.id}` }, 'Keys'),
                  a.suspended
                    ? h('button', { type: 'button', class: 'small', onclick: () => update(a, { suspended: false }, 'Resumed') }, 'Resume')
                    : h('button', {
                      type: 'button',
                      class: 'small danger',
                      onclick: async () => {
                        if (await confirmDialog('Suspend account?', `Every key of ${a.name || a.id} gets 403 account_suspended until it is resumed.`, 'Suspend')) {
                          update(a, { suspended: true }, 'Suspended');
                        }
                      },
                    }, 'Suspend'),
                ),
            },
          ],
          rows,
          { caption: 'Accounts, newest first, with this month\'s usage (requests, tokens, cost)', className: 'compact accounts' },
        ),
      );
    }
    const pager = h('div', { class: 'pager' });
    if (cursors.length) pager.append(h('button', { type: 'button', onclick: () => { cursor = cursors.pop(); load(); } }, 'Previous page'));
    if (data.hasMore && data.lastId) pager.append(h('button', { type: 'button', onclick: () => { cursors.push(cursor); cursor = data.lastId; load(); } }, 'Next page'));
    listBox.append(pager);
    return true;
  }

  async function loadAudit() {
    auditBox.replaceChildren(h('h2', {}, 'Audit trail'), loading());
    try {
      const { data } = await get('/v1/admin/audit', { limit: 20 });
      const rows = data.data || [];
      auditBox.replaceChildren(
        h('h2', {}, 'Audit trail (latest 20)'),
        rows.length
          ? table(
            [
              { label: 'When', value: (e) => fmtTime(e.createdAt) },
              { label: 'Action', value: (e) => e.action || '' },
              { label: 'Target', value: (e) => h('code', {}, e.targetId || '') },
              { label: 'Account', value: (e) => h('code', {}, e.accountId || '') },
              { label: 'By', value: (e) => h('code', {}, e.actor || '') },
            ],
            rows,
          )
          : empty('No changes recorded yet.'),
      );
    } catch (err) {
      auditBox.replaceChildren(h('h2', {}, 'Audit trail'), err.missingRoute ? notAvailable('The audit trail') : errorBox(err, 'Could not load the audit trail'));
    }
  }

  view.append(plansList, notice, listBox, form, auditBox);
  form.hidden = true;
  if (await load()) await loadAudit();
}
