// Overview: this month's requests, tokens and cost; the monthly token quota; the per-minute limit.
import { get } from '../api.js';
import { errorBox, fmtCost, fmtInt, h, notAvailable } from '../dom.js';

function card(label, value, sub) {
  return h('div', { class: 'card' }, h('div', { class: 'card-label' }, label), h('div', { class: 'card-value' }, value), sub ? h('div', { class: 'card-sub' }, sub) : null);
}

/** A horizontal bar with its fill set through the CSSOM (allowed by the CSP; no style attribute). */
export function bar(fraction, label, { thresholds = [] } = {}) {
  const pct = Math.max(0, Math.min(1, fraction)) * 100;
  const fill = h('div', { class: `bar-fill${fraction >= 1 ? ' over' : fraction >= 0.8 ? ' warn' : ''}` });
  fill.style.width = `${pct}%`;
  const track = h('div', { class: 'bar', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': pct.toFixed(1), 'aria-label': label }, fill);
  for (const t of thresholds) {
    const mark = h('span', { class: 'bar-mark', title: `${t}%` }, h('span', { class: 'bar-mark-label' }, `${t}%`));
    mark.style.left = `${t}%`;
    track.append(mark);
  }
  return track;
}

export async function render(view) {
  view.append(h('h1', { id: 'page-title' }, 'Overview'));
  let data;
  let headers;
  try {
    ({ data, headers } = await get('/v1/usage'));
  } catch (err) {
    view.append(err.missingRoute ? notAvailable('Usage') : errorBox(err, 'Could not load usage'));
    return;
  }
  const usage = data.usage || {};
  const limits = data.limits || {};
  const period = data.period || {};
  view.append(
    h('p', { class: 'muted' }, `This month so far (UTC): ${(period.start || '').slice(0, 10)} – ${(period.end || '').slice(0, 10)}`),
    h(
      'div',
      { class: 'cards' },
      card('Requests', fmtInt(usage.totalRequests)),
      card('Tokens', fmtInt(usage.totalTokens)),
      card('Cost', fmtCost(usage.totalCost), 'USD'),
    ),
  );

  const quota = h('section', { class: 'panel', 'aria-labelledby': 'quota-title' }, h('h2', { id: 'quota-title' }, 'Monthly token quota'));
  const monthly = Number(limits.monthlyTokens || 0);
  if (monthly > 0) {
    const used = Number(usage.totalTokens || 0);
    quota.append(
      h('p', {}, `${fmtInt(used)} of ${fmtInt(monthly)} tokens used (${((used / monthly) * 100).toFixed(1)}%). Thresholds at 50%, 80% and 100% send usage.threshold webhooks.`),
      bar(used / monthly, 'Monthly token quota used', { thresholds: [50, 80, 100] }),
    );
  } else if ('monthlyTokens' in limits) {
    quota.append(h('p', {}, 'No monthly token quota on this plan.'));
  } else {
    quota.append(h('p', { class: 'muted' }, 'This server does not report a monthly token quota.'));
  }
  view.append(quota);

  const minute = h('section', { class: 'panel', 'aria-labelledby': 'minute-title' }, h('h2', { id: 'minute-title' }, 'Rate limit'));
  const limit = Number(headers.get('X-RateLimit-Limit') || limits.requestsPerMinute || 0);
  const remaining = Number(headers.get('X-RateLimit-Remaining'));
  if (limit > 0 && Number.isFinite(remaining) && headers.get('X-RateLimit-Remaining') !== null) {
    const used = Math.max(0, limit - remaining);
    minute.append(
      h('p', {}, `${fmtInt(used)} of ${fmtInt(limit)} requests used in the current minute (this page's own request included).`),
      bar(used / limit, 'Requests used in the current minute'),
    );
  } else {
    minute.append(h('p', {}, limit > 0 ? `Limit: ${fmtInt(limit)} requests per minute.` : 'No per-minute limit.'));
  }
  minute.append(
    h(
      'dl',
      { class: 'limits' },
      h('dt', {}, 'Per minute'), h('dd', {}, limits.requestsPerMinute ? fmtInt(limits.requestsPerMinute) : 'unlimited'),
      h('dt', {}, 'Per hour'), h('dd', {}, limits.requestsPerHour ? fmtInt(limits.requestsPerHour) : 'unlimited'),
      h('dt', {}, 'Per day'), h('dd', {}, limits.requestsPerDay ? fmtInt(limits.requestsPerDay) : 'unlimited'),
    ),
  );
  view.append(minute);

  const byModel = Object.entries(usage.requestsByModel || {});
  if (byModel.length) {
    view.append(
      h('section', { class: 'panel' }, h('h2', {}, 'Requests by model this month'),
        h('ul', { class: 'plain' }, byModel.map(([model, n]) => h('li', {}, h('code', {}, model), `: ${fmtInt(n)}`)))),
    );
  }
}
