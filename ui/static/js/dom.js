// Elements are built with textContent only, never innerHTML: record values
// are data from anyone who can write to a source, and must never become
// markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// fmtTime shows an RFC 3339 instant compactly, in UTC like the API.
export function fmtTime(s) {
  if (!s) return '';
  return s.replace('T', ' ').replace(/(\.\d+)?Z$/, 'Z');
}

// keyString is the API's canonical key string (docs/api.md): the bare
// value for one column, else col=value pairs with %, ',' and '=' escaped.
export function keyString(key) {
  const cols = Object.keys(key || {});
  const text = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
  if (cols.length === 1) return text(key[cols[0]]);
  const esc = (s) => s.replace(/%/g, '%25').replace(/,/g, '%2C').replace(/=/g, '%3D');
  return cols.map((c) => esc(c) + '=' + esc(text(key[c]))).join(',');
}

export function entityHref(source, table, key) {
  return '#/entity/' + [source, table, key].map(encodeURIComponent).join('/');
}

export function searchHref(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, v);
  return '#/search?' + q.toString();
}

// special reports what a revealed value stands for: an envelope the role
// may not open (a field of a compact envelope once unpacked, or a
// per-field envelope of records sealed before it), or a value whose key
// was destroyed.
export function special(v) {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    if ('$sealed' in v) return 'sealed';
    if (v.$erased === true) return 'erased';
  }
  return '';
}

export function valueNode(v, masked) {
  const sp = special(v);
  if (sp === 'sealed') return h('span', { class: 'v-sealed', title: 'sealed: your role may not see this value' }, '🔒 sealed');
  if (sp === 'erased') return h('span', { class: 'v-erased', title: 'erased: its key was destroyed' }, '⌀ erased');
  if (v === undefined) return h('span', { class: 'v-absent' }, '—');
  const text = typeof v === 'string' ? v : JSON.stringify(v);
  if (masked) return h('span', { class: 'v-masked', title: 'masked for your role' }, '▒ ', text);
  return h('span', { class: 'v' }, text);
}

// unpackSealed returns an image whose compact envelope
// ({"$pii":{"email,address.street":"…"}}, which holds several fields
// sealed together) is replaced by one {"$sealed":true} per field it
// seals, at the field's path, so each shows as a sealed value. Paths use
// "." between names, "~1" for a "." in a name, "~2" for "," and "~0" for
// "~" (docs/privacy.md).
export function unpackSealed(img) {
  if (!img || typeof img !== 'object' || Array.isArray(img) || !img.$pii || typeof img.$pii !== 'object') return img;
  const out = structuredClone(img);
  delete out.$pii;
  const unescape = (s) => s.replace(/~([012])/g, (_, c) => ({ 0: '~', 1: '.', 2: ',' })[c]);
  for (const list of Object.keys(img.$pii)) {
    for (const path of list.split(',')) {
      const names = path.split('.').map(unescape);
      let at = out;
      for (const n of names.slice(0, -1)) {
        if (!at[n] || typeof at[n] !== 'object' || Array.isArray(at[n])) at[n] = {};
        at = at[n];
      }
      at[names[names.length - 1]] = { $sealed: true };
    }
  }
  return out;
}
