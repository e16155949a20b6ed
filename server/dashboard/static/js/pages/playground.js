// Playground: a model from /v1/models, options, a streamed run on /v1/stream with Stop, then usage
// and the stored record's id; and the same request as curl / Python / TypeScript / Go.
import { get, stream } from '../api.js';
import { errorBox, field, fmtInt, h } from '../dom.js';
import { snippets } from '../snippets.js';

function numberInput(name, { min, max, step, placeholder }) {
  return h('input', { type: 'number', name, min, max, step, placeholder, inputmode: 'decimal' });
}

export async function render(view) {
  view.append(h('h1', { id: 'page-title' }, 'Playground'));
  const model = h('select', { name: 'model', required: true });
  const status = h('div', { class: 'run-status', role: 'status', 'aria-live': 'polite' });
  try {
    const { data } = await get('/v1/models');
    const models = (data.models || []).filter((m) => m.supportsStreaming);
    for (const m of models) model.append(h('option', { value: m.id }, `${m.name || m.id} (${m.id})`));
    if (!models.length) status.append(errorBox({ message: 'No model in the catalogue supports streaming.' }, 'Nothing to run'));
  } catch (err) {
    status.append(errorBox(err, 'Could not load the models'));
  }
  const input = h('textarea', { name: 'input', rows: 4, required: true, placeholder: 'Write a short story about a robot.' });
  const system = h('textarea', { name: 'systemPrompt', rows: 2, placeholder: 'You are a helpful assistant.' });
  const temperature = numberInput('temperature', { min: 0, max: 2, step: 0.1, placeholder: '0.7' });
  const maxTokens = numberInput('maxTokens', { min: 1, step: 1, placeholder: '1000' });
  const topP = numberInput('topP', { min: 0.01, max: 1, step: 0.01, placeholder: '1.0' });
  const stop = h('input', { type: 'text', name: 'stop', placeholder: 'e.g. \\n\\n, END' });
  const run = h('button', { type: 'submit', class: 'primary' }, 'Run');
  const stopButton = h('button', { type: 'button', disabled: true }, 'Stop');
  const output = h('pre', { class: 'output', id: 'playground-output', 'aria-label': 'Output', 'aria-live': 'off', tabindex: '0' });
  const result = h('div', { class: 'run-result' });

  const form = h(
    'form',
    { class: 'playground-form', 'aria-label': 'Playground request' },
    field('Model', model),
    field('Input', input),
    field('System prompt', system, 'Optional'),
    h(
      'div',
      { class: 'options-row' },
      field('Temperature', temperature, '0–2'),
      field('Max tokens', maxTokens),
      field('Top p', topP, '(0, 1]'),
      field('Stop sequences', stop, 'Up to 4, separated by commas'),
    ),
    h('div', { class: 'actions' }, run, stopButton),
  );

  function body() {
    const options = {};
    if (temperature.value !== '') options.temperature = Number(temperature.value);
    if (maxTokens.value !== '') options.maxTokens = Number(maxTokens.value);
    if (topP.value !== '') options.topP = Number(topP.value);
    if (system.value.trim() !== '') options.systemPrompt = system.value;
    const stops = stop.value.split(',').map((s) => s.replace(/\\n/g, '\n')).filter((s) => s.length);
    if (stops.length) options.stop = stops;
    const b = { input: input.value || input.placeholder, model: model.value };
    if (Object.keys(options).length) b.options = options;
    return b;
  }

  // Code snippets, kept in step with the form.
  const tabs = ['curl', 'python', 'typescript', 'go'];
  const tabLabels = { curl: 'curl', python: 'Python', typescript: 'TypeScript', go: 'Go' };
  let current = 'curl';
  const code = h('pre', { class: 'snippet', role: 'tabpanel', id: 'snippet-panel', tabindex: '0' });
  const tabButtons = tabs.map((t) =>
    h('button', { type: 'button', role: 'tab', id: `tab-${t}`, 'aria-controls': 'snippet-panel', onclick: () => select(t) }, tabLabels[t]),
  );
  const tabList = h('div', { role: 'tablist', 'aria-label': 'Code snippet language', class: 'tabs' }, tabButtons);
  tabList.addEventListener('keydown', (e) => {
    const i = tabs.indexOf(current);
    if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
      e.preventDefault();
      select(tabs[(i + (e.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length]);
      tabButtons[tabs.indexOf(current)].focus();
    }
  });
  const copy = h('button', { type: 'button', class: 'small' }, 'Copy snippet');
  copy.addEventListener('click', () => navigator.clipboard?.writeText(code.textContent).catch(() => {}));
  function updateSnippet() {
    code.textContent = snippets(`${window.location.origin}/v1`, body())[current];
  }
  function select(t) {
    current = t;
    tabButtons.forEach((b, i) => {
      b.setAttribute('aria-selected', String(tabs[i] === t));
      b.tabIndex = tabs[i] === t ? 0 : -1;
    });
    code.setAttribute('aria-labelledby', `tab-${t}`);
    updateSnippet();
  }
  form.addEventListener('input', updateSnippet);
  form.addEventListener('change', updateSnippet);
  select('curl');

  let controller = null;
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (controller) return;
    controller = new AbortController();
    run.disabled = true;
    stopButton.disabled = false;
    output.textContent = '';
    result.replaceChildren();
    status.replaceChildren(h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Streaming…');
    output.classList.add('streaming');
    let chunks = 0;
    try {
      for await (const { event, data } of stream('/v1/stream', body(), controller.signal)) {
        if (event === 'chunk') {
          output.append(document.createTextNode(data.output || ''));
          output.dataset.chunks = String(++chunks);
        } else if (event === 'complete') {
          output.textContent = data.output || '';
          status.replaceChildren('Completed.');
          const u = data.usage || {};
          result.replaceChildren(
            h(
              'dl',
              { class: 'kv' },
              h('dt', {}, 'Usage'), h('dd', {}, `${fmtInt(u.promptTokens)} prompt + ${fmtInt(u.completionTokens)} completion = ${fmtInt(u.totalTokens)} tokens`),
              h('dt', {}, 'Time'), h('dd', {}, `${fmtInt(data.processingTime)} ms`),
              h('dt', {}, 'Record'), h('dd', {}, data.id ? h('a', { href: `#/requests/${encodeURIComponent(data.id)}`, class: 'record-link' }, data.id) : '—'),
            ),
          );
        }
      }
      if (!result.childNodes.length) status.replaceChildren('The stream ended without a final event.');
    } catch (err) {
      if (err.name === 'AbortError') {
        status.replaceChildren('Stopped. The tokens generated so far were billed; the record is stored as cancelled.');
      } else {
        status.replaceChildren(errorBox(err, 'The run failed'));
      }
    } finally {
      output.classList.remove('streaming');
      controller = null;
      run.disabled = false;
      stopButton.disabled = true;
    }
  });
  stopButton.addEventListener('click', () => controller && controller.abort());

  view.append(
    h(
      'div',
      { class: 'playground' },
      h('div', { class: 'playground-left' }, form),
      h(
        'div',
        { class: 'playground-right' },
        h('h2', {}, 'Output'),
        status,
        output,
        result,
        h('div', { class: 'table-head' }, h('h2', {}, 'Same request in code'), copy),
        tabList,
        code,
      ),
    ),
  );
  return () => controller && controller.abort();
}
