//! Fixed keys and sample envelopes shared by this crate's tests, benches and fuzz targets.
//! Never use these keys for anything real: they are published in the test vectors.

use ed25519_dalek::SigningKey;

use crate::keys::{LinkKey, SignerKey};
use crate::message::{
    Approval, Body, Claims, ENVELOPE_VERSION, Envelope, Heartbeat, IdpMirror, KeyAnnounce,
    KeyRetire, LoginTicket, Provision, Revoke,
};
use crate::seal::{Freshness, Sealer};
use crate::trust::TrustStore;

/// Unix time the samples are issued at.
pub const T0: u64 = 1_800_000_000;

/// The fixed sample signer key.
pub fn signer() -> SignerKey {
    SignerKey::from_signing_key(SigningKey::from_bytes(&[1u8; 32]))
}

/// The fixed sample link key, kid 7.
pub fn link_key() -> LinkKey {
    LinkKey::from_bytes(7, [2u8; 32])
}

/// A sealer with [`signer`] and [`link_key`].
pub fn sealer() -> Sealer {
    Sealer::new(signer(), link_key())
}

/// Trusts [`signer`] and [`link_key`].
pub fn trust() -> TrustStore {
    let mut trust = TrustStore::new();
    trust.add_link_key(link_key());
    trust.add_signer(signer().public(), 0);
    trust
}

/// The default freshness window.
pub fn freshness() -> Freshness {
    Freshness {
        max_age_secs: 3600,
        max_skew_secs: 60,
    }
}

/// Sample claims.
pub fn claims() -> Claims {
    Claims {
        email: Some("ada.lovelace@example.org".into()),
        email_verified: Some(true),
        name: Some("Ada Lovelace".into()),
        given_name: Some("Ada".into()),
        family_name: Some("Lovelace".into()),
        preferred_username: Some("ada".into()),
        groups: vec!["engineering".into(), "analytical-engines".into()],
        extra: [("department".to_string(), "R&D".to_string())].into(),
    }
}

/// A sample approval.
pub fn approval() -> Approval {
    Approval {
        approver: "grace.hopper@example.org".into(),
        approved_at: T0 - 600,
        ticket_ref: "CHG-2026-1142".into(),
    }
}

/// One of every body type.
pub fn bodies() -> Vec<Body> {
    vec![
        Body::Provision(provision("ada")),
        Body::Revoke(Revoke {
            issuer: "https://login.example.org".into(),
            subject: "ada".into(),
            approval: approval(),
            reason: "left the project".into(),
        }),
        Body::LoginTicket(LoginTicket {
            locator: [9u8; 16],
            code_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
            issuer: "https://login.example.org".into(),
            subject: "ada".into(),
            claims: claims(),
            approval: approval(),
            expires_at: T0 + 300,
        }),
        Body::KeyAnnounce(KeyAnnounce::Signer {
            kid: "00112233445566ff".into(),
            public_key: [5u8; 32],
            not_before: T0 + 86_400,
        }),
        Body::KeyAnnounce(KeyAnnounce::Link {
            kid: 8,
            not_before: T0 + 86_400,
        }),
        Body::KeyRetire(KeyRetire::Signer {
            kid: "00112233445566ff".into(),
        }),
        Body::KeyRetire(KeyRetire::Link { kid: 6 }),
        Body::Heartbeat(Heartbeat {
            session_id: 0xA1A2_A3A4_A5A6_A7A8,
            interval_secs: 10,
        }),
        Body::IdpMirror(IdpMirror {
            issuer: "https://login.example.org".into(),
            discovery: br#"{"issuer":"https://login.example.org"}"#.to_vec(),
            jwks: br#"{"keys":[]}"#.to_vec(),
            fetched_at: T0 - 60,
        }),
    ]
}

/// A sample Provision of `subject`.
pub fn provision(subject: &str) -> Provision {
    Provision {
        issuer: "https://login.example.org".into(),
        subject: subject.into(),
        claims: claims(),
        approval: approval(),
        valid_until: T0 + 90 * 86_400,
    }
}

/// An envelope of [`signer`] with the given seq, prev and body, issued at [`T0`].
pub fn envelope(seq: u64, prev: [u8; 32], body: Body) -> Envelope {
    Envelope {
        v: ENVELOPE_VERSION,
        sender_kid: signer().kid().to_owned(),
        seq,
        prev,
        issued_at: T0,
        body,
    }
}

/// A Provision padded (through `extra`) so that its sealed frame is about `target` bytes.
pub fn provision_of_size(target: usize) -> Envelope {
    let mut p = provision("sized");
    let base = sealer()
        .seal(&envelope(1, [0; 32], Body::Provision(p.clone())))
        .map(|f| f.sealed.len())
        .unwrap_or(0);
    let pad = target.saturating_sub(base + 16);
    p.claims
        .extra
        .insert("pad".into(), "x".repeat(pad.min(500)));
    envelope(1, [0; 32], Body::Provision(p))
}
