// Search: filter chips over GET /v1/records, a dense table that the
// keyboard can walk, cursor paging, and exports of the same query. The
// URL holds the query, so a search is a link and the back button pages
// back.

import * as api from './api.js';
import { h, fmtTime, keyString, entityHref, searchHref } from './dom.js';

const OPS = ['insert', 'update', 'delete', 'truncate', 'snapshot', 'ddl', 'event'];
// cause is the API's filter (the changes the event with that record id
// caused); cause type and tx are not filters of the API: the page applies
// them to the records each page returns, and says so.
const FILTERS = [
  { name: 'source', label: 'Source', hint: 'source.name, e.g. crm' },
  { name: 'table', label: 'Table', hint: 'source.table' },
  { name: 'key', label: 'Key', hint: 'canonical key; needs source and table' },
  { name: 'actor', label: 'Actor', hint: 'actor.id' },
  { name: 'op', label: 'Op', options: OPS },
  { name: 'since', label: 'Since', hint: '2025-03-01, RFC 3339, or "last 2 hours", "7d"' },
  { name: 'until', label: 'Until', hint: 'same forms as since' },
  { name: 'cause', label: 'Caused by', hint: 'record id of the event (cause.record_id)' },
  { name: 'cause_type', label: 'Cause type', hint: 'cause.type (applied in the page)' },
  { name: 'tx', label: 'Transaction', hint: 'tx.id (applied in the page)' },
];
const PAGE_LOCAL = ['cause_type', 'tx'];

const UNITS = { s: 1, sec: 1, second: 1, m: 60, min: 60, minute: 60, h: 3600, hour: 3600, d: 86400, day: 86400, w: 604800, week: 604800 };

// resolveTime turns what a viewer typed into RFC 3339: an absolute
// instant or date, or a span back from now ("last 2 hours", "90m", "7d"),
// which the URL keeps as typed so a shared link stays relative.
export function resolveTime(text, now = Date.now()) {
  const t = text.trim();
  if (!t) return '';
  const rel = /^(?:last\s+)?(\d+)?\s*([a-z]+?)s?(?:\s+ago)?$/i.exec(t);
  if (rel && UNITS[rel[2].toLowerCase()]) {
    const n = rel[1] ? Number(rel[1]) : 1;
    return new Date(now - n * UNITS[rel[2].toLowerCase()] * 1000).toISOString();
  }
  if (/^\d{4}-\d{2}-\d{2}$/.test(t)) return t + 'T00:00:00Z';
  const d = new Date(t);
  if (/^\d{4}-\d{2}-\d{2}T/.test(t) && !isNaN(d)) return d.toISOString();
  throw Object.assign(new Error(`"${t}" is neither a time (2025-03-01, RFC 3339) nor a span back from now ("last 2 hours", "7d")`), { status: 400 });
}

export function apiParams(q) {
  const p = new URLSearchParams();
  for (const f of FILTERS) {
    const v = q.get(f.name);
    if (!v || PAGE_LOCAL.includes(f.name)) continue;
    p.set(f.name, f.name === 'since' || f.name === 'until' ? resolveTime(v) : v);
  }
  for (const [k, v] of q) if (k.startsWith('pii.') && v) p.set(k, v);
  return p;
}

export async function searchPage(view, route, who, stale) {
  const q = route.query;
  view.appendChild(h('h1', {}, 'Search the log'));
  view.appendChild(filterForm(q, who));
  view.appendChild(chips(q));
  const results = h('section', { 'aria-label': 'Results', class: 'results' });
  view.appendChild(results);

  const p = apiParams(q);
  p.set('limit', q.get('limit') || '50');
  if (q.get('order') === 'asc') p.set('order', 'asc');
  if (q.get('cursor')) p.set('cursor', q.get('cursor'));
  const page = await api.json('/v1/records?' + p.toString());
  if (stale()) return;
  let recs = page.records;
  const local = PAGE_LOCAL.filter((n) => q.get(n));
  if (local.length) {
    recs = recs.filter((r) => (!q.get('cause_type') || (r.cause && r.cause.type === q.get('cause_type'))) &&
      (!q.get('tx') || (r.tx && r.tx.id === q.get('tx'))));
  }
  results.appendChild(h('p', { class: 'count' },
    `${recs.length} record${recs.length === 1 ? '' : 's'} on this page`,
    local.length ? ` (${local.join(' and ')} applied in the page to the ${page.records.length} the server returned)` : '',
    page.next_cursor ? '; more follow' : ''));
  results.appendChild(resultsTable(recs));
  results.appendChild(pager(q, page.next_cursor));
  results.appendChild(exportBox(q));
}

