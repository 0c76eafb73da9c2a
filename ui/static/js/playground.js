// A small GraphQL playground served from the binary: an editor, variables,
// the answer, and the schema's query fields from introspection. It
// replaces a page that loaded GraphiQL from a CDN, which stays blank on a
// network without a way out.

import * as api from './api.js';
import { h, clear } from './dom.js';

const q = document.getElementById('pg-query');
const vars = document.getElementById('pg-vars');
const tok = document.getElementById('pg-token');
const out = document.getElementById('pg-result');
const docs = document.getElementById('pg-docs');

q.value = localStorage.getItem('stele.pg.query') || `{
  checkpoint { size rootHash }
  records(filter: {source: "crm"}, first: 5) {
    nodes { seq op occurredAt keyString actor changed }
    pageInfo { hasNextPage endCursor }
  }
}`;
tok.value = api.token();

async function gql(query, variables) {
  if (tok.value.trim() !== api.token()) api.setToken(tok.value.trim());
  const resp = await fetch('/graphql', { method: 'POST', headers: api.headers({ 'Content-Type': 'application/json' }), body: JSON.stringify({ query, variables }) });
  return { status: resp.status, body: await resp.json().catch(() => ({ errors: [{ message: 'answer is not JSON' }] })) };
}

async function run() {
  localStorage.setItem('stele.pg.query', q.value);
  let variables;
  try {
    variables = vars.value.trim() ? JSON.parse(vars.value) : undefined;
  } catch (e) {
    out.textContent = 'Variables are not JSON: ' + e.message;
    return;
  }
  out.textContent = 'running…';
  const t0 = performance.now();
  const { status, body } = await gql(q.value, variables);
  out.textContent = `// HTTP ${status}, ${Math.round(performance.now() - t0)} ms\n` + JSON.stringify(body, null, 2);
}

const typeName = (t) => (t.kind === 'NON_NULL' ? typeName(t.ofType) + '!' : t.kind === 'LIST' ? '[' + typeName(t.ofType) + ']' : t.name);

async function schema() {
  const { body } = await gql(`{ __schema { queryType { fields { name description args { name type { kind name ofType { kind name ofType { kind name } } } } type { kind name ofType { kind name ofType { kind name } } } } } } }`);
  clear(docs).appendChild(h('h2', {}, 'Query fields'));
  if (!body.data) {
    docs.appendChild(h('p', { class: 'error' }, JSON.stringify(body.errors)));
    return;
  }
  docs.appendChild(h('dl', { class: 'meta' }, body.data.__schema.queryType.fields.map((f) => h('div', {},
    h('dt', {}, h('code', {}, f.name)),
    h('dd', {}, h('code', {}, '(' + f.args.map((a) => a.name + ': ' + typeName(a.type)).join(', ') + '): ' + typeName(f.type)), f.description ? ' — ' + f.description : '')))));
}

document.getElementById('pg-run').addEventListener('click', run);
document.getElementById('pg-schema').addEventListener('click', schema);
q.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
    ev.preventDefault();
    run();
  }
});
