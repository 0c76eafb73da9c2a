// A table as it was at an instant, paged: the JSON Lines stream of
// GET /v1/tables/{source}/{table}/state is read line by line and dropped
// once the page is full, so a table of millions of units is never held.

import * as api from './api.js';
import { h, clear, fmtTime, entityHref, searchHref } from './dom.js';
import { annotations, flatten, isMasked } from './diff.js';
import { valueNode } from './dom.js';

const PAGE = 50;

export async function tablePage(view, route, who, stale) {
  const [source, table] = route.args;
  const q = route.query;
  const page = Math.max(0, Number(q.get('page') || 0) | 0);
  view.appendChild(h('p', { class: 'crumbs' }, h('a', { href: searchHref({ source, table }) }, 'changes to ' + source + '/' + table)));
  view.appendChild(h('h1', {}, `${table}`, h('span', { class: 'sub' }, ` in ${source}, as it was at an instant`)));
  const tq = new URLSearchParams({ source, table, limit: '1' });
  const [last, first] = await Promise.all([
    api.json('/v1/records?' + tq.toString()),
    api.json('/v1/records?' + tq.toString() + '&order=asc'),
  ]);
  if (stale()) return;
  if (!last.records.length) {
    view.appendChild(h('p', {}, 'No record of this table.'));
    return;
  }
  const pii = await annotations(last.records[0].schema);
  const role = who ? who.role : '';
  const t0 = Date.parse(first.records[0].occurred_at), t1 = Date.parse(last.records[0].occurred_at);
  const at = q.get('at') || '';
  const out = h('div', { id: 'table-out', 'aria-live': 'polite' });
  const label = h('output', { for: 'table-slider' }, at ? fmtTime(at) : 'now');
  const steps = 200;
  const cur = at ? Math.round(((Date.parse(at) - t0) / Math.max(1, t1 - t0)) * steps) : steps + 1;
  const slider = h('input', { type: 'range', id: 'table-slider', min: 0, max: steps + 1, value: Math.min(cur, steps + 1), 'aria-label': 'Instant of the table state' });
  const instant = (v) => (v > steps ? '' : new Date(t0 + ((t1 - t0) * v) / steps + (v === steps ? 1 : 0)).toISOString());
  slider.addEventListener('input', () => {
    const a = instant(Number(slider.value));
    label.textContent = a ? fmtTime(a) : 'now';
    slider.setAttribute('aria-valuetext', label.textContent);
  });
  slider.addEventListener('change', () => go(instant(Number(slider.value)), 0));
  const go = (a, p) => {
    const n = new URLSearchParams();
    if (a) n.set('at', a);
    if (p) n.set('page', p);
    location.hash = '#/table/' + encodeURIComponent(source) + '/' + encodeURIComponent(table) + (n.toString() ? '?' + n : '');
  };
  view.appendChild(h('section', { class: 'state' }, h('div', { class: 'slider-row' },
    h('label', { for: 'table-slider' }, 'At'), slider, label),
  h('p', { class: 'hint' }, `The slider spans the table's changes, ${fmtTime(first.records[0].occurred_at)} to ${fmtTime(last.records[0].occurred_at)}; the far right is now.`)));
  view.appendChild(out);

  const units = await readUnits(`/v1/tables/${encodeURIComponent(source)}/${encodeURIComponent(table)}/state${at ? '?at=' + encodeURIComponent(at) : ''}`, page * PAGE, PAGE + 1);
  if (stale()) return;
  const more = units.length > PAGE;
  const shown = units.slice(0, PAGE);
  const cols = [...new Set(shown.flatMap((u) => [...flatten(u.state).keys()]))].slice(0, 12);
  clear(out).appendChild(h('div', { class: 'scroll' }, h('table', { class: 'dense' },
    h('caption', { class: 'sr-only' }, 'Units of the table'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'key'), cols.map((c) => h('th', { scope: 'col' }, c)), h('th', { scope: 'col' }, 'last seq'))),
    h('tbody', {}, shown.map((u) => {
      const f = flatten(u.state);
      return h('tr', {}, h('td', {}, h('a', { href: entityHref(source, table, u.key) + (at ? '?at=' + encodeURIComponent(at) : '') }, u.key)),
        cols.map((c) => h('td', {}, valueNode(f.get(c), isMasked(c, pii, role)))), h('td', { class: 'num' }, h('a', { href: '#/record/' + u.seq }, u.seq)));
    })))));
  out.appendChild(h('p', { class: 'count' }, `units ${page * PAGE + 1}–${page * PAGE + shown.length}` + (more ? ', more follow' : '')));
  const nav = h('nav', { class: 'pager', 'aria-label': 'Pages of units' });
  if (page > 0) nav.appendChild(h('button', { type: 'button', onclick: () => go(at, page - 1) }, '← Previous'));
  if (more) nav.appendChild(h('button', { type: 'button', onclick: () => go(at, page + 1) }, 'Next →'));
  out.appendChild(nav);
}

// readUnits reads lines skip … skip+n of a JSON Lines stream and cancels
// it; a line without "key" is the server's report of a failed read.
async function readUnits(path, skip, n) {
  const ctl = new AbortController();
  const resp = await api.raw(path, { signal: ctl.signal });
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = '', seen = 0;
  const out = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (value) buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line) continue;
        const u = JSON.parse(line);
        if (u.key === undefined) throw new Error('the server could not finish the table: ' + (u.error || 'unknown error'));
        if (seen++ >= skip) out.push(u);
        if (out.length >= n) return out;
      }
      if (done) return out;
    }
  } finally {
    ctl.abort();
  }
}
