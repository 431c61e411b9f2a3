// A person in a real browser: headless Chromium (Debian package) via playwright-core.
// Opens the inside app, is sent to the login page, makes mistakes, types the code, lands
// back logged in. Fails if any page requests a URL off the provider's or the app's origin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { chromium } from 'playwright-core';
import { ISSUER, CODES } from './common.mjs';

const APP = process.env.AIRLOCK_APP;
const SHOTS = process.env.AIRLOCK_SCREENSHOTS || 'screenshots';
const DEVICE_ISSUER = process.env.AIRLOCK_DEVICE_ISSUER;
const DEVICE_CODES = (process.env.AIRLOCK_DEVICE_CODES || '').split(',').filter(Boolean);
const CLI = new URL('../sample-app/device-cli.mjs', import.meta.url).pathname;

function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run'],
  });
}

test('chromium: login through the transfer-code page', async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  const browser = await launch();
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

// The device flow end to end: the sample app's CLI (openid-client) asks for a code and
// prints it; a person types it on the provider's /device page in Chromium, signs in with a
// transfer code and allows the device; the CLI's poll gets the tokens and says who signed in.
test('chromium: a CLI signs in with the device flow', { skip: !DEVICE_ISSUER && 'AIRLOCK_DEVICE_ISSUER is not set' }, async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  const cli = spawn(process.execPath, [CLI], {
    env: { ...process.env, AIRLOCK_ISSUER: DEVICE_ISSUER, CLI_CLIENT_ID: 'cli', CLI_SCOPE: 'openid profile email' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '', err = '';
  cli.stdout.on('data', (d) => { out += d; });
  cli.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => cli.on('exit', resolve));
  const browser = await launch();
  try {
    // What a person reads off the terminal: the page to open and the code.
    for (let i = 0; !/type the code: /.test(out); i++) {
      assert.ok(i < 200, `the CLI printed no code: ${out} ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const [, uri, userCode] = out.match(/open (\S+) in a browser and type the code: ([A-Z]{4}-[A-Z]{4})/);
    assert.equal(uri, `${DEVICE_ISSUER}/device`);

    const page = await browser.newPage({ viewport: { width: 720, height: 640 } });
    const origin = new URL(DEVICE_ISSUER).origin;
    const offOrigin = [];
    page.on('request', (r) => { if (new URL(r.url()).origin !== origin) offOrigin.push(r.url()); });
    const consoleErrors = [];
    page.on('console', (m) => { if (/Content Security Policy|Refused/.test(m.text())) consoleErrors.push(m.text()); });

    await page.goto(uri);
    // Typed as people type it: lower case, no dash.
    await page.getByLabel('Device code').fill(userCode.replace('-', '').toLowerCase());
    await page.screenshot({ path: `${SHOTS}/device.png` });
    await page.getByRole('button', { name: 'Continue' }).click();
    assert.ok(page.url().startsWith(`${DEVICE_ISSUER}/login?`), `sent to sign in, got ${page.url()}`);
    await page.getByLabel('Transfer code').fill(DEVICE_CODES[0]);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((u) => u.pathname === '/device/confirm', { timeout: 10000 });
    assert.match(await page.locator('main').innerText(), /cli[\s\S]*Cleo@example\.org/);
    await page.screenshot({ path: `${SHOTS}/device-approve.png` });
    await page.getByRole('button', { name: 'Allow' }).click();
    assert.match(await page.getByRole('status').innerText(), /Go back to your device/);

    const code = await exited;
    assert.equal(code, 0, `the CLI failed: ${err}`);
    assert.match(out, /Signed in as Cleo@example\.org/);
    const summary = JSON.parse(out.trim().split('\n').pop());
    assert.deepEqual(summary.amr, ['otp']);
    assert.equal(summary.scope, 'openid profile email');
    assert.deepEqual(offOrigin, [], 'no request leaves the provider');
    assert.deepEqual(consoleErrors, [], 'no CSP violations');
  } finally {
    cli.kill();
    await browser.close();
  }
});
