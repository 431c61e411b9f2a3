// openid-client v6 (strict, panva) as the relying party: discovery, authorization URL,
// scripted login, callback validation including RFC 9207 `iss`, userinfo, refresh, end-session;
// pushed authorization requests (RFC 9126) by a client that must push; the client
// credentials grant with introspection; the device authorization grant (RFC 8628). The
// harness (receiver/tests/oidc_interop.rs `openid_client_v6`) runs the real receiver daemon.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import { ISSUER, CODES, SECRET, Jar, scriptedLogin, scriptedDeviceApproval } from './common.mjs';

// The device flow's sign-ins (two: approve, deny) have transfer codes of their own.
const DEVICE_CODES = (process.env.AIRLOCK_DEVICE_CODES || '').split(',').filter(Boolean);

const REDIRECT = 'http://127.0.0.1:2/cb';
const BYE = 'http://127.0.0.1:2/bye';

test('openid-client: code flow, iss, userinfo, refresh, end-session', async () => {
  // allowInsecureRequests: loopback HTTP only (the harness never listens elsewhere).
  const config = await client.discovery(new URL(ISSUER), 'app', SECRET, undefined, {
    execute: [client.allowInsecureRequests],
  });
  assert.equal(config.serverMetadata().issuer, ISSUER);
  assert.equal(config.serverMetadata().authorization_response_iss_parameter_supported, true);

  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT, scope: 'openid email profile offline_access',
    code_challenge: challenge, code_challenge_method: 'S256', state, nonce,
  });

  const jar = new Jar();
  const callback = await scriptedLogin(jar, url, CODES[0]);
  assert.equal(callback.searchParams.get('iss'), ISSUER);

  // A callback with a forged iss must be refused by the library.
  const forged = new URL(callback); forged.searchParams.set('iss', 'http://127.0.0.1:9/');
  await assert.rejects(client.authorizationCodeGrant(config, forged, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce }));

  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  const claims = tokens.claims();
  assert.ok(claims.sub && claims.sid && claims.auth_time);
  assert.equal(claims.nonce, nonce);

  const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  assert.equal(info.sub, claims.sub);

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
  assert.equal(refreshed.claims().sub, claims.sub);
  // Reusing the first refresh token fails (and revokes the family).
  await assert.rejects(client.refreshTokenGrant(config, tokens.refresh_token));
  await assert.rejects(client.refreshTokenGrant(config, refreshed.refresh_token));

  const end = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: BYE, state: 'bye-1' });
  const res = await jar.fetch(end);
  assert.equal(res.status, 303);
  assert.equal(res.headers.get('location'), `${BYE}?state=bye-1`);
  assert.equal(jar.cookies.has('airlock_session'), false);
});

test('openid-client: pushed authorization request (RFC 9126) drives the code flow', async () => {
  // `pushed` is a confidential client registered with require_pushed_authorization_requests.
  const config = await client.discovery(new URL(ISSUER), 'pushed', SECRET, undefined, {
    execute: [client.allowInsecureRequests],
  });
  assert.equal(config.serverMetadata().pushed_authorization_request_endpoint, `${ISSUER}/par`);
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();

  // Not pushed, its request is refused back at the redirect URI, and the library reads the
  // refusal (RFC 9207 iss included) as an authorization error.
  const plain = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT, scope: 'openid email',
    code_challenge: challenge, code_challenge_method: 'S256', state, nonce,
  });
  const refused = await new Jar().fetch(plain);
  assert.equal(refused.status, 303);
  const back = new URL(refused.headers.get('location'));
  assert.equal(`${back.origin}${back.pathname}`, REDIRECT);
  await assert.rejects(client.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce }),
    (e) => e.error === 'invalid_request');

  // The library pushes (authenticated as `pushed`) and expects 201 with request_uri/expires_in.
  const url = await client.buildAuthorizationUrlWithPAR(config, {
    redirect_uri: REDIRECT, scope: 'openid email',
    code_challenge: challenge, code_challenge_method: 'S256', state, nonce,
  });
  assert.deepEqual([...url.searchParams.keys()].sort(), ['client_id', 'request_uri']);
  assert.match(url.searchParams.get('request_uri'), /^urn:ietf:params:oauth:request_uri:[A-Za-z0-9_-]{43,}$/);

  const callback = await scriptedLogin(new Jar(), url, CODES[1]);
  assert.equal(callback.searchParams.get('iss'), ISSUER);
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  assert.equal(tokens.claims().nonce, nonce);
  assert.equal(tokens.scope, 'openid email');

  // The request_uri was used: a second /authorize with it is refused.
  const again = await new Jar().fetch(url);
  assert.equal(again.status, 400);
  assert.match(await again.text(), /invalid_request_uri/);
});

