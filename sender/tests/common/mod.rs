//! Shared test fixtures: a data dir with keys and a config, a JWT issuer, a receiver stub.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use airlock_protocol::keys::{LinkKey, SignerPublicKey};
use airlock_protocol::message::Envelope;
use airlock_protocol::seal::Freshness;
use airlock_protocol::trust::TrustStore;
use airlock_sender::config::Config;
use airlock_sender::engine::unix_now;
use airlock_tests::peer::Opener;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;

/// The sender binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_airlock-sender");

/// Runs the sender CLI with `args` (logging at warn) and waits for it.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// A child's stdout or stderr as text, for assertions and messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub const ISSUER: &str = "https://login.example.com";
pub const AUDIENCE: &str = "airlock-sender";

/// A temporary sender installation.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Fixture {
    /// Keys, a pinned JWKS for [`ISSUER`], and a config whose `[link]` section is `link_toml`
    /// and which ends with `extra_toml`.
    pub fn new(link_toml: &str, extra_toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        airlock_sender::keygen::keygen(&dir.path().join("keys"), 3).unwrap();
        std::fs::write(dir.path().join("jwks.json"), jwks_json()).unwrap();
        let config = format!(
            r#"data_dir = "data"
[keys]
signer = "keys/signer.pem"
link = "keys/link.key"
[link]
mtu = 1200
linger_ms = 2
{link_toml}
[send]
repetitions = 1
repetition_spacing_ms = 100
pacing_bytes_per_sec = 0
heartbeat_secs = 3600
carousel_secs = 0
[metrics]
listen = "127.0.0.1:0"
[policy]
claim_allow_list = ["email", "email_verified", "name", "groups", "department"]
[[policy.issuers]]
issuer = "{ISSUER}"
email_domains = ["example.com"]
required_groups = ["airlock-users"]
allow_token_provision = true
[[policy.issuers]]
issuer = "https://partner.example.org"
subjects = ["p-1", "p-2"]
[[trusted_issuers]]
issuer = "{ISSUER}"
jwks_file = "jwks.json"
audience = "{AUDIENCE}"
{extra_toml}
"#
        );
        let config_path = dir.path().join("sender.toml");
        std::fs::write(&config_path, config).unwrap();
        Self { dir, config_path }
    }

    pub fn udp(port: u16) -> Self {
        Self::new(&format!("[link.udp]\ntarget = \"127.0.0.1:{port}\""), "")
    }

    pub fn config(&self) -> Config {
        Config::load(&self.config_path).unwrap()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// What the receiver would trust.
    pub fn trust(&self) -> TrustStore {
        let mut trust = TrustStore::new();
        trust.add_link_key(LinkKey::load(&self.path("keys/link.key")).unwrap());
        trust.add_signer(
            SignerPublicKey::load(&self.path("keys/signer.pub.pem")).unwrap(),
            0,
        );
        trust
    }
}

/// The outside IdP's fixed test key.
pub fn idp_key() -> SigningKey {
    SigningKey::from_bytes(&[9u8; 32])
}

pub fn jwks_json() -> String {
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(idp_key().verifying_key().to_bytes());
    format!(
        r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"idp-1","alg":"EdDSA","use":"sig"}}]}}"#
    )
}

/// Signs `claims` as the IdP (EdDSA, kid idp-1) or with another key.
pub fn sign_token_with(key: &SigningKey, kid: &str, claims: &serde_json::Value) -> String {
    sign_token_typed(key, kid, Some("JWT"), claims)
}

/// Signs `claims` with a chosen header `typ` (None: no typ header).
pub fn sign_token_typed(
    key: &SigningKey,
    kid: &str,
    typ: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    let pem = key.to_pkcs8_pem(Default::default()).unwrap();
    let enc = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.to_string());
    header.typ = typ.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &enc).unwrap()
}

pub fn sign_token(claims: &serde_json::Value) -> String {
    sign_token_with(&idp_key(), "idp-1", claims)
}

/// Claims of a good ID token for `sub`.
pub fn good_claims(sub: &str) -> serde_json::Value {
    let now = unix_now();
    serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300, "nbf": now - 10,
        "email": format!("{sub}@example.com"), "email_verified": true, "name": "Test User",
        "groups": ["airlock-users"], "jti": format!("jti-{sub}"), "phone_number": "+1 555"
    })
}

/// A provision approval record for `sub`.
pub fn provision_record(sub: &str) -> String {
    serde_json::json!({
        "kind": "provision", "issuer": ISSUER, "subject": sub,
        "claims": {"email": format!("{sub}@example.com"), "email_verified": true, "name": "Jane Doe", "groups": ["airlock-users"]},
        "approver": "alice@example.com", "ticket_ref": "CHG-1", "valid_until": unix_now() + 86_400
    })
    .to_string()
}

/// The receiver side in miniature: datagrams in, opened envelopes out (the test kit's
/// [`Opener`]); a frame that fails to open for any reason but a replay fails the test.
pub struct MiniReceiver {
    opener: Opener,
    pub envelopes: Vec<Envelope>,
    pub hashes: Vec<[u8; 32]>,
    pub duplicates: usize,
}

impl MiniReceiver {
    pub fn new(trust: TrustStore) -> Self {
        let fresh = Freshness {
            max_age_secs: 3600,
            max_skew_secs: 60,
        };
        Self {
            opener: Opener::new(trust, fresh),
            envelopes: Vec::new(),
            hashes: Vec::new(),
            duplicates: 0,
        }
    }

    pub fn push_datagram(&mut self, datagram: &[u8]) {
        let seen = self.opener.accepted().len();
        self.opener.push(datagram);
        for opened in &self.opener.accepted()[seen..] {
            self.envelopes.push(opened.envelope.clone());
            self.hashes.push(opened.hash);
        }
        for (reason, n) in self.opener.rejected() {
            match *reason {
                "replay" => self.duplicates = usize::try_from(*n).unwrap(),
                _ => panic!("{n} frame(s) failed to open: {reason}"),
            }
        }
    }

    pub fn highest_seq(&self) -> u64 {
        self.envelopes.iter().map(|e| e.seq).max().unwrap_or(0)
    }

    /// Every `prev` equals the hash of the frame with the seq before it (when both arrived).
    pub fn assert_chain(&self) {
        let by_seq: std::collections::BTreeMap<u64, (&Envelope, [u8; 32])> = self
            .envelopes
            .iter()
            .zip(self.hashes.iter().copied())
            .map(|(e, h)| (e.seq, (e, h)))
            .collect();
        for (seq, (env, _)) in &by_seq {
            if let Some((_, prev_hash)) = by_seq.get(&(seq - 1)) {
                assert_eq!(&env.prev, prev_hash, "chain broken at seq {seq}");
            }
        }
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.envelopes.iter().map(|e| e.body.kind()).collect()
    }
}

/// Writes `text` to a file in the fixture dir and returns its path as a string.
pub fn write_input(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}
