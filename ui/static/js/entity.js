// The timeline of one unit: every change with its diff, who and what
// caused it, its transaction and schema version, and a slider that shows
// the unit as it was at any instant.

import * as api from './api.js';
import { h, clear, fmtTime, searchHref } from './dom.js';
import { annotations, diffTable, stateTable } from './diff.js';

export async function entityPage(view, route, who, stale) {
  const [source, table, key] = route.args;
  const base = '/v1/entities/' + [source, table, key].map(encodeURIComponent).join('/');
  view.appendChild(h('p', { class: 'crumbs' }, h('a', { href: searchHref({ source, table }) }, source + '/' + table), ' › ',
    h('a', { href: '#/table/' + encodeURIComponent(source) + '/' + encodeURIComponent(table) }, 'table state'), ' › key ', key));
  view.appendChild(h('h1', {}, `${table} ${key}`, h('span', { class: 'sub' }, ` in ${source}`)));
  const recs = [];
  let cursor = '';
  do {
    const page = await api.json(base + '/history?limit=1000' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
    recs.push(...page.records);
    cursor = page.next_cursor || '';
  } while (cursor && recs.length < 5000);
  if (stale()) return;
  if (!recs.length) {
    view.appendChild(h('p', {}, 'No record of this unit.'));
    return;
  }
  const role = who ? who.role : '';
  const pii = await annotations(recs[recs.length - 1].schema);
  if (stale()) return;
  view.appendChild(await stateAt(base, recs, route.query.get('at'), pii, role, stale));
  // The latest checkpoint's size says which changes it covers; the record
  // page checks its signature and the inclusion proof.
  const cpSize = await api.text('/v1/checkpoint').then((t) => Number(t.split('\n')[1])).catch(() => NaN);
  const list = h('ol', { class: 'timeline', 'aria-label': 'Changes, oldest first' });
  for (const r of recs) {
    const rp = await annotations(r.schema);
    list.appendChild(changeCard(r, rp, role, cpSize));
  }
  view.appendChild(h('h2', {}, `${recs.length} change${recs.length === 1 ? '' : 's'}`));
  view.appendChild(list);
}

function changeCard(r, pii, role, cpSize) {
  const meta = [];
  if (r.actor) {
    const a = r.actor;
    meta.push(h('div', {}, h('dt', {}, 'actor'), h('dd', {},
      h('a', { href: searchHref({ actor: a.id }) }, a.id || '?'),
      [a.type, a.app && 'via ' + a.app, a.ip, a.request_id].filter(Boolean).map((x) => ' · ' + x))));
  }
  if (r.cause) {
    meta.push(h('div', {}, h('dt', {}, 'cause'), h('dd', {},
      r.cause.record_id
        ? h('a', { href: searchHref({ cause: r.cause.record_id }), title: 'every change this event caused' }, r.cause.type || r.cause.record_id)
        : h('a', { href: searchHref({ source: r.source.name, cause_type: r.cause.type }), title: 'other changes with this cause' }, r.cause.type || '?'),
      r.cause.description ? ' — ' + r.cause.description : '')));
  }
  if (r.tx) {
    const until = new Date(Date.parse(r.occurred_at) + 1000).toISOString();
    meta.push(h('div', {}, h('dt', {}, 'transaction'), h('dd', {},
      r.tx.id ? h('a', { href: searchHref({ source: r.source.name, tx: r.tx.id, since: r.occurred_at, until, order: 'asc' }), title: 'every change of this transaction' }, r.tx.id) : '—',
      r.tx.position ? ' at ' + r.tx.position : '', r.tx.index !== undefined ? ' #' + r.tx.index : '')));
  }
  if (r.schema) {
    meta.push(h('div', {}, h('dt', {}, 'schema'), h('dd', {},
      h('a', { href: '#/privacy?schema=' + encodeURIComponent(r.schema.subject) }, r.schema.subject), ' v' + r.schema.version)));
  }
  meta.push(h('div', {}, h('dt', {}, 'recorded'), h('dd', {}, fmtTime(r.recorded_at))));
  return h('li', { class: 'change', id: 'seq-' + r.seq },
    h('header', {},
      h('span', { class: 'op op-' + r.op }, r.op), ' ',
      h('time', { datetime: r.occurred_at }, fmtTime(r.occurred_at)), ' ',
      h('a', { href: '#/record/' + r.seq, class: 'proof-link', title: 'the record and its inclusion proof, checked in this page' },
        'seq ' + r.seq + (r.seq < cpSize ? ` · in checkpoint ${cpSize}` : ' · not yet in a checkpoint') + ' · verify')),
    h('dl', { class: 'meta' }, meta),
    r.before || r.after ? diffTable(r, pii, role) : h('p', { class: 'hint' }, 'no image'));
}

// stateAt is the slider: its stops are the instants of the unit's
// changes (plus now), and a time field takes any other instant.
async function stateAt(base, recs, at0, pii, role, stale) {
  const stops = recs.map((r) => r.occurred_at);
  const out = h('div', { class: 'state-out', 'aria-live': 'polite', id: 'state-out' });
  const label = h('output', { for: 'at-slider', id: 'at-label' });
  const slider = h('input', { type: 'range', id: 'at-slider', min: 0, max: stops.length, step: 1, value: stops.length,
    'aria-label': 'Show the unit as it was at the time of change number' });
  const field = h('input', { id: 'at-field', value: at0 || '', placeholder: 'RFC 3339 instant', autocomplete: 'off' });
  let timer = 0, seqNo = 0;
  const show = async (at) => {
    const mine = ++seqNo;
    const url = base + '/state' + (at ? '?at=' + encodeURIComponent(at) : '');
    let node;
    try {
      const st = await api.json(url);
      node = h('div', {}, h('p', { class: 'hint' }, `as of seq ${st.seq} (${fmtTime(st.occurred_at)})`), stateTable(st.state, pii, role));
    } catch (e) {
      node = h('p', { class: 'hint' }, e.status === 404 ? 'The unit did not exist at this instant (not yet inserted, or deleted).' : e.message);
    }
    if (mine !== seqNo || stale()) return;
    clear(out).appendChild(node);
    out.dataset.at = at || 'now';
  };
  const fromSlider = () => {
    const i = Number(slider.value);
    const at = i >= stops.length ? '' : stops[i];
    label.textContent = at ? fmtTime(at) + ` (change ${i + 1} of ${stops.length})` : 'now';
    slider.setAttribute('aria-valuetext', label.textContent);
    field.value = at;
    clearTimeout(timer);
    timer = setTimeout(() => show(at), 120);
  };
  slider.addEventListener('input', fromSlider);
  field.addEventListener('change', () => {
    label.textContent = field.value || 'now';
    show(field.value.trim());
  });
  if (at0) {
    const i = stops.indexOf(at0);
    slider.value = i < 0 ? stops.length : i;
    label.textContent = fmtTime(at0);
  } else {
    label.textContent = 'now';
  }
  await show(at0 || '');
  if (stale()) return h('div');
  return h('section', { class: 'state', 'aria-label': 'State at an instant' },
    h('h2', {}, 'State at'),
    h('div', { class: 'slider-row' }, slider, label),
    h('div', { class: 'field inline' }, h('label', { for: 'at-field' }, 'or at instant'), field),
    out);
}