function filterForm(q, who) {
  const fields = FILTERS.map((f) => {
    const id = 'f-' + f.name;
    const input = f.options
      ? h('select', { id, name: f.name }, h('option', { value: '' }, 'any'), f.options.map((o) => h('option', { value: o, selected: q.get(f.name) === o }, o)))
      : h('input', { id, name: f.name, value: q.get(f.name) || '', placeholder: f.hint, 'aria-describedby': id + '-h', autocomplete: 'off' });
    return h('div', { class: 'field' }, h('label', { for: id }, f.label), input, f.options ? null : h('span', { class: 'sr-only', id: id + '-h' }, f.hint));
  });
  if (who && api.seesClear(who.role)) {
    const cur = [...q.keys()].find((k) => k.startsWith('pii.'));
    fields.push(h('div', { class: 'field' }, h('label', { for: 'f-piifield' }, 'PII field'),
      h('input', { id: 'f-piifield', name: 'piifield', value: cur ? cur.slice(4) : '', placeholder: 'an x-searchable field, e.g. email', autocomplete: 'off' })));
    fields.push(h('div', { class: 'field' }, h('label', { for: 'f-piivalue' }, 'PII value'),
      h('input', { id: 'f-piivalue', name: 'piivalue', value: cur ? q.get(cur) : '', placeholder: 'found through the blind index', autocomplete: 'off' })));
  }
  fields.push(h('div', { class: 'field' }, h('label', { for: 'f-order' }, 'Order'),
    h('select', { id: 'f-order', name: 'order' }, h('option', { value: 'desc' }, 'newest first'), h('option', { value: 'asc', selected: q.get('order') === 'asc' }, 'oldest first'))));
  return h('form', { class: 'filters', role: 'search', onsubmit: (ev) => {
    ev.preventDefault();
    const fd = new FormData(ev.target);
    const out = {};
    for (const f of FILTERS) out[f.name] = (fd.get(f.name) || '').trim();
    if (fd.get('piifield') && fd.get('piivalue')) out['pii.' + fd.get('piifield').trim()] = fd.get('piivalue').trim();
    if (fd.get('order') === 'asc') out.order = 'asc';
    location.hash = searchHref(out);
  } }, fields, h('div', { class: 'field actions' }, h('button', { type: 'submit' }, 'Search')));
}

function chips(q) {
  const list = h('ul', { class: 'chips', 'aria-label': 'Active filters' });
  for (const [k, v] of q) {
    if (!v || k === 'cursor' || k === 'limit') continue;
    const rest = new URLSearchParams(q);
    rest.delete(k);
    rest.delete('cursor');
    list.appendChild(h('li', { class: 'chip' }, h('span', {}, `${k}: ${v}`),
      h('a', { href: '#/search?' + rest.toString(), 'aria-label': `Remove filter ${k}`, class: 'chip-x' }, '×')));
  }
  return list;
}

