//! The one policy filter every intake path goes through.
//!
//! Rules, each with a stable name that appears in the rejection:
//! - `issuer_allowed`: the issuer has a `[[policy.issuers]]` entry.
//! - `subject_allow_list`: if the issuer lists subjects, the subject is one of them.
//! - `email_domain`: if the issuer lists email domains, the email claim is in one (and not
//!   marked unverified).
//! - `required_groups`: the user is in every required group.
//! - `approval`: Provision and Revoke name an approver and a ticket reference.
//! - `token_provision`: an ID token may become a Provision only if the issuer allows it.
//! - `max_validity`: a Provision's valid_until is in the future and within max_validity_days.
//! - `claim_type`: an allow-listed claim has the type the protocol carries.
//! - `size_limit`: the resulting message fits the protocol's size limits.
//!
//! Key changes (`airlock-sender keys`) have rules of their own: [`admit_key_change`].
//!
//! The claim allow-list is a filter, not a rule: claims not on it are dropped (reported).
//! Revocations pass with only `issuer_allowed` and `approval`: taking access away must not
//! be blocked by the rules that grant it.

use std::collections::BTreeMap;

use airlock_protocol::message::{
    Approval, Body, Claims, ENVELOPE_VERSION, Envelope, Provision, Revoke,
};
use thiserror::Error;

use crate::config::{IssuerPolicy, PolicyConfig};
use crate::intake::claims::{self, InputClaims};
use crate::intake::{Candidate, Request};

/// A record the policy refused; nothing of it is queued.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{source_name}: rejected by policy rule `{rule}`: {detail}")]
pub struct Rejection {
    pub source_name: String,
    pub rule: &'static str,
    pub detail: String,
}

/// A login ticket that passed policy; the transfer code is made from it in [`crate::ticket`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRequest {
    pub issuer: String,
    pub subject: String,
    pub claims: Claims,
    pub approval: Approval,
    pub expires_at: u64,
}

/// What passed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    Provision(Provision),
    Revoke(Revoke),
    Ticket(TicketRequest),
}

/// A candidate that passed, with the claims the allow-list dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub source: String,
    pub accepted: Accepted,
    pub dropped_claims: Vec<String>,
}

pub struct Policy {
    config: PolicyConfig,
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Self {
        Self { config }
    }

