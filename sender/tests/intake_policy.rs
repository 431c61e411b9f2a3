//! Each intake path and each policy rule, through the same entry point `submit` uses.

use crate::common;

use airlock_protocol::message::Body;
use airlock_sender::engine::unix_now;
use airlock_sender::spool::{self, Entry};
use airlock_sender::submit::{SubmitReport, submit};
use airlock_sender::transfer_code::TransferCode;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use common::*;
use serde_json::json;

fn run(fx: &Fixture, text: &str) -> SubmitReport {
    submit(
        &fx.config(),
        &[("in.json".to_string(), text.as_bytes().to_vec())],
        unix_now(),
    )
    .unwrap()
}

fn queued_bodies(fx: &Fixture) -> Vec<Body> {
    spool::list(&fx.config().spool_dir())
        .unwrap()
        .into_iter()
        .flat_map(|e| match e {
            Entry::Batch { path, .. } => spool::read_batch(&path).unwrap().items,
            Entry::Command { .. } => vec![],
        })
        .map(|i| i.body)
        .collect()
}

fn fixture() -> Fixture {
    Fixture::udp(9)
}

/// Submits one record and expects it refused by `rule`; nothing may be queued.
fn assert_refused(fx: &Fixture, record: serde_json::Value, rule: &str) {
    let report = run(fx, &record.to_string());
    assert_eq!(report.batch_id, None);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(
        report.errors[0].contains(&format!("rule `{rule}`")),
        "{}",
        report.errors[0]
    );
    assert!(queued_bodies(fx).is_empty());
}

fn provision(sub: &str) -> serde_json::Value {
    serde_json::from_str(&provision_record(sub)).unwrap()
}

#[test]
fn approval_record_provision_is_queued_with_only_allow_listed_claims() {
    let fx = fixture();
    let mut rec = provision("u1");
    rec["claims"]["phone"] = json!("+1 555");
    rec["claims"]["department"] = json!(42);
    let report = run(&fx, &rec.to_string());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.accepted[0].dropped_claims, vec!["phone".to_string()]);
    let bodies = queued_bodies(&fx);
    let Body::Provision(p) = &bodies[0] else {
        panic!("{bodies:?}")
    };
    assert_eq!(p.subject, "u1");
    assert_eq!(p.claims.email.as_deref(), Some("u1@example.com"));
    assert_eq!(
        p.claims.extra.get("department").map(String::as_str),
        Some("42")
    );
    assert_eq!(p.approval.approver, "alice@example.com");
}

#[test]
fn approval_record_revoke_passes_without_grant_rules() {
    let fx = fixture();
    // No email, no groups: revocation is never blocked by the rules that grant access.
    let rec = json!({"kind":"revoke","issuer":ISSUER,"subject":"gone","approver":"a","ticket_ref":"T-9","reason":"left"});
    let report = run(&fx, &rec.to_string());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(matches!(&queued_bodies(&fx)[0], Body::Revoke(r) if r.reason == "left"));
}

#[test]
fn approval_login_ticket_gets_a_transfer_code_whose_hash_crosses() {
    let fx = fixture();
    let rec = json!({"kind":"login_ticket","issuer":ISSUER,"subject":"jit","approver":"desk",
        "claims":{"email":"jit@example.com","email_verified":true,"groups":["airlock-users"]}});
    let report = run(&fx, &rec.to_string());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let code = TransferCode::parse(report.accepted[0].transfer_code.as_ref().unwrap()).unwrap();
    let Body::LoginTicket(t) = &queued_bodies(&fx)[0] else {
        panic!()
    };
    assert_eq!(t.locator, code.locator());
    let phc = PasswordHash::new(&t.code_hash).unwrap();
    assert!(
        argon2::Argon2::default()
            .verify_password(code.secret().as_bytes(), &phc)
            .is_ok()
    );
    let ttl = t.expires_at - unix_now();
    assert!((290..=300).contains(&ttl), "{ttl}");
    // The code itself is nowhere in the spool.
    let spool_text: String = spool::list(&fx.config().spool_dir())
        .unwrap()
        .iter()
        .map(|e| match e {
            Entry::Batch { path, .. } | Entry::Command { path, .. } => {
                std::fs::read_to_string(path).unwrap()
            }
        })
        .collect();
    assert!(!spool_text.contains(&code.secret()));
}

