//! Token signing keys: generation (aws-lc-rs), the JWKS, and rotation with overlap.
//!
//! A key's life: created and published in the JWKS at `created_at`; used for signing
//! from `sign_from` (the rotation delay later, so relying parties have fetched it);
//! when a successor is created it gets `retire_after` = successor's `sign_from` plus
//! the longest token lifetime, after which it leaves the JWKS and the store.

use std::sync::RwLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};

use crate::oidc::config::SigningAlg;
use crate::oidc::error::OidcError;
use crate::oidc::store::{OidcStore, StoredKey};

/// A key ready to sign and verify.
pub struct LoadedKey {
    pub stored: StoredKey,
    /// The parsed private key, kept for signing (parsing it per token would cost more
    /// than the signature: an RSA key check or a P-256 scalar multiplication).
    pub signer: KeySigner,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    pub jwk: Value,
    /// The MAC key of server-minted cookie values (CSRF tokens), derived from the private
    /// key: every receiver sharing the keys shares it, and it leaves with the key.
    pub cookie_mac: aws_lc_rs::hmac::Key,
}

/// A parsed private key.
pub enum KeySigner {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl KeySigner {
    /// The JWS signature of `msg` (RSASSA-PKCS1-v1_5 SHA-256, ECDSA P-256 r||s, or Ed25519).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, OidcError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self {
            KeySigner::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| key_err("RSA sign"))?;
                Ok(sig)
            }
            KeySigner::Ec(kp) => Ok(kp
                .sign(&rng, msg)
                .map_err(|_| key_err("P-256 sign"))?
                .as_ref()
                .to_vec()),
            KeySigner::Ed(kp) => Ok(kp.sign(msg).as_ref().to_vec()),
        }
    }
}

/// The in-memory view of the stored keys, refreshed after every change.
#[derive(Default)]
pub struct KeySet {
    keys: RwLock<Vec<std::sync::Arc<LoadedKey>>>,
}

pub fn jwt_alg(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::RS256 => Algorithm::RS256,
        SigningAlg::ES256 => Algorithm::ES256,
        SigningAlg::EdDSA => Algorithm::EdDSA,
    }
}

fn key_err(what: &str) -> OidcError {
    OidcError::Key(format!(
        "{what}: the crypto library refused; check the store for a corrupt key"
    ))
}

/// Generates a fresh key of `alg`.
pub fn generate(alg: SigningAlg, now: u64, sign_from: u64) -> Result<StoredKey, OidcError> {
    let pkcs8: Vec<u8> = match alg {
        SigningAlg::RS256 => {
            let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| key_err("RSA generate"))?;
            kp.as_der()
                .map_err(|_| key_err("RSA export"))?
                .as_ref()
                .to_vec()
        }
        SigningAlg::ES256 => {
            let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| key_err("P-256 generate"))?;
            kp.to_pkcs8v1()
                .map_err(|_| key_err("P-256 export"))?
                .as_ref()
                .to_vec()
        }
        SigningAlg::EdDSA => {
            let kp = Ed25519KeyPair::generate().map_err(|_| key_err("Ed25519 generate"))?;
            kp.to_pkcs8()
                .map_err(|_| key_err("Ed25519 export"))?
                .as_ref()
                .to_vec()
        }
    };
    let mut rnd = [0u8; 12];
    aws_lc_rs::rand::fill(&mut rnd).map_err(|_| key_err("random kid"))?;
    Ok(StoredKey {
        kid: format!(
            "{}-{}",
            alg.as_str().to_ascii_lowercase(),
            URL_SAFE_NO_PAD.encode(rnd)
        ),
        alg,
        pkcs8: STANDARD.encode(pkcs8),
        created_at: now,
        sign_from,
        retire_after: None,
    })
}

