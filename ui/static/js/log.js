// The log page: the latest signed checkpoint, checked in the page, and the
// checkpoints this browser has seen over time, each proven consistent with
// the one before (RFC 9162 consistency proofs). The server keeps no
// history for the page to trust: like `stele verify --url` with its state
// file, the browser keeps its own.

import * as api from './api.js';
import { h } from './dom.js';
import { cryptoAvailable, trustedKey, openCheckpoint, parseVerifierKey, pinKey, verifyConsistency, b64decode, b64encode } from './verify.js';

const MAX_KEPT = 50;

function historyKey(origin) {
  return 'stele.checkpoints.' + origin;
}

export function loadHistory(origin) {
  try {
    return JSON.parse(localStorage.getItem(historyKey(origin)) || '[]');
  } catch (_) {
    return [];
  }
}

export async function logPage(view, route, who, stale) {
  view.appendChild(h('h1', {}, 'The log and its checkpoints'));
  if (!cryptoAvailable()) {
    view.appendChild(h('p', { class: 'error' }, 'WebCrypto is available only on HTTPS or localhost pages: checkpoints cannot be checked here.'));
    return;
  }
  const [noteText, keyText, health] = await Promise.all([api.text('/v1/checkpoint'), api.text('/v1/log/key'), api.json('/healthz').catch((e) => ({ status: e.message }))]);
  if (stale()) return;
  const served = await parseVerifierKey(keyText);
  let tk, keyErr;
  try {
    tk = await trustedKey(keyText);
  } catch (e) {
    keyErr = e;
  }
  const keyBox = h('section', { class: 'key', 'aria-label': 'Verifier key' }, h('h2', {}, 'Verifier key'),
    h('p', {}, h('code', { class: 'wrap' }, (tk ? tk.key : keyErr.pinned).text), tk ? ` (${tk.how})` : ''),
    keyErr ? h('p', { class: 'error', role: 'alert' }, keyErr.message) : null,
    pinForm(served.name));
  view.appendChild(keyBox);
  if (!tk) return;

  const status = h('section', { class: 'latest', 'aria-label': 'Latest checkpoint' }, h('h2', {}, 'Latest checkpoint'));
  view.appendChild(status);
  let cp;
  try {
    cp = await openCheckpoint(noteText, tk.key);
  } catch (e) {
    status.appendChild(h('p', { class: 'verdict bad', id: 'cp-verdict', dataset: { verdict: 'rejected' } }, '✘ ' + e.message));
    return;
  }
  status.appendChild(h('p', { class: 'verdict ok', id: 'cp-verdict', dataset: { verdict: 'verified' } },
    `✔ Signature by ${cp.origin} verified in this page (Ed25519). Tree size ${cp.size}, root ${b64encode(cp.root)}. Server health: ${health.status}.`));
  status.appendChild(h('p', { id: 'cp-witnesses' }, cp.cosigners.length
    ? `Witnessed by ${cp.cosigners.join(', ')} (cosignatures as served; stele verify --url … --witness-policy checks them against your policy).`
    : 'No witness cosigned this checkpoint (docs/witness.md).'));
  status.appendChild(h('pre', { class: 'json' }, noteText));

  // Prove the new checkpoint extends the last one kept, then keep it.
  const hist = loadHistory(cp.origin);
  const prev = hist[hist.length - 1];
  let check = 'first seen';
  let ok = true;
  if (prev && BigInt(prev.size) === cp.size && prev.root === b64encode(cp.root)) {
    check = 'unchanged';
  } else if (prev) {
    try {
      if (BigInt(prev.size) > cp.size) throw new Error(`rollback: this browser saw size ${prev.size} before, the server now shows ${cp.size}`);
      const pr = await api.json(`/v1/proof/consistency?from=${prev.size}&to=${cp.size}`);
      await verifyConsistency(BigInt(prev.size), cp.size, b64decode(prev.root), cp.root, pr.hashes.map(b64decode));
      check = `consistent with size ${prev.size} (${pr.hashes.length} hashes)`;
    } catch (e) {
      ok = false;
      check = 'INCONSISTENT: ' + e.message;
    }
  }
  if (ok && check !== 'unchanged') {
    hist.push({ size: String(cp.size), root: b64encode(cp.root), seen_at: new Date().toISOString(), check });
    localStorage.setItem(historyKey(cp.origin), JSON.stringify(hist.slice(-MAX_KEPT)));
  }
  status.appendChild(h('p', { id: 'consistency', class: ok ? 'verdict ok' : 'verdict bad', role: ok ? 'status' : 'alert', dataset: { verdict: ok ? 'verified' : 'rejected' } },
    ok ? '✔ ' : '✘ ', 'Against the checkpoint this browser saw last: ', check));

  const kept = loadHistory(cp.origin);
  view.appendChild(h('section', { 'aria-label': 'Checkpoints over time' }, h('h2', {}, 'Checkpoints seen by this browser'),
    h('div', { class: 'scroll' }, h('table', { class: 'dense', id: 'cp-history' },
      h('thead', {}, h('tr', {}, ['seen at', 'tree size', 'root', 'check'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, kept.slice().reverse().map((c) => h('tr', {}, h('td', {}, c.seen_at), h('td', { class: 'num' }, c.size),
        h('td', {}, h('code', {}, c.root.slice(0, 16) + '…')), h('td', {}, c.check))))))),
    h('button', { type: 'button', class: 'small', onclick: () => { localStorage.removeItem(historyKey(cp.origin)); location.reload(); } }, 'Forget this history'));
}

function pinForm(name) {
  const input = h('input', { id: 'pin-key', autocomplete: 'off', placeholder: name + '+…+…' });
  const msg = h('span', { class: 'hint', role: 'status' });
  return h('form', { class: 'inline-form', onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const k = await parseVerifierKey(input.value);
      pinKey(k);
      location.reload();
    } catch (e) {
      msg.textContent = e.message;
    }
  } }, h('label', { for: 'pin-key' }, 'Pin a key you obtained out of band'), input, h('button', { type: 'submit', class: 'small' }, 'Pin'), msg);
}