    /// Applies every rule to one candidate. `now` is unix seconds.
    pub fn admit(&self, candidate: Candidate, now: u64) -> Result<Admitted, Rejection> {
        let source = candidate.source;
        let reject = |rule: &'static str, detail: String| Rejection {
            source_name: source.clone(),
            rule,
            detail,
        };
        let (issuer, subject) = candidate.request.identity();
        let rules = self.issuer_rules(issuer).ok_or_else(|| {
            reject(
                "issuer_allowed",
                format!("issuer {issuer:?} is not in [[policy.issuers]]"),
            )
        })?;
        if issuer.is_empty() || subject.is_empty() {
            return Err(reject(
                "issuer_allowed",
                "issuer and subject must not be empty".into(),
            ));
        }
        let (accepted, dropped) = match candidate.request {
            Request::Revoke {
                issuer,
                subject,
                approval,
                reason,
            } => {
                check_approval(&approval).map_err(|d| reject("approval", d))?;
                let revoke = Revoke {
                    issuer,
                    subject,
                    approval,
                    reason,
                };
                (Accepted::Revoke(revoke), Vec::new())
            }
            Request::Provision {
                issuer,
                subject,
                claims,
                approval,
                valid_until,
                from_token,
            } => {
                if from_token && !rules.allow_token_provision {
                    return Err(reject(
                        "token_provision",
                        format!(
                            "ID tokens of {issuer:?} may only become login tickets; set allow_token_provision = true to change that"
                        ),
                    ));
                }
                check_identity_rules(rules, &subject, &claims).map_err(|(r, d)| reject(r, d))?;
                check_approval(&approval).map_err(|d| reject("approval", d))?;
                let valid_until = self
                    .check_validity(valid_until, now)
                    .map_err(|d| reject("max_validity", d))?;
                let (claims, dropped) = self
                    .filter_claims(claims)
                    .map_err(|d| reject("claim_type", d))?;
                let p = Provision {
                    issuer,
                    subject,
                    claims,
                    approval,
                    valid_until,
                };
                (Accepted::Provision(p), dropped)
            }
            Request::LoginTicket {
                issuer,
                subject,
                claims,
                approval,
            } => {
                check_identity_rules(rules, &subject, &claims).map_err(|(r, d)| reject(r, d))?;
                if approval.approver.is_empty() {
                    return Err(reject("approval", "approver must not be empty".into()));
                }
                let (claims, dropped) = self
                    .filter_claims(claims)
                    .map_err(|d| reject("claim_type", d))?;
                let t = TicketRequest {
                    issuer,
                    subject,
                    claims,
                    approval,
                    expires_at: now.saturating_add(self.config.ticket_ttl_secs),
                };
                (Accepted::Ticket(t), dropped)
            }
        };
        check_size(&accepted).map_err(|d| reject("size_limit", d))?;
        Ok(Admitted {
            source,
            accepted,
            dropped_claims: dropped,
        })
    }

    fn issuer_rules(&self, issuer: &str) -> Option<&IssuerPolicy> {
        self.config.issuers.iter().find(|p| p.issuer == issuer)
    }

    fn check_validity(&self, valid_until: Option<u64>, now: u64) -> Result<u64, String> {
        let max = now.saturating_add(self.config.max_validity_days.saturating_mul(86_400));
        let v = valid_until.unwrap_or(max);
        if v <= now {
            return Err(format!("valid_until {v} is not in the future (now {now})"));
        }
        if v > max {
            return Err(format!(
                "valid_until {v} is more than max_validity_days = {} ahead (latest allowed {max})",
                self.config.max_validity_days
            ));
        }
        Ok(v)
    }

    /// Keeps only allow-listed claims and types them; returns the dropped names.
    fn filter_claims(&self, input: InputClaims) -> Result<(Claims, Vec<String>), String> {
        let mut out = Claims::default();
        let mut extra = BTreeMap::new();
        let mut dropped = Vec::new();
        for (name, value) in input {
            if !self.config.claim_allow_list.iter().any(|a| a == &name) {
                dropped.push(name);
                continue;
            }
            set_claim(&mut out, &mut extra, &name, value)?;
        }
        out.extra = extra;
        Ok((out, dropped))
    }
}

fn set_claim(
    out: &mut Claims,
    extra: &mut BTreeMap<String, String>,
    name: &str,
    value: serde_json::Value,
) -> Result<(), String> {
    use serde_json::Value;
    let text = |v: Value| match v {
        Value::String(s) => Ok(s),
        other => Err(format!("claim `{name}` must be a string, got {other}")),
    };
    match name {
        "email" => out.email = Some(text(value)?),
        "name" => out.name = Some(text(value)?),
        "given_name" => out.given_name = Some(text(value)?),
        "family_name" => out.family_name = Some(text(value)?),
        "preferred_username" => out.preferred_username = Some(text(value)?),
        "email_verified" => match value {
            Value::Bool(b) => out.email_verified = Some(b),
            other => {
                return Err(format!(
                    "claim `email_verified` must be true or false, got {other}"
                ));
            }
        },
        "groups" => match value {
            Value::Array(items) => {
                for g in items {
                    out.groups.push(text(g)?);
                }
            }
            Value::String(one) => out.groups.push(one),
            other => {
                return Err(format!(
                    "claim `groups` must be a list of strings, got {other}"
                ));
            }
        },
        _ => {
            let v = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "claim `{name}` must be a string, number or boolean, got {other}"
                    ));
                }
            };
            extra.insert(name.to_string(), v);
        }
    }
    Ok(())
}

