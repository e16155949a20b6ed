// Models: the catalogue with pricing per 1K tokens and streaming support.
import { get } from '../api.js';
import { empty, errorBox, h, notAvailable, table } from '../dom.js';

export async function render(view) {
  view.append(h('h1', { id: 'page-title' }, 'Models'));
  let data;
  try {
    ({ data } = await get('/v1/models'));
  } catch (err) {
    view.append(err.missingRoute ? notAvailable('The model catalogue') : errorBox(err, 'Could not load the models'));
    return;
  }
  const models = data.models || [];
  if (!models.length) {
    view.append(empty('No models in the catalogue.'));
    return;
  }
  const price = (v) => (v === undefined ? '—' : `$${Number(v).toLocaleString('en-US', { maximumFractionDigits: 8 })}`);
  view.append(
    table(
      [
        { label: 'Model', value: (m) => h('div', {}, h('code', {}, m.id), h('div', { class: 'muted' }, m.name || '')) },
        { label: 'Description', value: (m) => m.description || '' },
        { label: 'Context (tokens)', value: (m) => Number(m.maxTokens || 0).toLocaleString('en-US'), class: 'num' },
        { label: 'Input / 1K tokens', value: (m) => price(m.pricing?.inputTokens), class: 'num' },
        { label: 'Output / 1K tokens', value: (m) => price(m.pricing?.outputTokens), class: 'num' },
        { label: 'Streaming', value: (m) => (m.supportsStreaming ? 'Yes' : 'No') },
      ],
      models,
      { caption: 'Model catalogue (prices in USD)' },
    ),
  );
}
