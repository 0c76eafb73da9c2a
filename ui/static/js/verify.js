// The page's own verifier: RFC 6962 / RFC 9162 Merkle proofs with WebCrypto
// SHA-256 and C2SP signed-note checkpoints with WebCrypto Ed25519, so what
// the page calls proven does not rest on the server's word. The formats
// are those of docs/api.md (stored encoding, checkpoints) and of the
// strict parser stele.OpenCheckpoint.

const enc = new TextEncoder();

export function b64decode(s) {
  if (typeof s !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) {
    throw new Error('not standard base64: ' + JSON.stringify(String(s).slice(0, 16)));
  }
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function b64encode(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

export function cryptoAvailable() {
  return !!(globalThis.crypto && crypto.subtle);
}

export async function sha256(bytes) {
  if (!cryptoAvailable()) throw new Error('WebCrypto is not available: the browser offers it only on HTTPS or localhost pages');
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

export const leafHash = (leaf) => sha256(concat(Uint8Array.of(0), leaf));
export const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));

// leafHeader reads the 17-byte header of the stored encoding: version,
// seq (uint64 big endian), recorded_at (int64 Unix ns big endian).
export function leafHeader(leaf) {
  if (leaf.length < 17 || leaf[0] !== 1) throw new Error('the leaf is not a version-1 stored record');
  const dv = new DataView(leaf.buffer, leaf.byteOffset, leaf.byteLength);
  return { version: leaf[0], seq: dv.getBigUint64(1), recordedNs: dv.getBigInt64(9), body: new TextDecoder().decode(leaf.subarray(17)) };
}

// rootFromInclusion is RFC 9162 §2.1.3.2: the root the path leads to from
// the leaf at index in a tree of size, or an error when the path cannot
// belong to such a tree.
export async function rootFromInclusion(index, size, leafH, path) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn > sn) throw new Error(`leaf index ${index} is not below tree size ${size}`);
  let r = leafH;
  for (const p of path) {
    if (sn === 0n) throw new Error('the proof has more hashes than the tree has levels');
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new Error('the proof has fewer hashes than the tree has levels');
  return r;
}

export async function verifyInclusion(index, size, leafH, path, root) {
  const got = await rootFromInclusion(index, size, leafH, path);
  if (!equal(got, root)) throw new Error('the inclusion path leads to root ' + b64encode(got) + ', not the checkpoint\'s ' + b64encode(root));
}

// verifyConsistency is RFC 9162 §2.1.4.2: the tree of size `second` with
// root root2 extends the tree of size `first` with root root1.
export async function verifyConsistency(first, second, root1, root2, path) {
  let m = BigInt(first), n = BigInt(second);
  if (m > n) throw new Error(`size ${first} is greater than ${second}`);
  if (m === n) {
    if (path.length) throw new Error('a proof between equal sizes must be empty');
    if (!equal(root1, root2)) throw new Error('two checkpoints of the same size with different roots: the log forked');
    return;
  }
  if (m === 0n) {
    if (path.length) throw new Error('a proof from size 0 must be empty');
    return;
  }
  if (!path.length) throw new Error('empty consistency proof');
  let p = path;
  if ((m & (m - 1n)) === 0n) p = [root1, ...path];
  let fn = m - 1n, sn = n - 1n;
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = p[0], sr = p[0];
  for (const c of p.slice(1)) {
    if (sn === 0n) throw new Error('the proof has too many hashes');
    if ((fn & 1n) === 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new Error('the proof has too few hashes');
  if (!equal(fr, root1)) throw new Error('the proof does not lead to the older checkpoint\'s root: history was rewritten');
  if (!equal(sr, root2)) throw new Error('the proof does not lead to the newer checkpoint\'s root');
}

// parseVerifierKey reads a note verifier key, name+hash+base64(0x01‖key),
// and checks that its hash is that of the name and key.
export async function parseVerifierKey(text) {
  const t = text.trim();
  // A note key name holds no '+', while base64 may: split at the first.
  const j = t.indexOf('+');
  const i = j + 9;
  if (j <= 0 || t[i] !== '+') throw new Error('a verifier key is NAME+HASH+KEY');
  const name = t.slice(0, j), hashHex = t.slice(j + 1, i), keyB64 = t.slice(i + 1);
  if (!/^[0-9a-f]{8}$/.test(hashHex)) throw new Error('the key hash is not 8 hex digits');
  const key = b64decode(keyB64);
  if (key.length !== 33 || key[0] !== 1) throw new Error('not an Ed25519 note key');
  const h = await keyHash(name, key);
  if (hex(h) !== hashHex) throw new Error('the key hash does not match the name and key');
  return { name, hash: h, pub: key.subarray(1), text: t };
}

async function keyHash(name, key) {
  return (await sha256(concat(enc.encode(name + '\n'), key))).subarray(0, 4);
}

// openCheckpoint verifies a signed checkpoint note with the key, as
// stele.OpenCheckpoint does, and returns {origin, size, root, cosigners}.
// Signature lines by other keys are the witnesses' cosignatures: their
// names are returned as sent (the page holds no witness keys; stele verify
// --witness-policy checks them).
export async function openCheckpoint(noteText, vkey) {
  const sep = noteText.lastIndexOf('\n\n');
  if (sep < 0 || !noteText.endsWith('\n')) throw new Error('not a signed note');
  const body = noteText.slice(0, sep + 1);
  const sigLines = noteText.slice(sep + 2).slice(0, -1).split('\n');
  let verified = false;
  const cosigners = [];
  for (const line of sigLines) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new Error('malformed signature line');
    if (m[1] !== vkey.name) {
      if (!cosigners.includes(m[1])) cosigners.push(m[1]);
      continue;
    }
    const sig = b64decode(m[2]);
    if (sig.length !== 68 || !equal(sig.subarray(0, 4), vkey.hash)) continue;
    const key = await crypto.subtle.importKey('raw', vkey.pub, { name: 'Ed25519' }, false, ['verify']);
    if (!(await crypto.subtle.verify({ name: 'Ed25519' }, key, sig.subarray(4), enc.encode(body)))) {
      throw new Error('the checkpoint\'s Ed25519 signature by ' + vkey.name + ' is invalid');
    }
    verified = true;
  }
  if (!verified) throw new Error('the checkpoint carries no signature by ' + vkey.name);
  const lines = body.slice(0, -1).split('\n');
  if (lines.length < 3 || !lines[0]) throw new Error('a checkpoint body has origin, size and root lines');
  if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) throw new Error('tree size ' + JSON.stringify(lines[1]) + ' is not a decimal number');
  const root = b64decode(lines[2]);
  if (root.length !== 32) throw new Error('the root hash is not 32 bytes');
  if (lines[0] !== vkey.name) throw new Error('origin ' + lines[0] + ' is not the key\'s name ' + vkey.name);
  return { origin: lines[0], size: BigInt(lines[1]), root, cosigners };
}