function resultsTable(recs) {
  const body = h('tbody', {});
  for (const r of recs) {
    const key = keyString(r.key);
    const href = entityHref(r.source.name, r.source.table, key);
    body.appendChild(h('tr', { tabindex: '0', dataset: { href, seq: r.seq } },
      h('td', { class: 'num' }, h('a', { href: '#/record/' + r.seq, title: 'record and its proof' }, r.seq)),
      h('td', { class: 'time' }, fmtTime(r.occurred_at)),
      h('td', {}, r.source.name + '/' + r.source.table),
      h('td', {}, h('a', { href, class: 'key' }, key)),
      h('td', {}, h('span', { class: 'op op-' + r.op }, r.op)),
      h('td', {}, r.actor ? r.actor.id || '' : ''),
      h('td', {}, (r.changed || []).join(', ')),
      h('td', {}, r.cause ? r.cause.type || '' : '')));
  }
  const table = h('table', { class: 'dense', 'aria-describedby': 'kbd-help' },
    h('caption', { class: 'sr-only' }, 'Matching records'),
    h('thead', {}, h('tr', {}, ['seq', 'occurred', 'source/table', 'key', 'op', 'actor', 'changed', 'cause'].map((c) => h('th', { scope: 'col' }, c)))),
    body);
  // Arrow keys (or j/k) move between rows, Enter opens the unit's
  // timeline, p opens the record's proof.
  table.addEventListener('keydown', (ev) => {
    const row = ev.target.closest('tr[tabindex]');
    if (!row) return;
    if (ev.key === 'ArrowDown' || ev.key === 'j') {
      (row.nextElementSibling || row).focus();
      ev.preventDefault();
    } else if (ev.key === 'ArrowUp' || ev.key === 'k') {
      (row.previousElementSibling || row).focus();
      ev.preventDefault();
    } else if (ev.key === 'Enter' && ev.target === row) {
      location.hash = row.dataset.href;
    } else if (ev.key === 'p' && ev.target === row) {
      location.hash = '#/record/' + row.dataset.seq;
    }
  });
  return h('div', { class: 'scroll' }, table,
    h('p', { class: 'hint', id: 'kbd-help' }, 'Keys: ↑/↓ or j/k move between rows, Enter opens the timeline, p the proof.'));
}

function pager(q, next) {
  const nav = h('nav', { class: 'pager', 'aria-label': 'Pages of results' });
  if (q.get('cursor')) nav.appendChild(h('button', { type: 'button', onclick: () => history.back() }, '← Previous page'));
  if (next) {
    const n = new URLSearchParams(q);
    n.set('cursor', next);
    nav.appendChild(h('a', { href: '#/search?' + n.toString(), class: 'button', rel: 'next' }, 'Next page →'));
  }
  return nav;
}

// exportBox downloads the query's export and its proof sidecar for the
// same tree size; fetched with the token, since a plain link cannot send it.
function exportBox(q) {
  const status = h('span', { class: 'hint', role: 'status' });
  const go = (format) => async () => {
    try {
      const p = apiParams(q);
      for (const k of [...p.keys()]) if (k.startsWith('pii.')) p.delete(k);
      p.set('format', format);
      status.textContent = 'exporting…';
      const resp = await api.raw('/v1/export?' + p.toString());
      const size = resp.headers.get('Stele-Tree-Size');
      const name = `stele-export-${size}.${format}`;
      download(await resp.blob(), name);
      p.set('tree_size', size);
      const proof = await api.raw('/v1/export/proof?' + p.toString());
      download(await proof.blob(), name + '.proof.json');
      status.textContent = `exported ${name} and its proof (tree size ${size}); check them with stele verify --export`;
    } catch (e) {
      status.textContent = 'export failed: ' + e.message;
    }
  };
  const local = PAGE_LOCAL.filter((n) => q.get(n));
  return h('div', { class: 'export' }, h('span', {}, 'Export this query with its proof: '),
    ['jsonl', 'csv', 'parquet'].map((f) => h('button', { type: 'button', onclick: go(f), class: 'small' }, f.toUpperCase())),
    local.length ? h('span', { class: 'hint' }, ` (without ${local.join(', ')}, which the export cannot filter)`) : null,
    ' ', status);
}

function download(blob, name) {
  const a = h('a', { href: URL.createObjectURL(blob), download: name });
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