#[test]
fn id_token_becomes_a_login_ticket_by_default() {
    let fx = fixture();
    let token = sign_token(&good_claims("tok-user"));
    let report = run(&fx, &token);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.accepted[0].transfer_code.is_some());
    assert_eq!(
        report.accepted[0].dropped_claims,
        vec!["phone_number".to_string()]
    );
    let Body::LoginTicket(t) = &queued_bodies(&fx)[0] else {
        panic!()
    };
    assert_eq!(
        (t.issuer.as_str(), t.subject.as_str()),
        (ISSUER, "tok-user")
    );
    assert_eq!(t.approval.ticket_ref, "jti-tok-user");
    assert_eq!(t.claims.email_verified, Some(true));
}

#[test]
fn id_token_record_can_provision_when_the_issuer_allows() {
    let fx = fixture();
    let token = sign_token(&good_claims("tp"));
    let rec = json!({"kind":"id_token","token":token,"grant":"provision","approver":"bob","ticket_ref":"CHG-7"});
    let report = run(&fx, &rec.to_string());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(matches!(&queued_bodies(&fx)[0], Body::Provision(p) if p.approval.approver == "bob"));
}

fn token_refused(claims: serde_json::Value, expect: &str) {
    let fx = fixture();
    let report = run(&fx, &sign_token(&claims));
    assert_eq!(report.batch_id, None);
    assert!(
        report.errors[0].contains(expect),
        "{} (wanted {expect})",
        report.errors[0]
    );
    assert!(
        report.errors[0].starts_with("in.json: ID token refused"),
        "{}",
        report.errors[0]
    );
}

#[test]
fn expired_tokens_are_refused() {
    let mut c = good_claims("x");
    c["exp"] = json!(unix_now() - 3600);
    token_refused(c, "token expired");
}

#[test]
fn not_yet_valid_tokens_are_refused() {
    let mut c = good_claims("x");
    c["nbf"] = json!(unix_now() + 3600);
    token_refused(c, "not valid yet");
}

#[test]
fn wrong_audience_is_refused() {
    let mut c = good_claims("x");
    c["aud"] = json!("someone-else");
    token_refused(c, "wrong audience");
}

#[test]
fn foreign_issuers_are_refused() {
    let mut c = good_claims("x");
    c["iss"] = json!("https://evil.example.net");
    token_refused(c, "is not a trusted issuer");
}

#[test]
fn old_and_future_iat_are_refused() {
    let mut c = good_claims("x");
    c["iat"] = json!(unix_now() - 3600);
    token_refused(c.clone(), "issued 3600 s ago");
    c["iat"] = json!(unix_now() + 3600);
    token_refused(c, "issued in the future");
}

#[test]
fn missing_audience_is_refused() {
    let mut c = good_claims("x");
    c.as_object_mut().unwrap().remove("aud");
    token_refused(c, "`aud` is missing");
}

#[test]
fn several_audiences_need_azp_naming_this_sender() {
    let mut c = good_claims("x");
    c["aud"] = json!([AUDIENCE, "another-app"]);
    token_refused(c.clone(), "`azp` is required");
    c["azp"] = json!("another-app");
    token_refused(c.clone(), "authorized party");
    c["azp"] = json!(AUDIENCE);
    let report = run(&fixture(), &sign_token(&c));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // An azp naming another party is refused with one audience too.
    let mut one = good_claims("y");
    one["azp"] = json!("another-app");
    token_refused(one, "authorized party");
}

