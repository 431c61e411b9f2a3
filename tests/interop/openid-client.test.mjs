// openid-client v6 (strict, panva) as the relying party: discovery, authorization URL,
// scripted login, callback validation including RFC 9207 `iss`, userinfo, refresh, end-session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import { ISSUER, CODES, SECRET, Jar, scriptedLogin } from './common.mjs';

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
