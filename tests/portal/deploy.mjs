// A one-machine deployment for the portal test: keys from `airlock-sender keygen`, the real
// airlock-receiver (link on loopback UDP, its OpenID provider on loopback) and the real
// airlock-sender with its outside portal configured against the test IdP.
import { spawn, execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.AIRLOCK_BIN_DIR || path.resolve(HERE, '../../target/debug');

export async function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export async function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls url until it answers 200 (or throws after ~30 s, with the daemon's log tail). */
export async function waitReady(url, logFile) {
  for (let i = 0; i < 150; i++) {
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch { /* not up yet */ }
    await sleep(200);
  }
  const log = logFile && fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-3000) : '';
  throw new Error(`${url} did not come up\n${log}`);
}

function daemon(bin, args, dir, name) {
  const log = path.join(dir, `${name}.log`);
  const out = fs.openSync(log, 'a');
  const child = spawn(path.join(BIN, bin), args, { cwd: dir, stdio: ['ignore', out, out], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' } });
  child.logFile = log;
  return child;
}

async function stop(child) {
  if (!child || child.exitCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await done;
  clearTimeout(timer);
}

/**
 * Starts receiver then sender. `idp` = { issuer, clientId, secret }; ports chosen here.
 * Returns URLs, the directory and stop().
 */
export async function deploy({ idp, ticketTtlSecs, portalPort, insideRedirect }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-portal-'));
  execFileSync(path.join(BIN, 'airlock-sender'), ['keygen', '--out', 'keys'], { cwd: dir, stdio: 'pipe' });
  fs.writeFileSync(path.join(dir, 'portal-secret'), `${idp.secret}\n`, { mode: 0o600 });
  const [udp, ops, oidc, metrics] = [await freeUdpPort(), await freeTcpPort(), await freeTcpPort(), await freeTcpPort()];
  const insideIssuer = `http://127.0.0.1:${oidc}`;
  const portal = `http://127.0.0.1:${portalPort}`;

  fs.writeFileSync(path.join(dir, 'receiver.toml'), `data_dir = "receiver-data"

[link]
datagram_size = 1400
[link.udp]
listen = "127.0.0.1:${udp}"

[trust]
signers = ["keys/signer.pub.pem"]
link_keys = ["keys/link.key"]

[ops]
listen = "127.0.0.1:${ops}"

[oidc]
issuer = "${insideIssuer}"
listen = "127.0.0.1:${oidc}"
allow_plain_http = true
max_attempts_per_locator = 20
max_attempts_per_address = 100

[[oidc.clients]]
client_id = "inside-app"
public = true
redirect_uris = ["${insideRedirect}"]
`);

  fs.writeFileSync(path.join(dir, 'sender.toml'), `data_dir = "sender-data"

[keys]
signer = "keys/signer.pem"
link = "keys/link.key"

[link]
mtu = 1200
[link.udp]
target = "127.0.0.1:${udp}"

[metrics]
listen = "127.0.0.1:${metrics}"

[policy]
claim_allow_list = ["email", "email_verified", "name", "groups"]
ticket_ttl_secs = ${ticketTtlSecs}

[[policy.issuers]]
issuer = "${idp.issuer}"
email_domains = ["example.org"]

[portal]
listen = "127.0.0.1:${portalPort}"
help_contact = "the identity team (idm@example.org)"
allow_plain_http = true
refresh_secs = 30

[[portal.idps]]
name = "testidp"
display_name = "Test IdP"
issuer = "${idp.issuer}"
client_id = "${idp.clientId}"
client_secret_file = "portal-secret"
scopes = ["openid", "email", "profile", "groups"]
redirect_url = "${portal}/callback"
`);

  const receiver = daemon('airlock-receiver', ['run', '--config', 'receiver.toml'], dir, 'receiver');
  await waitReady(`${insideIssuer}/.well-known/openid-configuration`, receiver.logFile);
  const sender = daemon('airlock-sender', ['run', '--config', 'sender.toml'], dir, 'sender');
  await waitReady(`${portal}/healthz`, sender.logFile);
  return {
    dir,
    portal,
    insideIssuer,
    async stop() { await stop(sender); await stop(receiver); },
    async stopReceiver() { await stop(receiver); },
    /** Runs `airlock-receiver ARGS` in the deployment directory; its stdout. */
    receiverCli(args) {
      return execFileSync(path.join(BIN, 'airlock-receiver'), args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    },
    logs() {
      return ['sender', 'receiver'].map((n) => `--- ${n}.log\n${fs.readFileSync(path.join(dir, `${n}.log`), 'utf8').slice(-4000)}`).join('\n');
    },
  };
}