#[test]
fn access_tokens_are_not_id_tokens() {
    let fx = fixture();
    for typ in ["at+jwt", "application/at+JWT", "logout+jwt"] {
        let token = sign_token_typed(&idp_key(), "idp-1", Some(typ), &good_claims("x"));
        let report = run(&fx, &token);
        assert!(
            report.errors[0].contains(&format!("typ {typ:?}"))
                && report.errors[0].contains("not an ID token"),
            "{}",
            report.errors[0]
        );
    }
    // No typ at all is fine (many IdPs leave it out).
    let token = sign_token_typed(&idp_key(), "idp-1", None, &good_claims("x"));
    assert!(run(&fx, &token).errors.is_empty());
    assert_eq!(queued_bodies(&fx).len(), 1);
}

#[test]
fn bad_signatures_are_refused() {
    let fx = fixture();
    let other = ed25519_dalek::SigningKey::from_bytes(&[77u8; 32]);
    let report = run(&fx, &sign_token_with(&other, "idp-1", &good_claims("x")));
    assert!(
        report.errors[0].contains("bad signature"),
        "{}",
        report.errors[0]
    );
    let report = run(&fx, &sign_token_with(&other, "idp-9", &good_claims("x")));
    assert!(
        report.errors[0].contains("matches kid \"idp-9\""),
        "{}",
        report.errors[0]
    );
    // A tampered payload under a valid signature.
    let token = sign_token(&good_claims("x"));
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let mut claims = good_claims("admin");
    claims["sub"] = json!("admin");
    parts[1] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        claims.to_string(),
    );
    let report = run(&fx, &parts.join("."));
    assert!(
        report.errors[0].contains("bad signature"),
        "{}",
        report.errors[0]
    );
}

#[test]
fn symmetric_tokens_are_refused() {
    let fx = fixture();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &good_claims("x"),
        &jsonwebtoken::EncodingKey::from_secret(b"secret").unwrap(),
    )
    .unwrap();
    let report = run(&fx, &token);
    assert!(
        report.errors[0].contains("algorithm \"HS256\" is refused"),
        "{}",
        report.errors[0]
    );
}

#[test]
fn rule_issuer_allowed() {
    let mut rec = provision("u");
    rec["issuer"] = json!("https://unknown.example");
    assert_refused(&fixture(), rec, "issuer_allowed");
}

#[test]
fn rule_email_domain() {
    let mut rec = provision("u");
    rec["claims"]["email"] = json!("u@evil.example");
    assert_refused(&fixture(), rec.clone(), "email_domain");
    rec["claims"].as_object_mut().unwrap().remove("email");
    assert_refused(&fixture(), rec, "email_domain");
    // An email the issuer marks unverified proves nothing about the domain.
    let mut c = good_claims("x");
    c["email_verified"] = json!(false);
    let fx = fixture();
    let report = run(&fx, &sign_token(&c));
    assert!(
        report.errors[0].contains("rule `email_domain`"),
        "{}",
        report.errors[0]
    );
}

/// A domain rule trusts an email only when the issuer says it verified it: an absent or
/// non-boolean `email_verified` is refused, and the refusal names what was missing.
#[test]
fn rule_email_domain_needs_email_verified_true() {
    let fx = fixture();
    let mut rec = provision_without_email_verified("u");
    let report = run(&fx, &rec.to_string());
    assert_eq!(report.batch_id, None);
    assert!(
        report.errors[0].contains("rule `email_domain`")
            && report.errors[0].contains("email_verified is absent"),
        "{}",
        report.errors[0]
    );
    rec["claims"]["email_verified"] = json!("true");
    let report = run(&fx, &rec.to_string());
    assert!(
        report.errors[0].contains("rule `email_domain`")
            && report.errors[0].contains("email_verified is \"true\", not the boolean true"),
        "{}",
        report.errors[0]
    );
    let mut c = good_claims("x");
    c.as_object_mut().unwrap().remove("email_verified");
    let report = run(&fx, &sign_token(&c));
    assert!(
        report.errors[0].contains("email_verified is absent"),
        "{}",
        report.errors[0]
    );
    assert!(queued_bodies(&fx).is_empty());
}

