// The outside IdP of the test: panva's oidc-provider (OpenID certified), on loopback, with
// its built-in development login form (any password) and three test users.
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

export const USERS = {
  // Passes the sender's policy (email domain example.org).
  alice: { email: 'alice@example.org', email_verified: true, name: 'Alice Outside', groups: ['airlock-users'] },
  // Passes too; used for the expired-code check.
  bob: { email: 'bob@example.org', email_verified: true, name: 'Bob Outside', groups: ['airlock-users'] },
  // Refused by the `email_domain` rule.
  mallory: { email: 'mallory@elsewhere.test', email_verified: true, name: 'Mallory', groups: ['airlock-users'] },
};

/** Starts the IdP on 127.0.0.1:port; resolves to { issuer, close }. */
export async function startIdp({ port, client }) {
  const issuer = `http://127.0.0.1:${port}`;
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };
  const provider = new Provider(issuer, {
    clients: [client],
    jwks: { keys: [jwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    // Put the scope claims into the ID token (the portal reads the ID token only).
    conformIdTokenClaims: false,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    features: { devInteractions: { enabled: true } },
    async findAccount(_ctx, id) {
      const user = USERS[id];
      if (!user) return undefined;
      return { accountId: id, async claims() { return { sub: id, ...user }; } };
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('[idp] server_error', err));
  const server = http.createServer(provider.callback());
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { issuer, close: () => new Promise((r) => server.close(r)) };
}
