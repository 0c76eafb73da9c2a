// The app shell: a router over the URL fragment (#/page/…?query), so
// every view, query and page of results is a link that can be shared and
// the back button works, with no route on the server but "/".

import * as api from './api.js';
import { h, clear } from './dom.js';
import { searchPage } from './search.js';
import { entityPage } from './entity.js';
import { tablePage } from './table.js';
import { recordPage } from './record.js';
import { logPage } from './log.js';
import { privacyPage } from './privacy.js';
import { lineagePage } from './lineage.js';

const main = document.getElementById('main');

export function parseRoute() {
  const frag = location.hash.replace(/^#/, '') || '/search';
  const qi = frag.indexOf('?');
  const path = qi < 0 ? frag : frag.slice(0, qi);
  const query = new URLSearchParams(qi < 0 ? '' : frag.slice(qi + 1));
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] || 'search', args: parts.slice(1), query };
}

const pages = {
  search: searchPage,
  entity: entityPage,
  table: tablePage,
  record: recordPage,
  log: logPage,
  privacy: privacyPage,
  lineage: lineagePage,
  login: loginPage,
};

let generation = 0;

async function render() {
  const gen = ++generation;
  const route = parseRoute();
  performance.mark('stele-route-start');
  for (const a of document.querySelectorAll('nav a[data-page]')) {
    if (a.dataset.page === route.page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const view = h('div', { class: 'view', 'data-page': route.page });
  clear(main).appendChild(view);
  let who = null;
  try {
    who = await api.whoami();
  } catch (e) {
    if (e.status === 401 && route.page !== 'login') {
      location.hash = '#/login?next=' + encodeURIComponent(location.hash);
      return;
    }
  }
  showWho(who);
  try {
    await (pages[route.page] || notFound)(view, route, who, () => gen !== generation);
  } catch (e) {
    if (gen !== generation) return;
    if (e.status === 401) {
      location.hash = '#/login?next=' + encodeURIComponent(location.hash);
      return;
    }
    view.appendChild(errorBox(e));
  }
  if (gen === generation) {
    performance.mark('stele-route-end');
    performance.measure('stele-render', 'stele-route-start', 'stele-route-end');
    document.body.dataset.rendered = String(gen);
  }
}

export function errorBox(e) {
  return h('p', { class: 'error', role: 'alert' }, e.status ? `Error ${e.status}: ` : 'Error: ', e.message);
}

function notFound(view) {
  view.appendChild(h('h1', {}, 'No such page'));
  view.appendChild(h('p', {}, h('a', { href: '#/search' }, 'Go to search')));
}

function showWho(who) {
  const el = clear(document.getElementById('who'));
  const banners = clear(document.getElementById('banners'));
  if (!who) {
    el.appendChild(h('a', { href: '#/login' }, 'Sign in'));
    return;
  }
  document.body.dataset.role = who.role;
  if (who.open) {
    banners.appendChild(h('p', { class: 'banner open' },
      'Open server: no API tokens exist, so everyone who reaches it is admin and sees personal data in clear. It listens on loopback only. Create tokens with ',
      h('code', {}, 'stele token create'), '.'));
  } else {
    const what = {
      admin: 'personal data in clear; each view of it is recorded in the access log',
      auditor: 'personal data in clear; each view of it is recorded in the access log',
      analyst: 'personal data masked',
      service: 'personal data sealed',
    }[who.role] || '';
    banners.appendChild(h('p', { class: 'banner role role-' + who.role }, `Role ${who.role}: ${what}.`));
  }
  el.appendChild(h('span', { class: 'role-badge', title: 'your role' }, who.role));
  el.appendChild(h('span', { class: 'who-name' }, ' ', who.name || ''));
  if (!who.open) {
    el.appendChild(h('button', { type: 'button', class: 'link', onclick: () => { api.setToken(''); location.hash = '#/login'; } }, 'Sign out'));
  }
}

async function loginPage(view, route) {
  const next = route.query.get('next') || '#/search';
  const msg = h('p', { class: 'hint', id: 'login-msg', role: 'alert' });
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, 'aria-describedby': 'token-help' });
  const form = h('form', { class: 'login', onsubmit: async (ev) => {
    ev.preventDefault();
    api.setToken(input.value.trim());
    try {
      await api.whoami();
      location.hash = next.startsWith('#/login') ? '#/search' : next;
    } catch (e) {
      api.setToken('');
      msg.textContent = e.message;
    }
  } },
  h('h1', {}, 'Sign in'),
  h('label', { for: 'token' }, 'API token'),
  input,
  h('p', { class: 'hint', id: 'token-help' }, 'A token made with ', h('code', {}, 'stele token create'),
    '. It is kept in this tab only (session storage) and sent to this server alone.'),
  h('button', { type: 'submit' }, 'Sign in'),
  msg);
  view.appendChild(form);
  input.focus();
}

window.addEventListener('hashchange', render);
render();