fn check_identity_rules(
    rules: &IssuerPolicy,
    subject: &str,
    input: &InputClaims,
) -> Result<(), (&'static str, String)> {
    if !rules.subjects.is_empty() && !rules.subjects.iter().any(|s| s == subject) {
        return Err((
            "subject_allow_list",
            format!(
                "subject {subject:?} is not in the subject allow-list of {:?}",
                rules.issuer
            ),
        ));
    }
    if !rules.email_domains.is_empty() {
        let email = claims::email(input).ok_or((
            "email_domain",
            "an email claim is required by this issuer's email_domains rule".to_string(),
        ))?;
        let domain = email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
        let ok = domain.as_deref().is_some_and(|d| {
            rules
                .email_domains
                .iter()
                .any(|a| a.eq_ignore_ascii_case(d))
        });
        if !ok {
            return Err((
                "email_domain",
                format!(
                    "email {email:?} is not in an allowed domain ({})",
                    rules.email_domains.join(", ")
                ),
            ));
        }
        check_email_verified(rules, email, input.get("email_verified"))
            .map_err(|d| ("email_domain", d))?;
    }
    let groups = claims::groups(input);
    let missing: Vec<&str> = rules
        .required_groups
        .iter()
        .map(String::as_str)
        .filter(|g| !groups.contains(g))
        .collect();
    if !missing.is_empty() {
        return Err((
            "required_groups",
            format!("not a member of required group(s) {}", missing.join(", ")),
        ));
    }
    Ok(())
}

/// An email proves a domain only if its issuer says it verified it: `email_verified` must be
/// the boolean `true` (an issuer with `require_email_verified = false` may leave it out).
fn check_email_verified(
    rules: &IssuerPolicy,
    email: &str,
    verified: Option<&serde_json::Value>,
) -> Result<(), String> {
    use serde_json::Value;
    match verified {
        Some(Value::Bool(true)) => Ok(()),
        None if !rules.require_email_verified => Ok(()),
        Some(Value::Bool(false)) => Err(format!(
            "email {email:?} is marked unverified by its issuer (email_verified is false)"
        )),
        None => Err(format!(
            "email {email:?} cannot prove its domain: email_verified is absent, and the email_domains rule needs email_verified = true (set require_email_verified = false for {:?} only if it verifies every address and never sends the claim)",
            rules.issuer
        )),
        Some(other) => Err(format!(
            "email {email:?} cannot prove its domain: email_verified is {other}, not the boolean true"
        )),
    }
}

fn check_approval(a: &Approval) -> Result<(), String> {
    if a.approver.trim().is_empty() {
        return Err("approver must name the person who approved".into());
    }
    if a.ticket_ref.trim().is_empty() {
        return Err("ticket_ref must reference the approval ticket".into());
    }
    Ok(())
}

