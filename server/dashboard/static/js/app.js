// The dashboard's shell: sign in/out, the hash router, one module per page.
import { ApiError, get, session } from './api.js';
import { clear, errorBox, h, loading } from './dom.js';

const PAGES = {
  overview: () => import('./pages/overview.js'),
  usage: () => import('./pages/usage.js'),
  requests: () => import('./pages/requests.js'),
  keys: () => import('./pages/keys.js'),
  webhooks: () => import('./pages/webhooks.js'),
  playground: () => import('./pages/playground.js'),
  models: () => import('./pages/models.js'),
  operator: () => import('./pages/operator.js'),
};

const $ = (id) => document.getElementById(id);
let cleanup = null;
let renderToken = 0;

function showSignIn(err) {
  $('shell').hidden = true;
  $('signin').hidden = false;
  const box = clear($('signin-error'));
  if (err) box.append(errorBox(err, 'Could not sign in'));
  $('signin-key').focus();
}

async function showShell() {
  $('signin').hidden = true;
  $('shell').hidden = false;
  const key = session.key || '';
  $('whoami').textContent = `Key ${key.slice(0, 10)}…`;
  await route();
}

/** A key is accepted unless the API says it is not (401); a key without some scope still signs in. */
async function checkKey(key) {
  try {
    await get('/v1/models', undefined, { key });
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 0)) throw err;
  }
}

async function route() {
  if (!session.key) return showSignIn();
  const [name, ...rest] = (window.location.hash.replace(/^#\/?/, '') || 'overview').split('/');
  const load = PAGES[name];
  if (!load) {
    window.location.hash = '#/overview';
    return undefined;
  }
  for (const a of $('nav').querySelectorAll('a')) {
    if (a.getAttribute('href') === `#/${name}`) {
      a.setAttribute('aria-current', 'page');
      a.scrollIntoView({ block: 'nearest', inline: 'nearest' }); // the phone layout's scrolling nav
    } else a.removeAttribute('aria-current');
  }
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* a page's clean-up must not block navigation */
    }
    cleanup = null;
  }
  const token = ++renderToken;
  const main = clear($('main'));
  main.append(loading());
  document.title = `${name[0].toUpperCase()}${name.slice(1)} · PlutosAI Dashboard`;
  try {
    const page = await load();
    if (token !== renderToken) return undefined;
    const view = h('section', { class: `page page-${name}`, 'aria-labelledby': 'page-title' });
    const result = await page.render(view, rest.map(decodeURIComponent), { signOut });
    if (token !== renderToken) {
      if (typeof result === 'function') result();
      return undefined;
    }
    cleanup = typeof result === 'function' ? result : null;
    clear(main).append(view);
    if (document.activeElement && $('nav').contains(document.activeElement)) main.focus({ preventScroll: true });
  } catch (err) {
    if (token !== renderToken) return undefined;
    clear(main).append(errorBox(err));
  }
  return undefined;
}

function signOut() {
  if (cleanup) cleanup();
  cleanup = null;
  session.signOut();
  clear($('main'));
  $('whoami').textContent = '';
  $('signin-key').value = '';
  window.location.hash = '';
  showSignIn();
}

$('signin-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const key = $('signin-key').value.trim();
  const box = clear($('signin-error'));
  if (!key) {
    box.append(errorBox({ message: 'Enter an API key.' }, 'Could not sign in'));
    return;
  }
  const button = event.submitter || $('signin-form').querySelector('button');
  button.disabled = true;
  try {
    await checkKey(key);
    session.signIn(key);
    $('signin-key').value = '';
    if (!window.location.hash || window.location.hash === '#') window.location.hash = '#/overview';
    await showShell();
  } catch (err) {
    showSignIn(err);
  } finally {
    button.disabled = false;
  }
});
$('signout').addEventListener('click', signOut);
window.addEventListener('hashchange', () => {
  if (session.key) route();
});

if (session.key) showShell();
else showSignIn();