/// Builds the signing/verifying keys and the public JWK of a stored key.
pub fn load(stored: StoredKey) -> Result<LoadedKey, OidcError> {
    let der = STANDARD
        .decode(&stored.pkcs8)
        .map_err(|_| key_err("key base64"))?;
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let (signer, encoding, decoding, mut jwk) = match stored.alg {
        SigningAlg::RS256 => {
            let kp = RsaKeyPair::from_pkcs8(&der).map_err(|_| key_err("RSA parse"))?;
            let public = kp.public_key();
            let n = public.modulus().big_endian_without_leading_zero().to_vec();
            let e = public.exponent().big_endian_without_leading_zero().to_vec();
            // jsonwebtoken's aws-lc signer wants PKCS#1 RSAPrivateKey, the inner part of PKCS#8.
            let pkcs1 = pkcs8_inner(&der).ok_or_else(|| key_err("RSA PKCS#8 structure"))?;
            let jwk = json!({"kty": "RSA", "n": b64(&n), "e": b64(&e)});
            (
                KeySigner::Rsa(kp),
                EncodingKey::from_rsa_der(pkcs1),
                DecodingKey::from_rsa_raw_components(&n, &e),
                jwk,
            )
        }
        SigningAlg::ES256 => {
            let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                .map_err(|_| key_err("P-256 parse"))?;
            let point = kp.public_key().as_ref().to_vec();
            let (x, y) = match (point.get(1..33), point.get(33..65)) {
                (Some(x), Some(y)) if point.len() == 65 => (b64(x), b64(y)),
                _ => return Err(key_err("P-256 public point")),
            };
            let decoding = DecodingKey::from_ec_components(&x, &y)?;
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
            (
                KeySigner::Ec(kp),
                EncodingKey::from_ec_der(&der),
                decoding,
                jwk,
            )
        }
        SigningAlg::EdDSA => {
            let kp = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| key_err("Ed25519 parse"))?;
            let x = b64(kp.public_key().as_ref());
            let decoding = DecodingKey::from_ed_components(&x)?;
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x});
            (
                KeySigner::Ed(kp),
                EncodingKey::from_ed_der(&der),
                decoding,
                jwk,
            )
        }
    };
    if let Some(obj) = jwk.as_object_mut() {
        obj.insert("kid".into(), json!(stored.kid));
        obj.insert("alg".into(), json!(stored.alg.as_str()));
        obj.insert("use".into(), json!("sig"));
    }
    // HMAC as a KDF on the private key: the derived key says nothing about the private one.
    let derive = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &der);
    let cookie_key = aws_lc_rs::hmac::sign(&derive, b"airlock cookie mac v1");
    let cookie_mac = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, cookie_key.as_ref());
    Ok(LoadedKey {
        stored,
        signer,
        encoding,
        decoding,
        jwk,
        cookie_mac,
    })
}

/// The OCTET STRING content of a PKCS#8 PrivateKeyInfo (minimal DER walk).
fn pkcs8_inner(der: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (t1, _, rest) = tlv(body)?; // version
    let (t2, _, rest) = tlv(rest)?; // algorithm identifier
    let (t3, key, _) = tlv(rest)?; // private key
    (t1 == 0x02 && t2 == 0x30 && t3 == 0x04).then_some(key)
}

/// One DER tag-length-value: (tag, value, remainder).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 3 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let value = b.get(hdr..hdr.checked_add(len)?)?;
    let rest = b.get(hdr + len..)?;
    Some((tag, value, rest))
}

impl KeySet {
    /// Loads the stored keys, creating one per algorithm on first start and
    /// dropping keys whose retirement time has passed.
    pub fn init(store: &dyn OidcStore, now: u64) -> Result<Self, OidcError> {
        let set = KeySet::default();
        let existing = store.keys()?;
        for alg in SigningAlg::ALL {
            if !existing.iter().any(|k| k.alg == alg) {
                store.put_key(&generate(alg, now, now)?)?;
                tracing::info!(alg = alg.as_str(), "generated the first signing key");
            }
        }
        set.reload(store, now)?;
        Ok(set)
    }

    /// Re-reads the store (after a rotation by the CLI or by this process).
    pub fn reload(&self, store: &dyn OidcStore, now: u64) -> Result<(), OidcError> {
        let mut loaded = Vec::new();
        for k in store.keys()? {
            if k.retire_after.is_some_and(|t| t <= now) {
                store.delete_key(&k.kid)?;
                tracing::info!(kid = %k.kid, "retired signing key removed");
                continue;
            }
            loaded.push(std::sync::Arc::new(load(k)?));
        }
        loaded.sort_by_key(|k| std::cmp::Reverse(k.stored.sign_from));
        if let Ok(mut w) = self.keys.write() {
            *w = loaded;
        }
        Ok(())
    }

    fn all(&self) -> Vec<std::sync::Arc<LoadedKey>> {
        self.keys.read().map(|k| k.clone()).unwrap_or_default()
    }

    /// The key to sign with now: the newest of `alg` whose signing time has come.
    pub fn signing_key(&self, alg: SigningAlg, now: u64) -> Option<std::sync::Arc<LoadedKey>> {
        self.all()
            .into_iter()
            .find(|k| k.stored.alg == alg && k.stored.sign_from <= now)
    }

    /// The key that MACs new cookie values: that of the newest key already signing (every
    /// receiver of a cluster has loaded it by then).
    pub fn cookie_mac(&self, now: u64) -> Option<aws_lc_rs::hmac::Key> {
        self.all()
            .into_iter()
            .find(|k| k.stored.sign_from <= now)
            .map(|k| k.cookie_mac.clone())
    }

    /// Every key a cookie value may be MACed under (those of all loaded keys).
    pub fn cookie_macs(&self) -> Vec<aws_lc_rs::hmac::Key> {
        self.all().iter().map(|k| k.cookie_mac.clone()).collect()
    }

    /// A published key by kid (for verifying our own tokens).
    pub fn by_kid(&self, kid: &str) -> Option<std::sync::Arc<LoadedKey>> {
        self.all().into_iter().find(|k| k.stored.kid == kid)
    }

