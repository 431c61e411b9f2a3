// The outside portal end to end, with software nobody here wrote on both ends:
//   panva's oidc-provider (the outside IdP) -> airlock-sender's portal -> the diode (UDP on
//   loopback) -> airlock-receiver's OpenID provider -> openid-client (the inside app),
// and a real headless Chromium (playwright-core) as the person in between.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { chromium } from 'playwright-core';
import * as oidc from 'openid-client';
import { startIdp } from './idp.mjs';
import { deploy, freeTcpPort } from './deploy.mjs';

const SHOTS = process.env.AIRLOCK_SCREENSHOTS || 'screenshots';
const TICKET_TTL = 45;
const CODE_FORMAT = /^[0-9A-Z]{5}(-[0-9A-Z]{5}){4}$/;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let idp, env, browser, app, appUrl, inside;

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  const [idpPort, portalPort, appPort] = [await freeTcpPort(), await freeTcpPort(), await freeTcpPort()];
  const secret = crypto.randomBytes(24).toString('hex');
  idp = await startIdp({
    port: idpPort,
    client: {
      client_id: 'airlock-portal',
      client_secret: secret,
      redirect_uris: [`http://127.0.0.1:${portalPort}/callback`],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  });
  // The inside app's redirect target: it only has to answer; openid-client does the rest.
  appUrl = `http://127.0.0.1:${appPort}`;
  app = http.createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('inside app'); });
  await new Promise((r) => app.listen(appPort, '127.0.0.1', r));
  env = await deploy({
    idp: { issuer: idp.issuer, clientId: 'airlock-portal', secret },
    ticketTtlSecs: TICKET_TTL,
    portalPort,
    insideRedirect: `${appUrl}/cb`,
  });
  inside = await oidc.discovery(new URL(env.insideIssuer), 'inside-app', undefined, oidc.None(),
    { execute: [oidc.allowInsecureRequests] });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run'],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (env) {
    if (process.env.AIRLOCK_KEEP_LOGS) console.log(env.logs());
    await env.stop();
  }
  if (idp) await idp.close();
  if (app) await new Promise((r) => app.close(r));
});

/**
 * A fresh browser (no cookies). Nothing leaves loopback (the test IdP's dev pages link a web
 * font: aborted). `ours` are Airlock's origins: their pages must load nothing from elsewhere.
 */
async function person(ours, others = []) {
  const context = await browser.newContext({ viewport: { width: 760, height: 720 } });
  await context.route('**/*', (route) => (new URL(route.request().url()).hostname === '127.0.0.1' ? route.continue() : route.abort()));
  const page = await context.newPage();
  const allowed = new Set([...ours, ...others].map((o) => new URL(o).origin));
  const mine = new Set(ours.map((o) => new URL(o).origin));
  const offOrigin = [];
  const consoleErrors = [];
  page.on('request', (r) => {
    const from = new URL(r.frame().url() || 'about:blank');
    if (mine.has(from.origin) && !r.isNavigationRequest() && !allowed.has(new URL(r.url()).origin)) offOrigin.push(r.url());
  });
  page.on('console', (m) => { if (m.type() === 'error' && mine.has(new URL(page.url()).origin)) consoleErrors.push(m.text()); });
  return { context, page, offOrigin, consoleErrors };
}

/** Portal start page -> IdP login form (any password) -> consent -> back at the portal. */
async function portalLogin(page, user) {
  await page.goto(env.portal);
  assert.equal(await page.locator('html').getAttribute('lang'), 'en');
  await page.getByRole('link', { name: 'Test IdP' }).click();
  await page.waitForURL(`${idp.issuer}/**`);
  await page.locator('input[name="login"]').fill(user);
  await page.locator('input[name="password"]').fill('any password');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  // First visit of this client: the consent screen.
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL(`${env.portal}/callback?**`);
}

async function getCode(user, shot) {
  const who = await person([env.portal], [idp.issuer]);
  try {
    await portalLogin(who.page, user);
    const code = (await who.page.locator('#transfer-code').innerText()).trim();
    assert.match(code, CODE_FORMAT);
    assert.match(await who.page.locator('main').innerText(), /choose Log in/);
    const expires = Date.parse(await who.page.locator('#expires').getAttribute('datetime'));
    assert.ok(Math.abs(expires - (Date.now() + TICKET_TTL * 1000)) < 15_000, 'the expiry shown is the ticket TTL from now');
    if (shot) await who.page.screenshot({ path: `${SHOTS}/${shot}` });
    assert.deepEqual(who.offOrigin, [], 'the portal pages load nothing from elsewhere');
    assert.deepEqual(who.consoleErrors, [], 'no CSP violations on the portal pages');
    return code;
  } finally {
    await who.context.close();
  }
}

/** The inside app's login at the receiver with a transfer code; returns the page's outcome. */
async function insideLogin(code, { retryWrong = true } = {}) {
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const verifier = oidc.randomPKCECodeVerifier();
  const url = oidc.buildAuthorizationUrl(inside, {
    redirect_uri: `${appUrl}/cb`,
    scope: 'openid profile email groups',
    state,
    nonce,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
  });
  const who = await person([env.insideIssuer, appUrl]);
  try {
    await who.page.goto(url.href);
    // The ticket crosses in milliseconds; a few retries cover the race with the link.
    for (let attempt = 1; ; attempt++) {
      await who.page.getByLabel('Transfer code').fill(code);
      await Promise.all([
        who.page.waitForNavigation({ waitUntil: 'load' }),
        who.page.getByRole('button', { name: 'Sign in' }).click(),
      ]);
      if (who.page.url().startsWith(`${appUrl}/cb`)) break;
      const alert = await who.page.getByRole('alert').innerText();
      if (retryWrong && /not right/.test(alert) && attempt < 10) { await sleep(500); continue; }
      return { alert, page: who.page };
    }
    const tokens = await oidc.authorizationCodeGrant(inside, new URL(who.page.url()), {
      pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
    });
    assert.deepEqual(who.offOrigin, [], 'the inside pages load nothing from elsewhere');
    return { claims: tokens.claims() };
  } finally {
    await who.context.close();
  }
}

