//! Size limits on every field and on the whole frame.
//!
//! They bound what a sender may seal and what a receiver will allocate for, before and
//! after authentication. Changing one is a protocol change: document it in docs/protocol.md.

use thiserror::Error;

/// Identifiers: key ids, claim names.
pub const MAX_KID: usize = 64;
/// Ordinary text fields: issuer, subject, claim values, approver, reasons.
pub const MAX_TEXT: usize = 512;
/// Entries in `groups`.
pub const MAX_GROUPS: usize = 64;
/// Entries in `extra` claims.
pub const MAX_EXTRA_CLAIMS: usize = 32;
/// An IdP discovery document or JWKS carried by `IdpMirror`.
pub const MAX_DOCUMENT: usize = 24 * 1024;
/// A CBOR-encoded envelope.
pub const MAX_ENVELOPE: usize = 56 * 1024;
/// A sealed frame (COSE_Encrypt0 bytes): envelope plus COSE overhead.
pub const MAX_SEALED_FRAME: usize = 60 * 1024;

/// The most memory a LoginTicket's argon2id hash may ask for, in KiB (64 MiB). The sender
/// uses 19 MiB; the receiver runs at most four verifications at once.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 64 * 1024;
/// The most passes a LoginTicket's argon2id hash may ask for.
pub const MAX_ARGON2_PASSES: u32 = 8;
/// The most lanes a LoginTicket's argon2id hash may ask for.
pub const MAX_ARGON2_LANES: u32 = 4;

/// A size rule was broken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitError {
    #[error("{field} is {len} bytes long; at most {max} are allowed")]
    /// A field is longer than its limit.
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    #[error("{0} must not be empty")]
    /// A required field is empty (its name).
    Empty(&'static str),
    #[error("{field} is not acceptable: {detail}")]
    /// A field's value is out of its allowed range (an argon2 cost, for one).
    Cost {
        /// The field.
        field: &'static str,
        /// What is wrong and what is allowed.
        detail: String,
    },
}

/// Checks an argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) for its
/// algorithm and for cost parameters within [`MAX_ARGON2_MEMORY_KIB`], [`MAX_ARGON2_PASSES`]
/// and [`MAX_ARGON2_LANES`], so that a hash from a frame can never make the receiver
/// allocate gigabytes or spin for minutes. Parameters left out take argon2's defaults
/// (19 MiB, 2 passes, 1 lane), which are within the bounds.
pub fn check_argon2_phc(field: &'static str, phc: &str) -> Result<(), LimitError> {
    let cost = |detail: String| LimitError::Cost { field, detail };
    let mut parts = phc.split('$');
    if parts.next() != Some("") || parts.next() != Some("argon2id") {
        return Err(cost(
            "it must be an argon2id PHC string ($argon2id$...)".into(),
        ));
    }
    for part in parts.filter(|p| p.contains('=')) {
        for pair in part.split(',') {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(cost(format!("parameter `{pair}` is not name=value")));
            };
            let max = match name {
                "m" => MAX_ARGON2_MEMORY_KIB,
                "t" => MAX_ARGON2_PASSES,
                "p" => MAX_ARGON2_LANES,
                _ => continue,
            };
            let got: u32 = value
                .parse()
                .map_err(|_| cost(format!("parameter {name}={value} is not a number")))?;
            if got > max || got == 0 {
                return Err(cost(format!(
                    "argon2id parameter {name}={got} is outside 1..={max} \
                     (memory in KiB, passes, lanes)"
                )));
            }
        }
    }
    Ok(())
}

pub(crate) fn check_str(field: &'static str, value: &str, max: usize) -> Result<(), LimitError> {
    check_len(field, value.len(), max)
}

pub(crate) fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), LimitError> {
    if len > max {
        return Err(LimitError::TooLong { field, len, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_costs_are_bounded() {
        let ok = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert_eq!(check_argon2_phc("code_hash", ok), Ok(()));
        for bad in [
            "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19456,t=4000000,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19456,t=2,p=255$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=x,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "plain text",
        ] {
            let err = check_argon2_phc("code_hash", bad).unwrap_err().to_string();
            assert!(
                err.starts_with("code_hash is not acceptable"),
                "{bad}: {err}"
            );
        }
    }
}
