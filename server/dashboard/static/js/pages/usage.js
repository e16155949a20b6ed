// Usage: requests, tokens and cost per UTC day, stacked by model, for a date range (default: this
// month); a table under the chart and a CSV download of that table.
import { get } from '../api.js';
import { empty, errorBox, field, fmtCost, fmtInt, h, isoDay, loading, monthStart, notAvailable, table } from '../dom.js';

const METRICS = {
  requests: { label: 'Requests', value: (r) => r.requests, format: fmtInt },
  tokens: { label: 'Tokens', value: (r) => r.promptTokens + r.completionTokens, format: fmtInt },
  cost: { label: 'Cost (USD)', value: (r) => r.cost, format: fmtCost },
};
const COLORS = ['#3b4cca', '#e07a1f', '#2a9d8f', '#c0392b', '#8e44ad', '#7f8c8d', '#d4a017', '#1f77b4'];

/** One row per day and model, whatever the server calls the list. */
export function normalizeDaily(data) {
  const list = data.data || [];
  return list.map((r) => ({
    date: String(r.date || r.day || '').slice(0, 10),
    model: r.model || '',
    requests: Number(r.requests ?? r.totalRequests ?? 0),
    promptTokens: Number(r.promptTokens ?? 0),
    completionTokens: Number(r.completionTokens ?? 0),
    cost: Number(r.cost ?? r.totalCost ?? 0),
  }));
}

function daysBetween(start, end) {
  const out = [];
  const d = new Date(`${start}T00:00:00Z`);
  const last = new Date(`${end}T00:00:00Z`);
  while (d <= last && out.length < 400) {
    out.push(isoDay(d));
    d.setUTCDate(d.getUTCDate() + 1);
  }
  return out;
}

function csvCell(v) {
  const s = String(v);
  // Quote always; neutralise spreadsheet formulas in untrusted text (model ids).
  return `"${(/^[=+\-@]/.test(s) && Number.isNaN(Number(s)) ? `'${s}` : s).replace(/"/g, '""')}"`;
}

export function toCsv(rows) {
  const header = ['date', 'model', 'requests', 'prompt_tokens', 'completion_tokens', 'cost_usd'];
  const lines = [header.join(',')];
  for (const r of rows) lines.push([r.date, r.model, r.requests, r.promptTokens, r.completionTokens, r.cost].map(csvCell).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

export async function render(view) {
  view.append(h('h1', { id: 'page-title' }, 'Usage'));
  const today = isoDay(new Date());
  const start = h('input', { type: 'date', name: 'start_date', value: isoDay(monthStart()), max: today });
  const end = h('input', { type: 'date', name: 'end_date', value: today });
  const metric = h('select', { name: 'metric' }, Object.entries(METRICS).map(([k, m]) => h('option', { value: k }, m.label)));
  const form = h(
    'form',
    { class: 'toolbar', 'aria-label': 'Usage period' },
    field('From', start),
    field('To', end),
    field('Chart', metric),
    h('button', { type: 'submit', class: 'primary' }, 'Show'),
  );
  const out = h('div', { class: 'usage-out', 'aria-live': 'polite' });
  view.append(form, out);
  let chart = null;
  let rows = [];

  function draw() {
    if (chart) {
      chart.destroy();
      chart = null;
    }
    const wrap = out.querySelector('.chart-wrap');
    if (!wrap) return;
    const m = METRICS[metric.value];
    const days = daysBetween(start.value, end.value);
    const models = [...new Set(rows.map((r) => r.model))].sort();
    const total = rows.reduce((s, r) => s + m.value(r), 0);
    const canvas = h('canvas', { role: 'img', 'aria-label': `${m.label} per day, stacked by model; total ${m.format(total)}`, dataset: { total: String(total), metric: metric.value } });
    wrap.replaceChildren(canvas);
    if (typeof window.Chart !== 'function') {
      wrap.append(h('p', { class: 'muted' }, 'The chart library did not load; the table below has the same figures.'));
      return;
    }
    const datasets = models.map((model, i) => ({
      label: model,
      backgroundColor: COLORS[i % COLORS.length],
      data: days.map((d) => rows.filter((r) => r.date === d && r.model === model).reduce((s, r) => s + m.value(r), 0)),
    }));
    chart = new window.Chart(canvas, {
      type: 'bar',
      data: { labels: days, datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        responsive: true,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: metric.value === 'cost' ? undefined : 0, callback: (v) => m.format(v) } } },
        plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${m.format(c.raw)}` } } },
      },
    });
  }

  async function load() {
    if (chart) {
      chart.destroy();
      chart = null;
    }
    out.replaceChildren(loading());
    try {
      const { data } = await get('/v1/usage/daily', { start_date: start.value, end_date: end.value });
      rows = normalizeDaily(data).sort((a, b) => a.date.localeCompare(b.date) || a.model.localeCompare(b.model));
    } catch (err) {
      out.replaceChildren(err.missingRoute ? notAvailable('Daily usage') : errorBox(err, 'Could not load usage'));
      if (err.missingRoute) await totalsFallback();
      return;
    }
    const sum = (f) => rows.reduce((s, r) => s + f(r), 0);
    const download = h('button', { type: 'button', disabled: !rows.length }, 'Download CSV');
    download.addEventListener('click', () => {
      const blob = new Blob([toCsv(rows)], { type: 'text/csv' });
      const a = h('a', { href: URL.createObjectURL(blob), download: `plutos-usage-${start.value}-to-${end.value}.csv` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    });
    out.replaceChildren(
      h('p', { class: 'usage-summary', id: 'usage-summary' }, `${fmtInt(sum((r) => r.requests))} requests, ${fmtInt(sum((r) => r.promptTokens + r.completionTokens))} tokens, ${fmtCost(sum((r) => r.cost))} from ${start.value} to ${end.value} (UTC).`),
      h('div', { class: 'chart-wrap' }),
      h('div', { class: 'table-head' }, h('h2', {}, 'Per day and model'), download),
      rows.length
        ? table(
          [
            { label: 'Date', value: (r) => r.date },
            { label: 'Model', value: (r) => h('code', {}, r.model) },
            { label: 'Requests', value: (r) => fmtInt(r.requests), class: 'num' },
            { label: 'Prompt tokens', value: (r) => fmtInt(r.promptTokens), class: 'num' },
            { label: 'Completion tokens', value: (r) => fmtInt(r.completionTokens), class: 'num' },
            { label: 'Cost', value: (r) => fmtCost(r.cost), class: 'num' },
          ],
          rows,
        )
        : empty('No usage in this period.'),
    );
    draw();
  }

  async function totalsFallback() {
    try {
      const { data } = await get('/v1/usage', { start_date: start.value, end_date: end.value });
      const u = data.usage || {};
      out.append(
        h('h2', {}, 'Totals for the period'),
        h('p', { class: 'usage-summary', id: 'usage-summary' }, `${fmtInt(u.totalRequests)} requests, ${fmtInt(u.totalTokens)} tokens, ${fmtCost(u.totalCost)}.`),
      );
    } catch (err) {
      out.append(errorBox(err, 'Could not load usage totals'));
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (end.value < start.value) {
      out.replaceChildren(errorBox({ message: '"To" must not be before "From".' }, 'Invalid period'));
      return;
    }
    load();
  });
  metric.addEventListener('change', draw);
  await load();
  return () => chart && chart.destroy();
}
