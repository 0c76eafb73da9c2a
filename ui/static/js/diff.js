// Before → after diffs of nested images, and the schema annotations that
// tell a masked value from a plain one.

import * as api from './api.js';
import { h, special, unpackSealed, valueNode } from './dom.js';

// flatten maps each leaf of an image to its dotted path; a sealed or
// erased envelope is a leaf, since its inside is not the value. An
// image's compact envelope is unpacked into its fields first.
export function flatten(v, prefix = '', out = new Map()) {
  if (!prefix) v = unpackSealed(v);
  if (v && typeof v === 'object' && !Array.isArray(v) && !special(v) && Object.keys(v).length) {
    for (const [k, x] of Object.entries(v)) flatten(x, prefix ? prefix + '.' + k : k, out);
  } else if (prefix) {
    out.set(prefix, v);
  }
  return out;
}

const schemaCache = new Map();

// annotations returns, for a record's schema version, the dotted paths of
// its x-pii fields with their mask; {} when the record names no schema or
// the viewer may not read it.
export async function annotations(ref) {
  if (!ref || !ref.subject) return {};
  const id = ref.subject + '@' + ref.version;
  if (!schemaCache.has(id)) {
    schemaCache.set(id, api.json(`/v1/schemas/${encodeURIComponent(ref.subject)}/versions/${ref.version}`)
      .then((s) => piiPaths(s.schema)).catch(() => ({})));
  }
  return schemaCache.get(id);
}

export function piiPaths(schema, prefix = '', out = {}) {
  for (const [name, p] of Object.entries((schema && schema.properties) || {})) {
    const path = prefix ? prefix + '.' + name : name;
    if (p['x-pii']) out[path] = { mask: p['x-mask'] || '***', searchable: !!p['x-searchable'], group: p['x-data-group'] };
    if (p.properties) piiPaths(p, path, out);
  }
  return out;
}

// isMasked: an analyst is served x-pii fields masked; the value alone
// cannot say so, the schema can.
export function isMasked(path, pii, role) {
  if (role !== 'analyst') return false;
  return Object.keys(pii).some((p) => path === p || path.startsWith(p + '.'));
}

export function diffTable(rec, pii, role) {
  const before = flatten(rec.before || {});
  const after = flatten(rec.after || {});
  const changedTop = new Set(rec.changed || []);
  const paths = [...new Set([...before.keys(), ...after.keys()])];
  const rows = paths.map((p) => {
    const b = before.get(p), a = after.get(p);
    const top = p.split('.')[0];
    const differs = JSON.stringify(b) !== JSON.stringify(a);
    const changed = (rec.op === 'update' && changedTop.has(top) && (differs || special(a) || special(b) || isMasked(p, pii, role))) ||
      (rec.op === 'update' && differs);
    const masked = isMasked(p, pii, role);
    return h('tr', { class: changed ? 'changed' : 'same' },
      h('th', { scope: 'row' }, p, pii[p] || masked ? h('span', { class: 'pii', title: 'personal data (x-pii)' }, ' PII') : null),
      rec.op === 'insert' || rec.op === 'snapshot' ? null : h('td', {}, valueNode(b, masked)),
      rec.op === 'delete' ? null : h('td', {}, valueNode(a, masked)),
      h('td', { class: 'mark' }, changed ? h('span', { 'aria-label': 'changed' }, '●') : ''));
  });
  const cols = ['field'];
  if (!(rec.op === 'insert' || rec.op === 'snapshot')) cols.push('before');
  if (rec.op !== 'delete') cols.push('after');
  cols.push('');
  return h('table', { class: 'diff' },
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows));
}

export function stateTable(state, pii, role) {
  const flat = flatten(state || {});
  return h('table', { class: 'diff state' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'field'), h('th', { scope: 'col' }, 'value'))),
    h('tbody', {}, [...flat].map(([p, v]) => h('tr', {}, h('th', { scope: 'row' }, p, pii[p] ? h('span', { class: 'pii', title: 'personal data (x-pii)' }, ' PII') : null),
      h('td', {}, valueNode(v, isMasked(p, pii, role)))))));
}