/// A signer key change an operator asked for (`airlock-sender keys`), as the daemon signing
/// with `own_kid` would send it. Rules:
/// - `kid_format`: a signer kid is 16 lowercase hex digits (as `keygen` and `trust list`
///   print it).
/// - `key_retire_self`: the key the sender signs with cannot retire itself: every later frame
///   would be refused. Announce the successor, switch to it, then retire the old kid.
/// - `key_announce_self`: announcing the key that signs the announcement vouches for nothing.
/// - `size_limit`: the message fits the protocol's size limits.
pub fn admit_key_change(source: &str, body: &Body, own_kid: &str) -> Result<(), Rejection> {
    use airlock_protocol::message::{KeyAnnounce, KeyRetire};
    let reject = |rule: &'static str, detail: String| Rejection {
        source_name: source.to_string(),
        rule,
        detail,
    };
    match body {
        Body::KeyRetire(KeyRetire::Signer { kid }) => {
            let well_formed = kid.len() == 16
                && kid
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !well_formed {
                return Err(reject(
                    "kid_format",
                    format!(
                        "{kid:?} is not a signer kid: 16 lowercase hex digits, as `airlock-receiver trust list` prints them"
                    ),
                ));
            }
            if kid == own_kid {
                return Err(reject(
                    "key_retire_self",
                    format!(
                        "{kid} is the key the sender signs with: retiring it would make the receiver refuse every later frame; \
                         announce its successor (`keys announce`), switch [keys] signer to it and restart, then retire {kid}"
                    ),
                ));
            }
        }
        Body::KeyAnnounce(KeyAnnounce::Signer { kid, .. }) if kid == own_kid => {
            return Err(reject(
                "key_announce_self",
                format!(
                    "{kid} is the key the sender signs with already; announce the new key's public key file (signer.pub.pem of `keygen`)"
                ),
            ));
        }
        _ => {}
    }
    check_body_size(body.clone()).map_err(|d| reject("size_limit", d))
}

/// An argon2id PHC string as long as the ones `ticket::hash_secret` makes (16-byte salt,
/// 32-byte hash), for the size check of a ticket before its code exists.
const CODE_HASH_SHAPE: &str = "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Runs the protocol's size rules on the message this would become.
fn check_size(accepted: &Accepted) -> Result<(), String> {
    let body = match accepted {
        Accepted::Provision(p) => Body::Provision(p.clone()),
        Accepted::Revoke(r) => Body::Revoke(r.clone()),
        // The code hash is added later and checked again then; the rest is checked now,
        // with a stand-in of the real hash's shape (the protocol checks that it is argon2id).
        Accepted::Ticket(t) => Body::LoginTicket(airlock_protocol::message::LoginTicket {
            locator: [0; 16],
            code_hash: CODE_HASH_SHAPE.into(),
            issuer: t.issuer.clone(),
            subject: t.subject.clone(),
            claims: t.claims.clone(),
            approval: t.approval.clone(),
            expires_at: t.expires_at,
        }),
    };
    check_body_size(body)
}

/// Size rules of one body, as the protocol enforces them when sealing.
pub fn check_body_size(body: Body) -> Result<(), String> {
    let envelope = Envelope {
        v: ENVELOPE_VERSION,
        sender_kid: "0000000000000000".into(),
        seq: 1,
        prev: [0; 32],
        issued_at: 0,
        body,
    };
    envelope.validate().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_name_the_rule_they_break() {
        use airlock_protocol::message::{KeyAnnounce, KeyRetire};
        let own = "0123456789abcdef";
        let retire = |kid: &str| {
            Body::KeyRetire(KeyRetire::Signer {
                kid: kid.to_string(),
            })
        };
        let rule = |b: &Body| admit_key_change("t", b, own).err().map(|r| r.rule);
        assert_eq!(rule(&retire("fedcba9876543210")), None);
        assert_eq!(rule(&retire(own)), Some("key_retire_self"));
        assert_eq!(rule(&retire("0123456789ABCDEF")), Some("kid_format"));
        assert_eq!(rule(&retire("short")), Some("kid_format"));
        let announce = |kid: &str| {
            Body::KeyAnnounce(KeyAnnounce::Signer {
                kid: kid.to_string(),
                public_key: [1; 32],
                not_before: 0,
            })
        };
        assert_eq!(rule(&announce(own)), Some("key_announce_self"));
        assert_eq!(rule(&announce("fedcba9876543210")), None);
    }

    #[test]
    fn the_code_hash_stand_in_has_the_shape_of_a_real_one() {
        let real = crate::ticket::hash_secret("a secret").unwrap();
        assert_eq!(CODE_HASH_SHAPE.len(), real.len());
        assert_eq!(
            airlock_protocol::limits::check_argon2_phc("code_hash", CODE_HASH_SHAPE),
            Ok(())
        );
    }
}
