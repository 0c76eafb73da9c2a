// The lineage graph: sources → tables → consumers (projections and the
// NATS subjects of the lineage stream), with record counts and the newest
// change, from GET /v1/lineage. Depth chooses how many columns show;
// every node is a link (tables to their changes, consumers to their
// entries), reachable with the keyboard.

import * as api from './api.js';
import { h, fmtTime, searchHref } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

// natsToken escapes a name the way the publisher does (docs/api.md):
// '.', '*', '>', '%', whitespace and controls as %XX per UTF-8 byte.
export function natsToken(name) {
  if (name === '') return '%';
  let out = '';
  for (const c of name) {
    const cp = c.codePointAt(0);
    if (cp <= 0x20 || (cp >= 0x7f && cp < 0xa0) || /\s/u.test(c) || '.*>%'.includes(c)) {
      for (const b of new TextEncoder().encode(c)) out += '%' + b.toString(16).toUpperCase().padStart(2, '0');
    } else {
      out += c;
    }
  }
  return out;
}

// consumes guesses which tables a projection reads from its CEL filter:
// a table named in a string literal there, or every table when the filter
// names none (or there is no filter).
function consumes(p, t) {
  if (!p.filter) return true;
  const lits = [...p.filter.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
  if (!lits.length) return true;
  return lits.includes(t.table);
}

export async function lineagePage(view, route, who, stale) {
  const depth = Math.min(3, Math.max(1, Number(route.query.get('depth') || 3) | 0));
  const showSystem = route.query.get('system') === '1';
  const lin = await api.json('/v1/lineage');
  if (stale()) return;
  const tables = lin.tables.filter((t) => showSystem || t.source !== 'stele');
  view.appendChild(h('h1', {}, 'Lineage', h('span', { class: 'sub' }, ` ${lin.size} records in the log`)));
  const link = (d, sys) => '#/lineage?depth=' + d + (sys ? '&system=1' : '');
  view.appendChild(h('p', { class: 'inline-form' }, h('label', { for: 'depth' }, 'Depth'),
    h('select', { id: 'depth', onchange: (ev) => { location.hash = link(ev.target.value, showSystem); } },
      [[1, 'sources'], [2, 'sources → tables'], [3, 'sources → tables → consumers']].map(([d, l]) => h('option', { value: d, selected: d === depth }, l))),
    h('a', { href: link(depth, !showSystem) }, showSystem ? 'hide Stele\'s own records' : 'show Stele\'s own records (access log, receipts)')));

  const sources = new Map();
  for (const t of tables) {
    const s0 = sources.get(t.source) || { name: t.source, records: 0, last: '' };
    s0.records += t.records;
    if (t.last_change > s0.last) s0.last = t.last_change;
    sources.set(t.source, s0);
  }
  const consumers = [];
  if (depth >= 3) {
    for (const p of lin.projections) consumers.push({ kind: 'projection', name: p.name, detail: `${p.keys} keys, ${p.applied} applied`, href: '#/search', reads: (t) => consumes(p, t), title: p.filter || 'every record' });
    if (lin.stream) {
      for (const t of tables) consumers.push({ kind: 'stream', name: `${lin.stream}.${natsToken(t.source)}.${natsToken(t.table)}.*`, detail: 'NATS JetStream', reads: (x) => x === t, href: '' });
    }
  }
  const W = 1180, colW = 300, rowH = 46, pad = 8;
  const cols = [[...sources.values()]];
  if (depth >= 2) cols.push(tables);
  if (depth >= 3) cols.push(consumers);
  const rows = Math.max(1, ...cols.map((c) => c.length));
  const gap = cols.length > 1 ? (W - colW * cols.length) / (cols.length - 1) : 0;
  const x = (i) => i * (colW + gap);
  const y = (j) => pad + j * rowH;
  const svg = s('svg', { class: 'lineage', viewBox: `0 0 ${W} ${rows * rowH + pad * 2}`, role: 'img', 'aria-label': 'Lineage graph' });
  const edges = s('g', {});
  svg.append(edges);
  const edge = (i1, j1, i2, j2) => {
    const x1 = x(i1) + colW, y1 = y(j1) + rowH / 2 - 4, x2 = x(i2), y2 = y(j2) + rowH / 2 - 4;
    edges.append(s('path', { d: `M${x1},${y1} C${x1 + gap / 2},${y1} ${x2 - gap / 2},${y2} ${x2},${y2}` }));
  };
  const node = (i, j, cls, title, line2, href) => {
    const g = s('g', { class: 'node ' + cls, transform: `translate(${x(i)},${y(j)})` },
      s('rect', { width: colW, height: rowH - 8 }),
      s('text', { x: 8, y: 15, 'font-weight': 600 }, title.length > 44 ? title.slice(0, 43) + '…' : title),
      s('text', { x: 8, y: 31, fill: '#5b6470' }, line2));
    if (!href) return g;
    const a = s('a', { href }, g);
    a.append(s('title', {}, title));
    return a;
  };
  const srcList = cols[0];
  srcList.forEach((src, j) => svg.append(node(0, j, 'source', src.name, `${src.records} records · last ${fmtTime(src.last)}`, searchHref({ source: src.name }))));
  if (depth >= 2) {
    tables.forEach((t, j) => {
      edge(0, srcList.findIndex((x0) => x0.name === t.source), 1, j);
      svg.append(node(1, j, 'table', t.table, `${t.records} records · last ${fmtTime(t.last_change)}`, '#/table/' + encodeURIComponent(t.source) + '/' + encodeURIComponent(t.table)));
    });
  }
  if (depth >= 3) {
    consumers.forEach((c, j) => {
      tables.forEach((t, k) => { if (c.reads(t)) edge(1, k, 2, j); });
      svg.append(node(2, j, 'consumer', c.name, `${c.kind} · ${c.detail}`, c.href));
    });
  }
  view.appendChild(h('div', { class: 'scroll' }, svg));
  // The same facts as a table, for screen readers and for copying.
  view.appendChild(h('h2', {}, 'Tables'));
  view.appendChild(h('div', { class: 'scroll' }, h('table', { class: 'dense', id: 'lineage-tables' },
    h('thead', {}, h('tr', {}, ['source', 'table', 'records', 'last change', 'last seq'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, tables.map((t) => h('tr', {}, h('td', {}, t.source),
      h('td', {}, h('a', { href: searchHref({ source: t.source, table: t.table }) }, t.table)),
      h('td', { class: 'num' }, t.records), h('td', {}, fmtTime(t.last_change)),
      h('td', { class: 'num' }, h('a', { href: '#/record/' + t.last_seq }, t.last_seq))))))));
  view.appendChild(h('p', { class: 'hint' }, 'Exports are not listed: the server keeps no record of who exported what. A projection is linked to the tables its filter names, or to all.'));
}
