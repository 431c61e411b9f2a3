// A person in a real browser: headless Chromium (Debian package) via playwright-core.
// Opens the inside app, is sent to the login page, makes mistakes, types the code, lands
// back logged in. Fails if any page requests a URL off the provider's or the app's origin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { chromium } from 'playwright-core';
import { ISSUER, CODES } from './common.mjs';

const APP = process.env.AIRLOCK_APP;
const SHOTS = process.env.AIRLOCK_SCREENSHOTS || 'screenshots';

test('chromium: login through the transfer-code page', async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 720, height: 640 } });
    const allowed = new Set([new URL(ISSUER).origin, new URL(APP).origin]);
    const offOrigin = [];
    page.on('request', (r) => { if (!allowed.has(new URL(r.url()).origin)) offOrigin.push(r.url()); });
    const consoleErrors = [];
    // Status-code noise (401 on a wrong code, favicon 404) is expected; CSP violations are not.
    page.on('console', (m) => { if (/Content Security Policy|Refused/.test(m.text())) consoleErrors.push(m.text()); });

    await page.goto(APP);
    assert.ok(page.url().startsWith(`${ISSUER}/login?`), `redirected to the login page, got ${page.url()}`);
    const input = page.getByLabel('Transfer code');
    await assert.doesNotReject(input.waitFor());
    await page.screenshot({ path: `${SHOTS}/login.png` });

    await input.fill('ABCDE-FGHJK');
    await page.getByRole('button', { name: 'Sign in' }).click();
    assert.match(await page.getByRole('alert').innerText(), /25 letters and digits/);
    await page.screenshot({ path: `${SHOTS}/login-error-length.png` });

    // Right length and check character, wrong secret.
    const code = CODES[0].replaceAll('-', '');
    const wrong = mutateSecret(code);
    await page.getByLabel('Transfer code').fill(wrong);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const alert = await page.getByRole('alert').innerText();
    assert.ok(/not right|typo/.test(alert), alert);
    await page.screenshot({ path: `${SHOTS}/login-error-wrong.png` });

    for (const [code, want, shot] of [[CODES[1], /expired/, 'login-error-expired'], [CODES[2], /already been used/, 'login-error-used']]) {
      await page.getByLabel('Transfer code').fill(code);
      await page.getByRole('button', { name: 'Sign in' }).click();
      assert.match(await page.getByRole('alert').innerText(), want);
      await page.screenshot({ path: `${SHOTS}/${shot}.png` });
    }

    await page.getByLabel('Transfer code').fill(CODES[0].toLowerCase());
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((u) => u.href.startsWith(`${APP}/cb?`), { timeout: 10000 }).catch(async (e) => {
      await page.screenshot({ path: `${SHOTS}/failure.png` });
      throw new Error(`not back at the app: ${page.url()}: ${consoleErrors.join(" / ")}`, { cause: e });
    });
    assert.match(await page.locator('#who').innerText(), /Logged in as User Bea/);

    assert.deepEqual(offOrigin, [], 'no request leaves the provider and the app');
    assert.deepEqual(consoleErrors, [], 'no CSP violations');
  } finally {
    await browser.close();
  }
});

// Change one secret symbol and fix the Luhn mod 32 check character, so the code parses.
function mutateSecret(code) {
  const A = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  const v = [...code.slice(0, 24)].map((c) => A.indexOf(c));
  v[10] = (v[10] + 1) % 32;
  let factor = 2, sum = 0;
  for (let i = v.length - 1; i >= 0; i--) {
    const add = factor * v[i];
    sum += Math.floor(add / 32) + (add % 32);
    factor = factor === 2 ? 1 : 2;
  }
  return v.map((x) => A[x]).join('') + A[(32 - (sum % 32)) % 32];
}
