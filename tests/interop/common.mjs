// Shared by the interop scripts. The Rust harness (receiver/tests/oidc_interop.rs) starts
// the provider on loopback and passes ISSUER and CODES (comma-separated transfer codes).
import assert from 'node:assert/strict';

export const ISSUER = process.env.AIRLOCK_ISSUER;
export const CODES = (process.env.AIRLOCK_CODES || '').split(',').filter(Boolean);
export const SECRET = process.env.AIRLOCK_SECRET;
assert.ok(ISSUER && ISSUER.startsWith('http://127.0.0.1:'), 'AIRLOCK_ISSUER must be a loopback URL');

/** A tiny cookie jar for scripted (browser-less) form posts. */
export class Jar {
  constructor() { this.cookies = new Map(); }
  header() { return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '); }
  absorb(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i), value = pair.slice(i + 1);
      if (!value || /max-age=0/i.test(line)) this.cookies.delete(name); else this.cookies.set(name, value);
    }
  }
  async fetch(url, init = {}) {
    const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers || {}), cookie: this.header() } });
    this.absorb(res);
    return res;
  }
}

export function hidden(html, name) {
  const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  assert.ok(m, `hidden input ${name} on the login page`);
  return m[1];
}

/** Authorization URL -> login page -> typed code -> the callback URL. */
export async function scriptedLogin(jar, authorizationUrl, code) {
  let res = await jar.fetch(authorizationUrl);
  assert.equal(res.status, 303, 'authorize redirects to the login page');
  const loginUrl = new URL(res.headers.get('location'), ISSUER);
  res = await jar.fetch(loginUrl);
  assert.equal(res.status, 200);
  const html = await res.text();
  const body = new URLSearchParams({ txn: hidden(html, 'txn'), csrf: hidden(html, 'csrf'), method: 'transfer_code', code });
  res = await jar.fetch(new URL('/login', ISSUER), { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assert.equal(res.status, 303, 'login accepted');
  return new URL(res.headers.get('location'));
}

/**
 * The person's side of the device flow, scripted: open the (prefilled) device page, send
 * the code, sign in with `transferCode` on the login page, then press `decision`
 * (`approve` or `deny`) on the approval page. Returns the final page's text.
 */
export async function scriptedDeviceApproval(jar, verificationUriComplete, transferCode, decision = 'approve') {
  const issuer = new URL(verificationUriComplete).origin;
  const form = (o) => ({ method: 'POST', body: new URLSearchParams(o), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  let res = await jar.fetch(verificationUriComplete);
  assert.equal(res.status, 200, 'the device page');
  let html = await res.text();
  const userCode = html.match(/name="user_code" value="([^"]*)"/)[1];
  res = await jar.fetch(new URL('/device', issuer), form({ csrf: hidden(html, 'csrf'), user_code: userCode }));
  assert.equal(res.status, 303, 'the code is accepted');
  const next = new URL(res.headers.get('location'), issuer);
  if (next.pathname === '/login') {
    res = await jar.fetch(next);
    html = await res.text();
    res = await jar.fetch(new URL('/login', issuer), form({ txn: hidden(html, 'txn'), csrf: hidden(html, 'csrf'), method: 'transfer_code', code: transferCode }));
    assert.equal(res.status, 303, 'login accepted');
  }
  const confirm = new URL(res.headers.get('location'), issuer);
  assert.equal(confirm.pathname, '/device/confirm');
  res = await jar.fetch(confirm);
  assert.equal(res.status, 200, 'the approval page');
  html = await res.text();
  res = await jar.fetch(new URL('/device/confirm', issuer), form({ h: hidden(html, 'h'), csrf: hidden(html, 'csrf'), decision }));
  assert.equal(res.status, 200);
  return res.text();
}
