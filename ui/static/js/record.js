// One record and its proof, checked here: the leaf hash, the leaf's
// header, the inclusion path and the checkpoint's Ed25519 signature, with
// WebCrypto. A tampered copy of the proof is offered too, to show what a
// rejection looks like.

import * as api from './api.js';
import { h, clear, fmtTime, keyString, entityHref, searchHref } from './dom.js';
import { cryptoAvailable, trustedKey, verifyRecordProof, b64decode, b64encode } from './verify.js';

export async function recordPage(view, route, who, stale) {
  const seq = route.args[0];
  const resp = await api.json('/v1/records/' + encodeURIComponent(seq));
  if (stale()) return;
  const r = resp.record;
  const key = keyString(r.key);
  view.appendChild(h('p', { class: 'crumbs' }, h('a', { href: entityHref(r.source.name, r.source.table, key) + '' }, `${r.source.name}/${r.source.table} ${key}`), ' › seq ' + r.seq));
  view.appendChild(h('h1', {}, `Record ${r.seq}`, h('span', { class: 'sub' }, ` ${r.op}, ${fmtTime(r.occurred_at)}`)));
  if (resp.caused) {
    // An event: the changes it caused, one query away (GET /v1/records?cause=).
    view.appendChild(h('p', { class: 'caused' }, h('a', { id: 'caused', href: searchHref({ cause: r.id }) }, 'Changes this event caused')));
  } else if (r.cause && r.cause.record_id) {
    view.appendChild(h('p', { class: 'caused' }, `Caused by event ${r.cause.type || ''} `,
      h('a', { href: searchHref({ cause: r.cause.record_id }) }, 'with its other changes')));
  }
  const cpSize = resp.proof.tree_size;
  view.appendChild(h('p', { class: 'in-checkpoint' }, `In checkpoint of tree size ${cpSize}. `,
    h('a', { href: '#/log' }, 'The log page'), ' checks checkpoints against each other.'));

  const result = h('section', { class: 'proof', 'aria-label': 'Proof check', id: 'proof' });
  view.appendChild(result);
  if (!cryptoAvailable()) {
    result.appendChild(h('p', { class: 'error' }, 'This browser offers WebCrypto only on HTTPS or localhost pages, so the proof cannot be checked here. Use stele verify --url.'));
  } else {
    let tk;
    try {
      tk = await trustedKey(await api.text('/v1/log/key'));
    } catch (e) {
      result.appendChild(h('p', { class: 'error', role: 'alert' }, e.message));
    }
    if (tk) {
      result.appendChild(h('p', { class: 'hint' }, `Checked against verifier key ${tk.key.text} (${tk.how}; pin one on the `, h('a', { href: '#/log' }, 'log page'), ').'));
      const steps = await verifyRecordProof(resp, tk.key);
      if (stale()) return;
      result.appendChild(stepList('proof-steps', steps));
      const tamperOut = h('div', { id: 'tamper-out' });
      result.appendChild(h('button', { type: 'button', id: 'tamper', onclick: async () => {
        const forged = JSON.parse(JSON.stringify(resp));
        if (forged.proof.hashes.length) {
          const b = b64decode(forged.proof.hashes[0]);
          b[0] ^= 1;
          forged.proof.hashes[0] = b64encode(b);
        } else {
          const l = b64decode(forged.leaf);
          l[l.length - 2] ^= 1;
          forged.leaf = b64encode(l);
        }
        clear(tamperOut).appendChild(h('h3', {}, 'The same proof with one bit flipped'));
        tamperOut.appendChild(stepList('tamper-steps', await verifyRecordProof(forged, tk.key)));
      } }, 'Check a tampered copy of this proof'));
      result.appendChild(tamperOut);
    }
  }
  view.appendChild(h('h2', {}, 'Record as your role sees it'));
  view.appendChild(h('pre', { class: 'json' }, JSON.stringify(r, null, 2)));
  view.appendChild(h('details', {}, h('summary', {}, 'Proof material'),
    h('pre', { class: 'json' }, JSON.stringify({ leaf_hash: resp.leaf_hash, proof: resp.proof, checkpoint: resp.checkpoint }, null, 2))));
}

function stepList(id, steps) {
  const ok = steps.length && steps.every((s) => s.ok);
  return h('div', { id, class: ok ? 'verdict ok' : 'verdict bad', dataset: { verdict: ok ? 'verified' : 'rejected' } },
    h('p', { class: 'verdict-line', role: 'status' }, ok ? '✔ Verified in this page: the record is in the signed log.' : '✘ Rejected: this proof does not prove the record is in the log.'),
    h('ol', {}, steps.map((s) => h('li', { class: s.ok ? 'ok' : 'bad' }, s.ok ? '✔ ' : '✘ ', s.what, s.detail ? h('span', { class: 'hint' }, ' — ' + s.detail) : null))));
}