    /// The public JWK Set.
    pub fn jwks(&self, now: u64) -> Value {
        let keys: Vec<Value> = self
            .all()
            .iter()
            .filter(|k| k.stored.retire_after.is_none_or(|t| t > now))
            .map(|k| k.jwk.clone())
            .collect();
        json!({ "keys": keys })
    }
}

/// When the new keys of a rotation already started begin signing, if that is still ahead.
pub fn rotation_pending(keys: &[StoredKey], now: u64) -> Option<u64> {
    keys.iter().map(|k| k.sign_from).filter(|&t| t > now).max()
}

/// Whether a scheduled rotation is due: none is under way and the newest key was created
/// `interval` seconds ago or more.
pub fn rotation_due(keys: &[StoredKey], now: u64, interval: u64) -> bool {
    rotation_pending(keys, now).is_none()
        && keys
            .iter()
            .map(|k| k.created_at)
            .max()
            .is_none_or(|newest| newest.saturating_add(interval) <= now)
}

/// Starts a rotation: a new key per algorithm, published now, signing after `delay`;
/// current keys retire `overlap` seconds after the new ones start signing.
/// Refused while an earlier rotation's keys do not sign yet. Returns the new kids. This is
/// what `airlock-receiver keys rotate` calls.
pub fn rotate_keys(
    store: &dyn OidcStore,
    now: u64,
    delay: u64,
    overlap: u64,
) -> Result<Vec<String>, OidcError> {
    let existing = store.keys()?;
    if let Some(t) = rotation_pending(&existing, now) {
        return Err(OidcError::Key(format!(
            "a rotation is already under way: its new keys sign from {t} (Unix seconds); rotate again after that"
        )));
    }
    let sign_from = now.saturating_add(delay);
    let mut kids = Vec::new();
    for mut old in existing {
        if old.retire_after.is_none() {
            old.retire_after = Some(sign_from.saturating_add(overlap));
            store.put_key(&old)?;
        }
    }
    for alg in SigningAlg::ALL {
        let k = generate(alg, now, sign_from)?;
        kids.push(k.kid.clone());
        store.put_key(&k)?;
    }
    tracing::info!(?kids, sign_from, "signing keys rotated");
    Ok(kids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::sled_store::SledOidcStore;

    #[test]
    fn every_alg_signs_and_verifies() {
        for alg in SigningAlg::ALL {
            let k = load(generate(alg, 0, 0).unwrap()).unwrap();
            let mut h = jsonwebtoken::Header::new(jwt_alg(alg));
            h.kid = Some(k.stored.kid.clone());
            let t =
                jsonwebtoken::encode(&h, &json!({"a": 1, "exp": 4_000_000_000u64}), &k.encoding)
                    .unwrap();
            let v = jsonwebtoken::Validation::new(jwt_alg(alg));
            let d = jsonwebtoken::decode::<Value>(&t, &k.decoding, &v).unwrap();
            assert_eq!(d.claims["a"], 1);
        }
    }

    #[test]
    fn rotation_publishes_first_then_signs_then_retires() {
        let store =
            SledOidcStore::open(sled::Config::new().temporary(true).open().unwrap()).unwrap();
        let set = KeySet::init(&store, 100).unwrap();
        let old = set
            .signing_key(SigningAlg::ES256, 100)
            .unwrap()
            .stored
            .kid
            .clone();
        rotate_keys(&store, 200, 50, 30).unwrap();
        set.reload(&store, 200).unwrap();
        let jwks = set.jwks(200);
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 6);
        assert_eq!(
            set.signing_key(SigningAlg::ES256, 249).unwrap().stored.kid,
            old
        );
        let new = set
            .signing_key(SigningAlg::ES256, 250)
            .unwrap()
            .stored
            .kid
            .clone();
        assert_ne!(new, old);
        set.reload(&store, 280).unwrap();
        assert!(set.by_kid(&old).is_none());
        assert_eq!(set.jwks(280)["keys"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_rotation_is_due_after_the_interval_and_not_while_one_is_pending() {
        let store =
            SledOidcStore::open(sled::Config::new().temporary(true).open().unwrap()).unwrap();
        KeySet::init(&store, 100).unwrap();
        let keys = store.keys().unwrap();
        assert!(!rotation_due(&keys, 199, 100));
        assert!(rotation_due(&keys, 200, 100));
        rotate_keys(&store, 200, 50, 30).unwrap();
        let keys = store.keys().unwrap();
        assert_eq!(rotation_pending(&keys, 200), Some(250));
        assert!(!rotation_due(&keys, 240, 10));
        assert!(rotate_keys(&store, 240, 50, 30).is_err(), "one at a time");
        assert_eq!(rotation_pending(&keys, 250), None);
        assert!(!rotation_due(&keys, 250, 100));
        assert!(rotation_due(&keys, 300, 100));
    }
}