let aliceCode;

test('a federated user logs in outside, reads the code, and logs in inside as her outside identity', async () => {
  aliceCode = await getCode('alice', 'portal-code.png');
  const { claims, alert } = await insideLogin(aliceCode);
  assert.ok(claims, `inside login failed: ${alert}\n${env.logs()}`);
  assert.equal(claims.airlock_issuer, idp.issuer, 'the inside ID token carries the outside issuer');
  assert.equal(claims.airlock_subject, 'alice', 'and the outside subject');
  assert.equal(claims.iss, env.insideIssuer);
  assert.equal(claims.email, 'alice@example.org');
});

test('a used code fails inside with a clear message', async () => {
  assert.ok(aliceCode, 'needs the first test');
  const { alert } = await insideLogin(aliceCode, { retryWrong: false });
  assert.match(alert, /already been used/);
});

test('a user outside the policy gets no code and sees the refusing rule', async () => {
  const who = await person([env.portal], [idp.issuer]);
  try {
    await portalLogin(who.page, 'mallory');
    assert.equal(await who.page.locator('#transfer-code').count(), 0, 'no code on the page');
    const alert = await who.page.getByRole('alert').innerText();
    assert.match(alert, /email_domain/);
    assert.match(alert, /mallory@elsewhere\.test/);
    assert.match(await who.page.locator('main').innerText(), /idm@example\.org/);
    await who.page.screenshot({ path: `${SHOTS}/portal-refused.png` });
  } finally {
    await who.context.close();
  }
});

test('a callback without the browser that started the login is refused (state bound to a cookie)', async () => {
  const start = await fetch(`${env.portal}/login/testidp`, { redirect: 'manual' });
  assert.equal(start.status, 303);
  const location = new URL(start.headers.get('location'));
  assert.equal(location.origin, idp.issuer);
  assert.equal(location.searchParams.get('code_challenge_method'), 'S256');
  assert.ok(location.searchParams.get('nonce'));
  const state = location.searchParams.get('state');
  assert.ok(state);
  const cookie = start.headers.get('set-cookie');
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Lax/);
  const res = await fetch(`${env.portal}/callback?state=${encodeURIComponent(state)}&code=x`,
    { headers: { cookie: 'airlock_portal_login=' + 'ab'.repeat(24) } });
  assert.equal(res.status, 400);
  assert.match(await res.text(), /another browser/);
  // The state was consumed by that attempt: even the right cookie cannot use it now.
  const again = await fetch(`${env.portal}/callback?state=${encodeURIComponent(state)}&code=x`,
    { headers: { cookie: cookie.split(';')[0] } });
  assert.equal(again.status, 400);
  assert.match(await again.text(), /unknown, used or expired/);
  const csp = res.headers.get('content-security-policy');
  assert.match(csp, /default-src 'none'/);
  assert.doesNotMatch(csp, /script-src/);
});

test('an expired code fails inside with a clear message', async () => {
  const code = await getCode('bob');
  await sleep((TICKET_TTL + 3) * 1000);
  const { alert } = await insideLogin(code, { retryWrong: false });
  assert.match(alert, /expired/);
});

test('the IdpMirror crosses; the documents served inside match the outside ones byte for byte', async (t) => {
  const hash = crypto.createHash('sha256').update(idp.issuer).digest('hex');
  const base = `${env.insideIssuer}/idp-mirror/${hash}`;
  let res;
  for (let i = 0; i < 10; i++) {
    res = await fetch(`${base}/openid-configuration`);
    if (res.status !== 404 || i === 9) break;
    await sleep(200);
  }
  if (res.status === 404 && !process.env.AIRLOCK_REQUIRE_MIRROR) {
    // Until the receiver serves /idp-mirror/: prove the IdpMirror crossed and was applied,
    // from the receiver's frame log (audit export needs the receiver stopped; last test).
    await env.stopReceiver();
    const lines = env.receiverCli(['audit', 'export', '--config', 'receiver.toml']).trim().split('\n').map((l) => JSON.parse(l));
    const mirrors = lines.filter((e) => JSON.stringify(e).includes('idp_mirror'));
    assert.ok(mirrors.length >= 1, `an IdpMirror frame in the receiver's log:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`);
    assert.ok(mirrors.some((e) => JSON.stringify(e).includes(idp.issuer)), JSON.stringify(mirrors));
    t.diagnostic('the receiver does not serve /idp-mirror/ yet: byte-for-byte check not run (AIRLOCK_REQUIRE_MIRROR=1 makes it required)');
    return;
  }
  assert.equal(res.status, 200);
  const outside = Buffer.from(await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).arrayBuffer());
  assert.ok(Buffer.from(await res.arrayBuffer()).equals(outside), 'discovery document byte for byte');
  const jwksUri = JSON.parse(outside.toString('utf8')).jwks_uri;
  const outsideJwks = Buffer.from(await (await fetch(jwksUri)).arrayBuffer());
  const insideJwks = await fetch(`${base}/jwks`);
  assert.equal(insideJwks.status, 200);
  assert.ok(Buffer.from(await insideJwks.arrayBuffer()).equals(outsideJwks), 'JWKS byte for byte');
});
