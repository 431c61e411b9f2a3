// Passkeys in a real browser: headless Chromium (Debian package) via playwright-core, with a
// DevTools virtual authenticator (CTAP2, internal transport, resident keys, user
// verification). The person signs in to the sample app (tests/sample-app/app.mjs, an
// openid-client relying party that validates the ID token) with a transfer code, creates a
// passkey, logs out through the app (end_session), signs in again with the passkey only and
// lands back in the app, whose page shows the ID token's claims: acr and amr name the method.
// Then a Revoke is sent from the sender (`airlock-sender submit`: sealed, sent over loopback
// UDP, verified and applied by the receiver daemon) and the next passkey sign-in fails with a
// page that says why. Fails if any page requests a URL off the provider's or the app's
// origin, or on a CSP violation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

const ISSUER = process.env.AIRLOCK_ISSUER;
const APP = process.env.AIRLOCK_APP;
const SENDER = process.env.AIRLOCK_SENDER;
const SENDER_CONFIG = process.env.AIRLOCK_SENDER_CONFIG;
const REVOKE_RECORD = process.env.AIRLOCK_REVOKE_RECORD;
const RECEIVER_OPS = process.env.AIRLOCK_RECEIVER_OPS;
const CODE = process.env.AIRLOCK_CODE;
const SHOTS = process.env.AIRLOCK_SCREENSHOTS || 'screenshots';
assert.ok(ISSUER && ISSUER.startsWith('http://localhost:'), 'AIRLOCK_ISSUER: http://localhost:PORT (browsers refuse IP addresses as WebAuthn rp ids)');
assert.ok(SENDER && SENDER_CONFIG && REVOKE_RECORD && RECEIVER_OPS,
  'AIRLOCK_SENDER, AIRLOCK_SENDER_CONFIG, AIRLOCK_REVOKE_RECORD, AIRLOCK_RECEIVER_OPS: set by receiver/tests/oidc_interop.rs');

