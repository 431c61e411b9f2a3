//! Approval records: JSON objects, one per user, as a single object, an array, or JSON lines.
//!
//! ```json
//! {"kind":"provision","issuer":"https://login.example.com","subject":"248289761001",
//!  "claims":{"email":"jane@example.com","email_verified":true,"name":"Jane Doe","groups":["airlock-users"]},
//!  "approver":"alice@example.com","ticket_ref":"CHG-1042","valid_until":1767225600}
//! {"kind":"revoke","issuer":"...","subject":"...","approver":"...","ticket_ref":"...","reason":"left"}
//! {"kind":"login_ticket","issuer":"...","subject":"...","claims":{...},"approver":"...","ticket_ref":"..."}
//! {"kind":"id_token","token":"eyJ...","grant":"login_ticket"}
//! ```
//! A file that holds just a compact JWT (three base64url parts) is an `id_token` record
//! with grant `login_ticket`.

use airlock_protocol::message::Approval;
use serde::Deserialize;

use super::claims::{InputClaims, person_claims};
use super::jwt::JwtVerifier;
use super::{Candidate, IntakeError, Request};

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum RecordJson {
    Provision(ProvisionRecord),
    Revoke(RevokeRecord),
    LoginTicket(TicketRecord),
    IdToken(IdTokenRecord),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvisionRecord {
    issuer: String,
    subject: String,
    #[serde(default)]
    claims: InputClaims,
    approver: String,
    ticket_ref: String,
    approved_at: Option<u64>,
    valid_until: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRecord {
    issuer: String,
    subject: String,
    approver: String,
    ticket_ref: String,
    approved_at: Option<u64>,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketRecord {
    issuer: String,
    subject: String,
    #[serde(default)]
    claims: InputClaims,
    approver: String,
    #[serde(default)]
    ticket_ref: String,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Grant {
    #[default]
    LoginTicket,
    Provision,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdTokenRecord {
    token: String,
    #[serde(default)]
    grant: Grant,
    /// For grant=provision: who approved (required by policy); for tickets: default "id-token".
    approver: Option<String>,
    ticket_ref: Option<String>,
    valid_until: Option<u64>,
}

/// Reads every record of one input. Each record gives a candidate or its own error; `name`
/// is the file name (or "stdin") used in messages.
pub fn parse_input(
    name: &str,
    bytes: &[u8],
    max_record_bytes: usize,
    verifier: &JwtVerifier,
    now: u64,
) -> Vec<Result<Candidate, IntakeError>> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t.trim(),
        Err(e) => {
            return vec![Err(IntakeError::Json {
                source_name: name.to_string(),
                error: format!("not UTF-8 text: {e}"),
            })];
        }
    };
    if text.is_empty() {
        return vec![Err(IntakeError::Empty {
            source_name: name.to_string(),
        })];
    }
    if looks_like_jwt(text) {
        let record = IdTokenRecord {
            token: text.to_string(),
            grant: Grant::LoginTicket,
            approver: None,
            ticket_ref: None,
            valid_until: None,
        };
        let source = name.to_string();
        if text.len() > max_record_bytes {
            return vec![Err(too_large(source, text.len(), max_record_bytes))];
        }
        return vec![token_candidate(source, record, verifier, now)];
    }
    json_records(name, text, max_record_bytes)
        .into_iter()
        .map(|r| r.and_then(|(source, value)| to_candidate(source, value, verifier, now)))
        .collect()
}

fn looks_like_jwt(text: &str) -> bool {
    text.split('.').count() == 3
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn too_large(source_name: String, len: usize, max: usize) -> IntakeError {
    IntakeError::TooLarge {
        source_name,
        len,
        max,
    }
}

/// Splits the input into (record name, JSON value) pairs, checking each record's size.
fn json_records(
    name: &str,
    text: &str,
    max: usize,
) -> Vec<Result<(String, serde_json::Value), IntakeError>> {
    let mut out = Vec::new();
    let mut index = 0usize;
    let stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    let mut start = 0usize;
    let mut stream = stream;
    loop {
        let next = stream.next();
        let end = stream.byte_offset();
        match next {
            None => break,
            Some(Err(e)) => {
                index += 1;
                out.push(Err(IntakeError::Json {
                    source_name: format!("{name}#{index}"),
                    error: e.to_string(),
                }));
                break; // the rest of a broken stream cannot be framed
            }
            Some(Ok(serde_json::Value::Array(items))) => {
                for item in items {
                    index += 1;
                    let len = serde_json::to_string(&item).map(|s| s.len()).unwrap_or(0);
                    out.push(sized(format!("{name}#{index}"), item, len, max));
                }
            }
            Some(Ok(value)) => {
                index += 1;
                let len = end.saturating_sub(start);
                out.push(sized(format!("{name}#{index}"), value, len, max));
            }
        }
        start = end;
    }
    out
}

fn sized(
    source: String,
    value: serde_json::Value,
    len: usize,
    max: usize,
) -> Result<(String, serde_json::Value), IntakeError> {
    if len > max {
        return Err(too_large(source, len, max));
    }
    Ok((source, value))
}

fn to_candidate(
    source: String,
    value: serde_json::Value,
    verifier: &JwtVerifier,
    now: u64,
) -> Result<Candidate, IntakeError> {
    let record: RecordJson = serde_json::from_value(value).map_err(|e| IntakeError::Record {
        source_name: source.clone(),
        error: record_error(e),
    })?;
    let request = match record {
        RecordJson::Provision(r) => Request::Provision {
            approval: approval(r.approver, r.ticket_ref, r.approved_at, now),
            issuer: r.issuer,
            subject: r.subject,
            claims: r.claims,
            valid_until: Some(r.valid_until),
            from_token: false,
        },
        RecordJson::Revoke(r) => Request::Revoke {
            approval: approval(r.approver, r.ticket_ref, r.approved_at, now),
            issuer: r.issuer,
            subject: r.subject,
            reason: r.reason,
        },
        RecordJson::LoginTicket(r) => Request::LoginTicket {
            approval: approval(r.approver, r.ticket_ref, None, now),
            issuer: r.issuer,
            subject: r.subject,
            claims: r.claims,
        },
        RecordJson::IdToken(r) => return token_candidate(source, r, verifier, now),
    };
    Ok(Candidate { source, request })
}

/// serde's message for an internally tagged enum without a known tag is terse; say what is allowed.
fn record_error(e: serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.contains("missing field `kind`") || msg.contains("unknown variant") {
        format!("{msg} (kind must be one of provision, revoke, login_ticket, id_token)")
    } else {
        msg
    }
}

fn approval(approver: String, ticket_ref: String, approved_at: Option<u64>, now: u64) -> Approval {
    Approval {
        approver,
        approved_at: approved_at.unwrap_or(now),
        ticket_ref,
    }
}

fn token_candidate(
    source: String,
    record: IdTokenRecord,
    verifier: &JwtVerifier,
    now: u64,
) -> Result<Candidate, IntakeError> {
    let verified = verifier
        .verify(&record.token, now)
        .map_err(|error| IntakeError::Token {
            source_name: source.clone(),
            error,
        })?;
    let ticket_ref = record
        .ticket_ref
        .or(verified.jti.clone())
        .unwrap_or_default();
    let claims = person_claims(verified.payload);
    let request = match record.grant {
        Grant::LoginTicket => Request::LoginTicket {
            issuer: verified.issuer,
            subject: verified.subject,
            claims,
            approval: approval(
                record.approver.unwrap_or_else(|| "id-token".to_string()),
                ticket_ref,
                None,
                now,
            ),
        },
        Grant::Provision => Request::Provision {
            issuer: verified.issuer,
            subject: verified.subject,
            claims,
            approval: approval(record.approver.unwrap_or_default(), ticket_ref, None, now),
            valid_until: record.valid_until,
            from_token: true,
        },
    };
    Ok(Candidate { source, request })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Result<Candidate, IntakeError>> {
        parse_input("t.json", text.as_bytes(), 4096, &JwtVerifier::empty(), 1000)
    }

    #[test]
    fn json_lines_give_one_candidate_each() {
        let out = parse(
            r#"{"kind":"revoke","issuer":"i","subject":"s","approver":"a","ticket_ref":"t"}
               {"kind":"login_ticket","issuer":"i","subject":"s2","approver":"a"}"#,
        );
        assert_eq!(out.len(), 2);
        let first = out[0].as_ref().unwrap();
        assert_eq!(first.source, "t.json#1");
        assert_eq!(first.request.kind(), "revoke");
        assert_eq!(out[1].as_ref().unwrap().request.identity(), ("i", "s2"));
    }

    #[test]
    fn arrays_are_flattened() {
        let out = parse(
            r#"[{"kind":"revoke","issuer":"i","subject":"a","approver":"a","ticket_ref":"t"},
                {"kind":"revoke","issuer":"i","subject":"b","approver":"a","ticket_ref":"t"}]"#,
        );
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|r| r.is_ok()));
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        let out = parse(
            r#"{"kind":"revoke","issuer":"i","subject":"s","approver":"a","ticket_ref":"t","x":1}"#,
        );
        let msg = out[0].as_ref().unwrap_err().to_string();
        assert!(msg.contains("unknown field `x`"), "{msg}");
        let out = parse(r#"{"kind":"promote","issuer":"i"}"#);
        let msg = out[0].as_ref().unwrap_err().to_string();
        assert!(msg.contains("kind must be one of"), "{msg}");
    }

    #[test]
    fn malformed_json_names_the_record() {
        let out = parse(r#"{"kind":"revoke"} {"kind": "#);
        assert_eq!(out.len(), 2);
        let msg = out[1].as_ref().unwrap_err().to_string();
        assert!(msg.starts_with("t.json#2: malformed JSON"), "{msg}");
    }

    #[test]
    fn wrong_types_are_refused() {
        let out = parse(
            r#"{"kind":"provision","issuer":"i","subject":"s","approver":"a","ticket_ref":"t","valid_until":"soon"}"#,
        );
        let msg = out[0].as_ref().unwrap_err().to_string();
        assert!(msg.contains("invalid type"), "{msg}");
    }

    #[test]
    fn oversized_records_are_refused() {
        let big = "x".repeat(5000);
        let out = parse(&format!(
            r#"{{"kind":"revoke","issuer":"i","subject":"{big}","approver":"a","ticket_ref":"t"}}"#
        ));
        assert!(matches!(out[0], Err(IntakeError::TooLarge { .. })));
    }

    #[test]
    fn empty_input_is_an_error() {
        assert!(matches!(parse("  \n")[0], Err(IntakeError::Empty { .. })));
    }

    #[test]
    fn a_bare_jwt_is_an_id_token_record() {
        let out = parse("eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJ4In0.c2ln");
        // No trusted issuers are configured, so the token is refused as foreign.
        let msg = out[0].as_ref().unwrap_err().to_string();
        assert!(msg.contains("ID token refused"), "{msg}");
    }
}