// trustedKey is the verifier key the page checks against: one the viewer
// pinned (obtained out of band), else the one the server served the first
// time this browser saw the origin. A later, different key from the
// server is refused rather than silently adopted.
export async function trustedKey(served) {
  const k = await parseVerifierKey(served);
  const pinned = localStorage.getItem('stele.key.' + k.name);
  if (pinned) {
    const p = await parseVerifierKey(pinned);
    if (p.text !== k.text) {
      const e = new Error('the server now serves verifier key ' + k.text + ', not the key pinned in this browser (' + p.text + ')');
      e.pinned = p;
      throw e;
    }
    return { key: p, how: localStorage.getItem('stele.keyhow.' + k.name) || 'first seen' };
  }
  localStorage.setItem('stele.key.' + k.name, k.text);
  localStorage.setItem('stele.keyhow.' + k.name, 'first seen');
  return { key: k, how: 'first seen' };
}

export function pinKey(k) {
  localStorage.setItem('stele.key.' + k.name, k.text);
  localStorage.setItem('stele.keyhow.' + k.name, 'pinned by you');
}

// verifyRecordProof checks a GET /v1/records/{seq} answer step by step and
// returns the steps, each {what, ok, detail}; it stops at the first
// failure, since later steps would rest on it.
export async function verifyRecordProof(resp, vkey) {
  const steps = [];
  const step = (what, ok, detail) => {
    steps.push({ what, ok, detail });
    return ok;
  };
  try {
    const leaf = b64decode(resp.leaf);
    const lh = await leafHash(leaf);
    if (!step('leaf hash = SHA-256(0x00 ‖ leaf)', equal(lh, b64decode(resp.leaf_hash)), b64encode(lh))) return steps;
    const hd = leafHeader(leaf);
    const seq = BigInt(resp.record.seq);
    if (!step('the leaf header names seq ' + seq, hd.seq === seq && BigInt(resp.proof.leaf_index) === seq, 'header seq ' + hd.seq)) return steps;
    let body;
    try {
      body = JSON.parse(hd.body);
    } catch (_) {
      body = {};
    }
    if (!step('the leaf holds this record (id ' + resp.record.id + ')', body.id === resp.record.id, 'leaf id ' + body.id)) return steps;
    const cp = await openCheckpoint(resp.checkpoint, vkey);
    step('checkpoint signed by ' + vkey.name + ' (Ed25519, WebCrypto)', true, 'tree size ' + cp.size);
    if (!step('the proof is for tree size ' + cp.size, BigInt(resp.proof.tree_size) === cp.size, 'proof tree size ' + resp.proof.tree_size)) return steps;
    const path = resp.proof.hashes.map(b64decode);
    await verifyInclusion(seq, cp.size, lh, path, cp.root);
    step(`inclusion path of ${path.length} hashes leads to the signed root`, true, b64encode(cp.root));
  } catch (e) {
    step('verification', false, e.message);
  }
  return steps;
}