#[test]
fn require_email_verified_can_be_relaxed_per_issuer() {
    let fx = fixture();
    let text = std::fs::read_to_string(&fx.config_path).unwrap().replace(
        "allow_token_provision = true",
        "allow_token_provision = true\nrequire_email_verified = false",
    );
    std::fs::write(&fx.config_path, text).unwrap();
    let mut rec = provision_without_email_verified("u");
    let report = run(&fx, &rec.to_string());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // Relaxed means "absent is fine", never "false is fine".
    rec["claims"]["email_verified"] = json!(false);
    let report = run(&fx, &rec.to_string());
    assert!(
        report.errors[0].contains("rule `email_domain`"),
        "{:?}",
        report.errors
    );
}

fn provision_without_email_verified(sub: &str) -> serde_json::Value {
    let mut rec = provision(sub);
    rec["claims"]
        .as_object_mut()
        .unwrap()
        .remove("email_verified");
    rec
}

#[test]
fn rule_required_groups() {
    let mut rec = provision("u");
    rec["claims"]["groups"] = json!(["staff"]);
    assert_refused(&fixture(), rec, "required_groups");
}

#[test]
fn rule_subject_allow_list() {
    let fx = fixture();
    let rec = json!({"kind":"provision","issuer":"https://partner.example.org","subject":"p-3",
        "approver":"a","ticket_ref":"t","valid_until":unix_now() + 3600});
    assert_refused(&fx, rec.clone(), "subject_allow_list");
    let mut ok = rec;
    ok["subject"] = json!("p-1");
    assert!(run(&fx, &ok.to_string()).errors.is_empty());
}

#[test]
fn rule_approval() {
    let mut rec = provision("u");
    rec["approver"] = json!(" ");
    assert_refused(&fixture(), rec, "approval");
    let mut rec = provision("u");
    rec["ticket_ref"] = json!("");
    assert_refused(&fixture(), rec, "approval");
}

#[test]
fn rule_max_validity() {
    let mut rec = provision("u");
    rec["valid_until"] = json!(unix_now() + 91 * 86_400);
    assert_refused(&fixture(), rec.clone(), "max_validity");
    rec["valid_until"] = json!(unix_now() - 1);
    assert_refused(&fixture(), rec, "max_validity");
}

#[test]
fn rule_claim_type() {
    let mut rec = provision("u");
    rec["claims"]["name"] = json!({"first": "x"});
    assert_refused(&fixture(), rec, "claim_type");
}

#[test]
fn rule_size_limit() {
    let mut rec = provision("u");
    rec["claims"]["name"] = json!("n".repeat(600));
    assert_refused(&fixture(), rec, "size_limit");
}

#[test]
fn rule_token_provision() {
    let fx = Fixture::new("[link.udp]\ntarget = \"127.0.0.1:9\"", "");
    let text = std::fs::read_to_string(&fx.config_path).unwrap().replace(
        "allow_token_provision = true",
        "allow_token_provision = false",
    );
    std::fs::write(&fx.config_path, text).unwrap();
    let rec = json!({"kind":"id_token","token":sign_token(&good_claims("tp")),"grant":"provision","approver":"b","ticket_ref":"c"});
    assert_refused(&fx, rec, "token_provision");
}

#[test]
fn one_bad_record_means_nothing_is_queued() {
    let fx = fixture();
    let mut bad = provision("bad");
    bad["claims"]["groups"] = json!([]);
    let text = format!(
        "{}\n{}\n{}",
        provision_record("a"),
        bad,
        provision_record("c")
    );
    let report = run(&fx, &text);
    assert_eq!(report.batch_id, None);
    assert_eq!(report.errors.len(), 1);
    assert!(
        report.errors[0].starts_with("in.json#2: "),
        "{}",
        report.errors[0]
    );
    assert!(report.accepted.is_empty());
    assert!(queued_bodies(&fx).is_empty());
}