test('openid-client: client credentials grant, introspection, revocation', async () => {
  const config = await client.discovery(new URL(ISSUER), 'app', SECRET, undefined, {
    execute: [client.allowInsecureRequests],
  });
  assert.ok(config.serverMetadata().grant_types_supported.includes('client_credentials'));
  const t = await client.clientCredentialsGrant(config, { scope: 'orders.read', resource: 'https://orders.inside' });
  assert.equal(t.token_type.toLowerCase(), 'bearer');
  assert.equal(t.scope, 'orders.read');
  assert.equal(t.refresh_token, undefined);
  assert.equal(t.id_token, undefined);

  const info = await client.tokenIntrospection(config, t.access_token);
  assert.equal(info.active, true);
  assert.equal(info.client_id, 'app');
  assert.equal(info.sub, 'app');
  assert.equal(info.scope, 'orders.read');
  assert.equal(info.aud, 'https://orders.inside');
  assert.equal(info.token_type, 'Bearer');

  await client.tokenRevocation(config, t.access_token);
  assert.equal((await client.tokenIntrospection(config, t.access_token)).active, false);

  await assert.rejects(client.clientCredentialsGrant(config, { scope: 'orders.delete' }),
    (e) => e.error === 'invalid_scope');
  // A public client is refused the grant.
  const spa = await client.discovery(new URL(ISSUER), 'spa', undefined, client.None(), {
    execute: [client.allowInsecureRequests],
  });
  await assert.rejects(client.clientCredentialsGrant(spa, { scope: 'orders.read' }),
    (e) => e.error === 'unauthorized_client');
});

// The library polls in real time (interval 1 s: the harness's [oidc.device] poll_interval_secs).
test('openid-client: device authorization grant (RFC 8628)', async () => {
  const options = { execute: [client.allowInsecureRequests] };
  const config = await client.discovery(new URL(ISSUER), 'cli', undefined, client.None(), options);
  const meta = config.serverMetadata();
  assert.equal(meta.device_authorization_endpoint, `${ISSUER}/device_authorization`);
  assert.ok(meta.grant_types_supported.includes('urn:ietf:params:oauth:grant-type:device_code'));

  const device = await client.initiateDeviceAuthorization(config, { scope: 'openid email offline_access' });
  assert.match(device.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
  assert.equal(device.verification_uri, `${ISSUER}/device`);
  assert.equal(device.verification_uri_complete, `${ISSUER}/device?user_code=${device.user_code}`);
  assert.ok(device.device_code.length >= 43);
  assert.equal(device.interval, 1);
  // The library polls (authorization_pending until the person is done) while the person
  // types the code, signs in and approves.
  const polling = client.pollDeviceAuthorizationGrant(config, device);
  const page = await scriptedDeviceApproval(new Jar(), device.verification_uri_complete, DEVICE_CODES[0], 'approve');
  assert.match(page, /Device allowed/);
  const tokens = await polling;
  const claims = tokens.claims();
  assert.equal(claims.aud, 'cli');
  assert.deepEqual(claims.amr, ['otp']);
  assert.ok(claims.sub && claims.auth_time && claims.sid);
  assert.equal(claims.email, 'dan@example.org');
  assert.equal(tokens.scope, 'openid email offline_access');
  const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  assert.equal(info.sub, claims.sub);
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  assert.equal(refreshed.claims().sub, claims.sub);
  // The spent device code: a second poll is invalid_grant.
  await assert.rejects(client.pollDeviceAuthorizationGrant(config, device), (e) => e.error === 'invalid_grant');

  // A person who denies: the library's poll ends with access_denied.
  const denied = await client.initiateDeviceAuthorization(config, { scope: 'openid' });
  const polling2 = client.pollDeviceAuthorizationGrant(config, denied);
  const page2 = await scriptedDeviceApproval(new Jar(), denied.verification_uri_complete, DEVICE_CODES[1], 'deny');
  assert.match(page2, /Device denied/);
  await assert.rejects(polling2, (e) => e.error === 'access_denied');

  // An unknown device code, and a client that may not use the grant.
  await assert.rejects(client.pollDeviceAuthorizationGrant(config, { device_code: 'no-such-code', interval: 1, expires_in: 30 }),
    (e) => e.error === 'invalid_grant');
  const spa = await client.discovery(new URL(ISSUER), 'spa', undefined, client.None(), options);
  await assert.rejects(client.initiateDeviceAuthorization(spa, { scope: 'openid' }), (e) => e.error === 'unauthorized_client');
});
