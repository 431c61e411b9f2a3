// The demo's inside application: a confidential OpenID Connect relying party of the
// Airlock receiver, written with openid-client (a strict, certified RP library). It shows
// the logged-in user's ID-token claims and userinfo, and logs out through end_session.
//
// Settings (environment): AIRLOCK_ISSUER, APP_CLIENT_ID, APP_CLIENT_SECRET, APP_LISTEN
// (host:port, default 127.0.0.1:8080). No outside URL is ever contacted.
import http from 'node:http';
import crypto from 'node:crypto';
import * as oidc from 'openid-client';

const issuer = new URL(process.env.AIRLOCK_ISSUER);
const clientId = process.env.APP_CLIENT_ID || 'sample-app';
const clientSecret = process.env.APP_CLIENT_SECRET;
const [host, port] = (process.env.APP_LISTEN || '127.0.0.1:8080').split(':');
const base = `http://${host}:${port}`;
const redirectUri = `${base}/callback`;

// Besides the claims openid-client always checks (iss, aud, exp, iat, nonce, azp), the ID
// token's signature is checked against the provider's JWKS: the app then holds proof of who
// signed in, not only the word of the connection it came over.
const execute = [oidc.enableNonRepudiationChecks];
if (issuer.protocol === 'http:') execute.push(oidc.allowInsecureRequests);
const options = { execute };
let config;
async function discover() {
  for (let attempt = 1; ; attempt++) {
    try {
      config = await oidc.discovery(issuer, clientId, clientSecret, undefined, options);
      return;
    } catch (e) {
      if (attempt >= 60) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

const sessions = new Map(); // sid cookie -> { pending | tokens, claims, userinfo }

function cookie(req, name) {
  const m = (req.headers.cookie || '').match(new RegExp(`(?:^|; )${name}=([^;]+)`));
  return m && m[1];
}

function escape(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(res, status, title, body) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
  });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}
pre{background:#f4f4f4;padding:1rem;overflow:auto}a.button{display:inline-block;padding:.5rem 1rem;background:#1d4ed8;color:#fff;text-decoration:none;border-radius:4px}</style>
</head><body><h1>${escape(title)}</h1>${body}</body></html>`);
}

async function handle(req, res) {
  const url = new URL(req.url, base);
  const sid = cookie(req, 'app_sid');
  const session = sid && sessions.get(sid);
  if (url.pathname === '/') {
    if (session && session.claims) {
      return page(res, 200, `Hello, ${session.claims.name || session.claims.sub}`, `
<p>You logged in through Airlock. These are the claims of your ID token:</p>
<pre>${escape(JSON.stringify(session.claims, null, 2))}</pre>
<p>And what the userinfo endpoint says:</p>
<pre>${escape(JSON.stringify(session.userinfo, null, 2))}</pre>
<p><a class="button" href="/logout">Log out</a></p>`);
    }
    return page(res, 200, 'Sample inside application', `
<p>This application trusts only the Airlock receiver as its identity provider.</p>
<p><a class="button" href="/login">Log in with Airlock</a></p>`);
  }
  if (url.pathname === '/login') {
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const verifier = oidc.randomPKCECodeVerifier();
    const challenge = await oidc.calculatePKCECodeChallenge(verifier);
    const newSid = crypto.randomBytes(18).toString('base64url');
    sessions.set(newSid, { pending: { state, nonce, verifier } });
    const target = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: 'openid profile email groups',
      state,
      nonce,
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    res.writeHead(303, { location: target.href, 'set-cookie': `app_sid=${newSid}; HttpOnly; SameSite=Lax; Path=/` });
    return res.end();
  }
  if (url.pathname === '/callback') {
    if (!session || !session.pending) return page(res, 400, 'No login in progress', '<p><a href="/">Start again</a></p>');
    const { state, nonce, verifier } = session.pending;
    try {
      const tokens = await oidc.authorizationCodeGrant(config, url, {
        pkceCodeVerifier: verifier,
        expectedState: state,
        expectedNonce: nonce,
        idTokenExpected: true,
      });
      const claims = tokens.claims();
      const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
      sessions.set(sid, { tokens, claims, userinfo });
      res.writeHead(303, { location: '/' });
      return res.end();
    } catch (e) {
      return page(res, 400, 'Login failed', `<p>${escape(e.message)}</p><p><a href="/">Start again</a></p>`);
    }
  }
  if (url.pathname === '/logout') {
    sessions.delete(sid);
    if (session && session.tokens) {
      const target = oidc.buildEndSessionUrl(config, {
        id_token_hint: session.tokens.id_token,
        post_logout_redirect_uri: `${base}/`,
      });
      res.writeHead(303, { location: target.href, 'set-cookie': 'app_sid=; Max-Age=0; Path=/' });
      return res.end();
    }
    res.writeHead(303, { location: '/' });
    return res.end();
  }
  page(res, 404, 'Not found', '<p><a href="/">Home</a></p>');
}

await discover();
http
  .createServer((req, res) => handle(req, res).catch((e) => page(res, 500, 'Error', `<p>${escape(e.message)}</p>`)))
  .listen(Number(port), host, () => console.log(`sample app listening on ${base}/ (issuer ${issuer.href})`));
