// A command-line tool signing a person in with the device authorization grant (RFC 8628),
// written with openid-client: it asks the receiver for a code, prints where to type it,
// polls until the person has signed in and approved in any browser, then prints who
// signed in. The pattern kubectl, git and database CLIs use (their OIDC plug-ins).
//
// Settings (environment): AIRLOCK_ISSUER, CLI_CLIENT_ID (default `sample-cli`, a public
// client whose grant_types include urn:ietf:params:oauth:grant-type:device_code),
// CLI_SCOPE (default `openid profile email`). No outside URL is ever contacted.
//
//   AIRLOCK_ISSUER=http://localhost:8443 node tests/sample-app/device-cli.mjs
import * as oidc from 'openid-client';

const issuer = new URL(process.env.AIRLOCK_ISSUER);
const clientId = process.env.CLI_CLIENT_ID || 'sample-cli';
const scope = process.env.CLI_SCOPE || 'openid profile email';
const options = issuer.protocol === 'http:' ? { execute: [oidc.allowInsecureRequests] } : {};

async function main() {
  // A public client: it has no secret to keep, so it authenticates with none.
  const config = await oidc.discovery(issuer, clientId, undefined, oidc.None(), options);
  const device = await oidc.initiateDeviceAuthorization(config, { scope });
  console.log(`To sign in, open ${device.verification_uri} in a browser and type the code: ${device.user_code}`);
  if (device.verification_uri_complete) {
    console.log(`(or open ${device.verification_uri_complete})`);
  }
  console.log(`The code works for ${Math.round(device.expires_in / 60)} minutes. Waiting...`);
  // Polls every `interval` seconds, slower on slow_down, until approved, denied or expired.
  const tokens = await oidc.pollDeviceAuthorizationGrant(config, device);
  const claims = tokens.claims();
  console.log(`Signed in as ${claims.email || claims.name || claims.sub} (sub ${claims.sub}, acr ${claims.acr})`);
  console.log(JSON.stringify({ sub: claims.sub, name: claims.name, email: claims.email, amr: claims.amr, scope: tokens.scope }));
}

main().catch((e) => {
  // openid-client's errors carry the OAuth error code: access_denied, expired_token, ...
  console.error(`Sign-in failed: ${e.error || e.code || 'error'}: ${e.error_description || e.message}`);
  process.exit(1);
});