/** A counter of the receiver's /metrics (ops listener); 0 while the series is absent. */
async function counter(series) {
  const text = await (await fetch(`${RECEIVER_OPS}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/** `airlock-sender submit` of the Revoke record, then wait until the receiver applied it. */
async function revokeThroughTheSender() {
  const applied = 'airlock_oidc_passkeys_disabled_total{reason="revoked"}';
  const before = await counter(applied);
  const out = execFileSync(SENDER, ['submit', REVOKE_RECORD, '--config', SENDER_CONFIG], { encoding: 'utf8' });
  const deadline = Date.now() + 60000;
  while ((await counter(applied)) <= before) {
    assert.ok(Date.now() < deadline, `the receiver did not apply the Revoke within 60 s (submit said: ${out})`);
    await sleep(200);
  }
}

test('chromium: transfer code, create a passkey, sign in with it, refused after a Revoke', async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 720, height: 720 } });
    const page = await context.newPage();
    const allowed = new Set([new URL(ISSUER).origin, new URL(APP).origin]);
    const offOrigin = [];
    page.on('request', (r) => { if (!allowed.has(new URL(r.url()).origin)) offOrigin.push(r.url()); });
    const consoleErrors = [];
    page.on('console', (m) => { if (/Content Security Policy|Refused/.test(m.text())) consoleErrors.push(m.text()); });

    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
        hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
      },
    });

    // With a passkey in the authenticator, conditional UI would sign in by itself on page
    // load: presence is withheld until the person clicks the passkey button.
    const presence = (enabled) =>
      cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled });
    const clickPasskey = async () => {
      await presence(true);
      await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    };

    // Back at the sample app's home page, which shows the claims of the ID token that
    // openid-client accepted (a failed check is the app's "Login failed" page instead).
    const backAtApp = async (what) => {
      await page.waitForURL(`${APP}/`, { timeout: 15000 }).catch(async (e) => {
        await page.screenshot({ path: `${SHOTS}/failure.png` });
        throw new Error(`${what}: not back at the app: ${page.url()}: ${consoleErrors.join(' / ')}`, { cause: e });
      });
      const heading = await page.locator('h1').innerText();
      assert.equal(heading, 'Hello, User Pia', `${what}: ${heading}: ${await page.locator('body').innerText()}`);
      return JSON.parse(await page.locator('pre').first().innerText());
    };

    // 1. First sign-in with a transfer code; the passkey part is shown (JavaScript on).
    await page.goto(APP);
    await page.getByRole('link', { name: 'Log in with Airlock' }).click();
    await page.waitForURL((u) => u.href.startsWith(`${ISSUER}/login?`));
    assert.ok(page.url().startsWith(`${ISSUER}/login?`), `at the login page, got ${page.url()}`);
    await page.locator('#passkey').waitFor({ state: 'visible' });
    await page.getByLabel('Transfer code').fill(CODE);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();

    // 2. The interstitial: create a passkey for this computer.
    await page.waitForURL(`${ISSUER}/passkey/enrol`);
    await page.locator('#enrol-form').waitFor({ state: 'visible' });
    await page.screenshot({ path: `${SHOTS}/passkey-enrol.png` });
    await page.getByLabel('Name of this passkey').fill('Office laptop');
    await page.getByRole('button', { name: 'Create a passkey' }).click();
    const first = await backAtApp('after enrolment');
    assert.equal(first.acr, 'urn:airlock:acr:transfer-code');
    assert.deepEqual(first.amr, ['otp']);
    assert.equal(first.email, 'pia@example.org');
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.equal(credentials.length, 1, 'one credential in the authenticator');
    assert.equal(credentials[0].isResidentCredential, true, 'a discoverable credential');

    // 3. The account page lists it.
    await page.goto(`${ISSUER}/account`);
    assert.match(await page.locator('table').innerText(), /Office laptop/);
    await page.screenshot({ path: `${SHOTS}/account.png` });

    // 4. Log out through the app (RP-initiated logout at the provider's end_session, back
    // to the app), then sign in with the passkey only.
    await page.goto(APP);
    await page.getByRole('link', { name: 'Log out' }).click();
    await page.waitForURL(`${APP}/`);
    assert.equal(await page.locator('h1').innerText(), 'Sample inside application');
    const session = (await context.cookies(ISSUER)).filter((c) => c.name.endsWith('airlock_session'));
    assert.deepEqual(session, [], 'the provider session ended');
    await presence(false);
    await page.getByRole('link', { name: 'Log in with Airlock' }).click();
    await page.locator('#passkey').waitFor({ state: 'visible' });
    await page.screenshot({ path: `${SHOTS}/passkey-sign-in.png` });
    await clickPasskey();
    const second = await backAtApp('passkey sign-in');
    assert.equal(second.acr, 'urn:airlock:acr:passkey');
    assert.deepEqual(second.amr, ['hwk', 'user', 'mfa']);
    assert.equal(second.sub, first.sub, 'the same person');
    assert.ok(second.auth_time >= first.auth_time);

    // 5. A Revoke is sent from the sender; once the receiver has applied it, the next
    // passkey sign-in is refused and the page says why.
    await revokeThroughTheSender();
    await context.clearCookies();
    await presence(false);
    await page.goto(`${APP}/login`);
    await page.locator('#passkey').waitFor({ state: 'visible' });
    await clickPasskey();
    await page.waitForURL(`${ISSUER}/passkey/sign-in`);
    const alert = await page.getByRole('alert').innerText();
    assert.match(alert, /access was withdrawn/, alert);
    await page.screenshot({ path: `${SHOTS}/passkey-revoked.png` });

    assert.deepEqual(offOrigin, [], 'no request leaves the provider and the app');
    assert.deepEqual(consoleErrors, [], 'no CSP violations');
  } finally {
    await browser.close();
  }
});
