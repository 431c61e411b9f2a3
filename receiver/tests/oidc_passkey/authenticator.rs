//! A software WebAuthn authenticator for tests only: ES256 (P-256, aws-lc-rs), "none"
//! attestation, authenticator data as WebAuthn §6.1, clientDataJSON as §5.8.1. Knobs
//! let a test forge what a broken or hostile client would send.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const BE: u8 = 0x08;
const BS: u8 = 0x10;
const AT: u8 = 0x40;

/// What the next response should get wrong.
#[derive(Default, Clone)]
pub struct Forge {
    pub origin: Option<String>,
    pub rp_id: Option<String>,
    pub challenge: Option<Vec<u8>>,
    pub flip_signature: bool,
    pub counter: Option<u32>,
    pub no_uv: bool,
    pub backup_eligible: Option<bool>,
    pub user_handle: Option<Vec<u8>>,
}

pub struct SoftAuthenticator {
    key: EcdsaKeyPair,
    pub cred_id: Vec<u8>,
    pub user_handle: Vec<u8>,
    pub counter: u32,
    pub backup_eligible: bool,
    pub forge: Forge,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// CBOR byte-string header + bytes.
fn cbor_bytes(out: &mut Vec<u8>, b: &[u8]) {
    match b.len() {
        n if n < 24 => out.push(0x40 | n as u8),
        n if n < 256 => out.extend([0x58, n as u8]),
        n => {
            out.push(0x59);
            out.extend((n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(b);
}

fn cbor_text(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() < 24);
    out.push(0x60 | s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

impl SoftAuthenticator {
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let mut cred_id = vec![0u8; 16];
        aws_lc_rs::rand::SecureRandom::fill(&rng, &mut cred_id).unwrap();
        SoftAuthenticator {
            key,
            cred_id,
            user_handle: vec![],
            counter: 0,
            backup_eligible: false,
            forge: Forge::default(),
        }
    }

    /// The COSE_Key (EC2, ES256, P-256) of the public key.
    fn cose_key(&self) -> Vec<u8> {
        let pk = self.key.public_key().as_ref();
        assert_eq!(pk.len(), 65);
        let mut k = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        cbor_bytes(&mut k, &pk[1..33]);
        k.push(0x22);
        cbor_bytes(&mut k, &pk[33..65]);
        k
    }

    fn auth_data(&self, rp_id: &str, attested: bool) -> Vec<u8> {
        let rp_id = self.forge.rp_id.as_deref().unwrap_or(rp_id);
        let mut d = Sha256::digest(rp_id.as_bytes()).to_vec();
        let mut flags = UP;
        if !self.forge.no_uv {
            flags |= UV;
        }
        if self.forge.backup_eligible.unwrap_or(self.backup_eligible) {
            flags |= BE | BS;
        }
        if attested {
            flags |= AT;
        }
        d.push(flags);
        d.extend(self.forge.counter.unwrap_or(self.counter).to_be_bytes());
        if attested {
            d.extend([0u8; 16]); // AAGUID: none
            d.extend((self.cred_id.len() as u16).to_be_bytes());
            d.extend(&self.cred_id);
            d.extend(self.cose_key());
        }
        d
    }

    fn client_data(&self, kind: &str, challenge_b64: &str, origin: &str) -> Vec<u8> {
        let challenge = match &self.forge.challenge {
            Some(c) => b64(c),
            None => challenge_b64.to_string(),
        };
        let origin = self.forge.origin.as_deref().unwrap_or(origin);
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": challenge,
            "origin": origin,
            "crossOrigin": false
        }))
        .unwrap()
    }

    /// `navigator.credentials.create` on the provider's options; returns the JSON the
    /// page would post.
    pub fn create(&mut self, options: &Value, origin: &str) -> String {
        let o = &options["publicKey"];
        let rp_id = o["rp"]["id"].as_str().unwrap();
        self.user_handle = unb64(o["user"]["id"].as_str().unwrap());
        let cd = self.client_data("webauthn.create", o["challenge"].as_str().unwrap(), origin);
        let ad = self.auth_data(rp_id, true);
        let mut att = vec![0xa3];
        cbor_text(&mut att, "fmt");
        cbor_text(&mut att, "none");
        cbor_text(&mut att, "attStmt");
        att.push(0xa0);
        cbor_text(&mut att, "authData");
        cbor_bytes(&mut att, &ad);
        serde_json::to_string(&json!({
            "id": b64(&self.cred_id),
            "rawId": b64(&self.cred_id),
            "type": "public-key",
            "response": {
                "attestationObject": b64(&att),
                "clientDataJSON": b64(&cd),
                "transports": ["internal"]
            },
            "extensions": {}
        }))
        .unwrap()
    }

    /// `navigator.credentials.get`: signs authenticatorData || SHA-256(clientDataJSON).
    pub fn get(&mut self, options: &Value, origin: &str) -> String {
        let o = &options["publicKey"];
        let rp_id = o["rpId"].as_str().unwrap();
        self.counter += 1;
        let cd = self.client_data("webauthn.get", o["challenge"].as_str().unwrap(), origin);
        let ad = self.auth_data(rp_id, false);
        let mut msg = ad.clone();
        msg.extend(Sha256::digest(&cd));
        let mut sig = self
            .key
            .sign(&SystemRandom::new(), &msg)
            .unwrap()
            .as_ref()
            .to_vec();
        if self.forge.flip_signature {
            let n = sig.len();
            sig[n - 3] ^= 0x01;
        }
        let handle = self
            .forge
            .user_handle
            .clone()
            .unwrap_or(self.user_handle.clone());
        serde_json::to_string(&json!({
            "id": b64(&self.cred_id),
            "rawId": b64(&self.cred_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&ad),
                "clientDataJSON": b64(&cd),
                "signature": b64(&sig),
                "userHandle": b64(&handle)
            },
            "extensions": {}
        }))
        .unwrap()
    }

    pub fn cred_b64(&self) -> String {
        b64(&self.cred_id)
    }
}
