// The privacy pages: schemas and their annotations, retention periods and
// when they expire, erasure receipts, the access log of clear reads, and,
// for admins, erasing a subject. Everything is read through the API, as
// the viewer's role may see it.

import * as api from './api.js';
import { h, clear, fmtTime } from './dom.js';

export async function privacyPage(view, route, who, stale) {
  view.appendChild(h('h1', {}, 'Privacy'));
  const toc = h('nav', { class: 'toc', 'aria-label': 'Sections' },
    ['schemas', 'retention', 'erase', 'receipts', 'access'].map((s) => h('a', { href: '#/privacy?section=' + s }, s)));
  view.appendChild(toc);
  let list = { subjects: [] };
  try {
    list = await api.json('/v1/schemas');
  } catch (e) {
    if (e.status !== 404) throw e;
  }
  const schemas = await Promise.all(list.subjects.map((s) => api.json('/v1/schemas/' + encodeURIComponent(s.subject))));
  if (stale()) return;
  const annotated = schemas.map((s) => ({ subject: s.subject, version: s.version, fields: fieldsOf(s.schema), root: s.schema }));

  view.appendChild(h('section', { id: 'schemas', 'aria-label': 'Schemas' }, h('h2', {}, 'Schemas and annotations'),
    annotated.length ? annotated.map((s) => h('div', { class: 'schema', id: 'schema-' + s.subject, 'data-subject': s.subject },
      h('h3', {}, s.subject, h('span', { class: 'sub' }, ' v' + s.version)),
      h('div', { class: 'scroll' }, h('table', { class: 'dense' },
        h('thead', {}, h('tr', {}, ['field', 'type', 'PII', 'subject', 'group', 'retention', 'mask', 'searchable'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, s.fields.map((f) => h('tr', { class: f.pii ? 'pii-row' : '' },
          h('th', { scope: 'row' }, f.path), h('td', {}, f.type), h('td', {}, f.pii ? 'yes' : ''), h('td', {}, f.subject ? 'yes' : ''),
          h('td', {}, f.group), h('td', {}, f.retention || ''), h('td', {}, f.pii ? f.mask : ''), h('td', {}, f.searchable ? 'yes' : '')))))))) :
      h('p', { class: 'hint' }, 'No schema is registered: no field is treated as personal data.')));

  view.appendChild(retention(annotated));
  if (who && who.role === 'admin') view.appendChild(eraseForm(annotated));
  view.appendChild(await systemRecords('receipts', 'Erasure and retention receipts', 'erasures', receiptRow, ['seq', 'at', 'type', 'by', 'reason', 'subjects / period', 'records', 'keys destroyed']));
  if (stale()) return;
  view.appendChild(await systemRecords('access', 'Access log: reads of personal data in clear', 'access', accessRow, ['seq', 'at', 'who', 'role', 'endpoint', 'records', 'values in clear']));
  if (stale()) return;
  const focus = route.query.get('schema') ? document.getElementById('schema-' + route.query.get('schema')) : document.getElementById(route.query.get('section') || '');
  if (focus) focus.scrollIntoView();
}

// fieldsOf lists the properties reached through nested "properties", the
// only places annotations are read (docs/privacy.md).
function fieldsOf(schema, prefix = '', group = schema['x-data-group'] || 'default', out = []) {
  for (const [name, p] of Object.entries(schema.properties || {})) {
    const path = prefix ? prefix + '.' + name : name;
    const g = p['x-data-group'] || group;
    out.push({ path, type: [].concat(p.type || (p.properties ? 'object' : '')).join('|'), pii: !!p['x-pii'], subject: !!p['x-subject'],
      group: g, retention: p['x-subject'] ? p['x-retention'] || schema['x-retention'] || '' : '', mask: p['x-mask'] || '***', searchable: !!p['x-searchable'] });
    if (p.properties) fieldsOf(p, path, g, out);
  }
  return out;
}

// addDuration adds an ISO 8601 PnYnMnWnDTnHnMnS duration to a UTC date.
export function addDuration(d, iso) {
  const m = /^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/.exec(iso || '');
  if (!m) return null;
  const [, y, mo, w, dd, hh, mi, ss] = m.map((x) => Number(x || 0));
  const r = new Date(d);
  r.setUTCFullYear(r.getUTCFullYear() + y, r.getUTCMonth() + mo, r.getUTCDate() + 7 * w + dd);
  r.setUTCHours(r.getUTCHours() + hh, r.getUTCMinutes() + mi, r.getUTCSeconds() + ss);
  return r;
}

// retention shows, per data group, when this month's data expires and
// which months have expired already: a period is the month of occurred_at,
// and expires at the end of that month plus the retention.
function retention(annotated) {
  const rows = [];
  const now = new Date();
  const monthEnd = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  for (const s of annotated) {
    const groups = new Map();
    for (const f of s.fields) if (f.subject) groups.set(f.group, f.retention);
    for (const f of s.fields) if (f.pii && !groups.has(f.group)) groups.set(f.group, s.root['x-retention'] || '');
    for (const [g, ret] of groups) {
      let expires = 'kept until erased', expired = '—';
      if (ret) {
        const e = addDuration(monthEnd, ret);
        expires = e ? e.toISOString().slice(0, 10) : 'unreadable duration';
        // The latest month already expired: its end plus the retention is past.
        const cut = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
        let probe = cut;
        for (let i = 0; i < 1200 && addDuration(probe, ret) > now; i++) probe = new Date(Date.UTC(probe.getUTCFullYear(), probe.getUTCMonth() - 1, 1));
        const last = new Date(Date.UTC(probe.getUTCFullYear(), probe.getUTCMonth() - 1, 1));
        expired = 'data from ' + last.toISOString().slice(0, 7) + ' and before';
      }
      rows.push(h('tr', {}, h('td', {}, s.subject), h('td', {}, g), h('td', {}, ret || 'none'),
        h('td', {}, `data from ${now.toISOString().slice(0, 7)} expires ${expires}`), h('td', {}, expired)));
    }
  }
  return h('section', { id: 'retention', 'aria-label': 'Retention' }, h('h2', {}, 'Retention periods'),
    rows.length ? h('div', { class: 'scroll' }, h('table', { class: 'dense' },
      h('thead', {}, h('tr', {}, ['schema', 'group', 'retention', 'expiry', 'already shredded'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows))) : h('p', { class: 'hint' }, 'No data group declares personal data.'));
}

async function systemRecords(id, title, table, row, cols) {
  const sec = h('section', { id, 'aria-label': title }, h('h2', {}, title));
  try {
    const page = await api.json('/v1/records?source=stele&table=' + table + '&limit=50');
    sec.appendChild(page.records.length ? h('div', { class: 'scroll' }, h('table', { class: 'dense', id: id + '-table' },
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, page.records.map(row)))) : h('p', { class: 'hint' }, 'None yet.'));
    if (page.next_cursor) sec.appendChild(h('p', {}, h('a', { href: '#/search?source=stele&table=' + table }, 'All of them in search')));
  } catch (e) {
    sec.appendChild(h('p', { class: 'error' }, e.message));
  }
  return sec;
}

function receiptRow(r) {
  const a = r.after || {};
  const by = a.requested_by ? `${a.requested_by.name} (${a.requested_by.role})` : 'stele';
  return h('tr', {}, h('td', { class: 'num' }, h('a', { href: '#/record/' + r.seq }, r.seq)), h('td', {}, fmtTime(r.occurred_at)), h('td', {}, a.type),
    h('td', {}, by), h('td', {}, a.reason || ''), h('td', {}, a.period || (a.subjects || []).map((s) => s.group + ':' + String(s.ref).slice(0, 10) + '…').join(' ')),
    h('td', { class: 'num' }, a.records ?? ''), h('td', { class: 'num' }, a.keys_destroyed ?? ''));
}

function accessRow(r) {
  const a = r.after || {}, who = r.actor || {};
  const recs = a.records || [];
  return h('tr', {}, h('td', { class: 'num' }, h('a', { href: '#/record/' + r.seq }, r.seq)), h('td', {}, fmtTime(r.occurred_at)),
    h('td', {}, who.id || ''), h('td', {}, who.role || who.type || ''), h('td', {}, a.endpoint || ''),
    h('td', {}, recs.slice(0, 8).map((s, i) => [i ? ', ' : '', h('a', { href: '#/record/' + s }, s)]), recs.length > 8 ? ` … (${recs.length})` : ''),
    h('td', { class: 'num' }, a.fields_in_clear ?? ''));
}

// eraseForm asks twice: erasure destroys keys, and nothing brings them back.
function eraseForm(annotated) {
  const groups = [...new Set(annotated.flatMap((s) => s.fields.filter((f) => f.subject).map((f) => f.group)))];
  const out = h('div', { id: 'erase-out', 'aria-live': 'polite' });
  const subject = h('input', { id: 'erase-subject', name: 'subject', required: true, autocomplete: 'off' });
  const group = h('select', { id: 'erase-group', name: 'group' }, h('option', { value: '' }, 'every group'), groups.map((g) => h('option', { value: g }, g)));
  const reason = h('input', { id: 'erase-reason', name: 'reason', autocomplete: 'off', placeholder: 'ticket number (not personal data)' });
  const confirmInput = h('input', { id: 'erase-confirm', autocomplete: 'off' });
  const confirmMsg = h('p', { id: 'erase-confirm-help' });
  const dialog = h('dialog', { id: 'erase-dialog', 'aria-labelledby': 'erase-dialog-title' },
    h('form', { method: 'dialog', onsubmit: async (ev) => {
      ev.preventDefault();
      if (ev.submitter && ev.submitter.value === 'cancel') {
        dialog.close();
        return;
      }
      if (confirmInput.value !== subject.value) {
        confirmMsg.textContent = 'The id typed does not match; nothing was erased.';
        return;
      }
      dialog.close();
      clear(out).appendChild(h('p', {}, 'Erasing…'));
      try {
        const q = group.value ? '?group=' + encodeURIComponent(group.value) : '';
        const res = await api.json('/v1/subjects/' + encodeURIComponent(subject.value) + '/erase' + q, {
          method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ reason: reason.value }),
        });
        clear(out).appendChild(h('div', { class: 'verdict ok', id: 'erase-result' },
          h('p', {}, `Erased: ${res.receipt.records ?? 0} records affected, ${res.receipt.keys_destroyed} keys destroyed; receipt at seq `,
            h('a', { href: '#/record/' + res.seq }, res.seq), '.'),
          h('details', {}, h('summary', {}, 'Signed receipt'), h('pre', { class: 'json' }, res.signed))));
      } catch (e) {
        clear(out).appendChild(h('p', { class: 'error', role: 'alert' }, e.message));
      }
    } },
    h('h3', { id: 'erase-dialog-title' }, 'Erase this subject for good?'),
    h('p', {}, 'Their keys are destroyed: every sealed field of theirs becomes unreadable in every record, export and copy, and this cannot be undone. The history stays verifiable.'),
    h('label', { for: 'erase-confirm' }, 'Type the subject id again to confirm'), confirmInput, confirmMsg,
    h('div', { class: 'actions' }, h('button', { type: 'submit', value: 'cancel', formnovalidate: true }, 'Cancel'),
      h('button', { type: 'submit', value: 'erase', class: 'danger', id: 'erase-go' }, 'Erase'))));
  return h('section', { id: 'erase', 'aria-label': 'Erase a subject' }, h('h2', {}, 'Erase a subject'),
    h('form', { class: 'filters', onsubmit: (ev) => {
      ev.preventDefault();
      confirmInput.value = '';
      confirmMsg.textContent = '';
      dialog.showModal();
      confirmInput.focus();
    } },
    h('div', { class: 'field' }, h('label', { for: 'erase-subject' }, 'Subject id (the x-subject value)'), subject),
    h('div', { class: 'field' }, h('label', { for: 'erase-group' }, 'Data group'), group),
    h('div', { class: 'field' }, h('label', { for: 'erase-reason' }, 'Reason'), reason),
    h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'danger', id: 'erase-start' }, 'Erase…'))),
    dialog, out);
}
