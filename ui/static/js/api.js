// Every read goes through the public API with the viewer's token, so the
// server's privacy wrapper decides what this page may show.

const TOKEN = 'stele.token';

export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN) || '';
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN, t);
  else sessionStorage.removeItem(TOKEN);
  me = null;
}

export function headers(extra) {
  const hd = Object.assign({}, extra);
  const t = token();
  if (t) hd.Authorization = 'Bearer ' + t;
  return hd;
}

export async function raw(path, opts = {}) {
  const resp = await fetch(path, { method: opts.method || 'GET', headers: headers(opts.headers), body: opts.body, signal: opts.signal });
  if (!resp.ok) {
    let msg = resp.status + ' ' + resp.statusText, field;
    try {
      const e = await resp.json();
      if (e.error) msg = e.error;
      field = e.field;
    } catch (_) { /* not a JSON error */ }
    throw new ApiError(resp.status, msg, field);
  }
  return resp;
}

export async function json(path, opts) {
  return (await raw(path, opts)).json();
}

export async function text(path, opts) {
  return (await raw(path, opts)).text();
}

let me = null;

// whoami is the server's word on the token's role; the page only decides
// what to offer, never what to reveal.
export async function whoami() {
  if (!me) me = await json('/v1/whoami');
  return me;
}

export function seesClear(role) {
  return role === 'admin' || role === 'auditor';
}
