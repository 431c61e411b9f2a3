//! Transfer codes, receiver side: a COPY of `sender/src/transfer_code.rs` (parse, locator,
//! secret) until the lead moves the one definition into the protocol crate. Keep in sync.
//!
//! # Format
//!
//! 25 characters of Crockford base32 (`0-9 A-Z` without `I L O U`), shown as five groups of
//! five: `7KQ2M-X4HDN-R8WPA-3FZTC-9JB6E`.
//! - group 1 (5 chars, 25 bits): the locator group. The ticket's 16-byte `locator` is
//!   `SHA-256("airlock-transfer-code-locator-v1\0" || group1)[..16]`, so the receiver finds
//!   the ticket in O(1). It is not secret; different tickets may share a locator (2^25 values),
//!   so the receiver keeps a small bucket per locator and tries each ticket in it.
//! - characters 6..24 (19 chars, 95 bits): the secret. Only an argon2id hash of these 19
//!   characters (canonical upper case ASCII) crosses the diode.
//! - character 25: a check character, Luhn mod 32 over the 24 before it. It catches every
//!   single mistyped character and every swap of two neighbours except `0`<->`Z`, so a typo
//!   is reported at once instead of costing an attempt and an argon2 verification.
//!
//! # Input normalisation
//!
//! Case is ignored; spaces, tabs and `-` are ignored; `O` reads as `0`, `I` and `L` as `1`.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// The 32 symbols, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters per displayed group.
pub const GROUP_LEN: usize = 5;
/// Characters in a code, check character included.
pub const CODE_LEN: usize = 25;
/// Characters of the secret part.
pub const SECRET_LEN: usize = CODE_LEN - GROUP_LEN - 1;
/// Domain label of the locator hash.
pub const LOCATOR_LABEL: &[u8] = b"airlock-transfer-code-locator-v1\0";

/// What was wrong with a typed code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodeError {
    #[error(
        "character {ch:?} at position {position} is not part of a transfer code (letters and digits except U)"
    )]
    BadCharacter { ch: char, position: usize },
    #[error("a transfer code has 25 letters and digits; this one has {got}")]
    Length { got: usize },
    #[error("the code has a typo: check it against the one you were given")]
    Check,
}

/// A parsed, valid transfer code (24 symbol values; the check character is recomputed).
#[derive(Clone, PartialEq, Eq)]
pub struct TransferCode {
    values: [u8; CODE_LEN - 1],
}

impl std::fmt::Debug for TransferCode {
    // The secret never goes to logs through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TransferCode({}-…)", self.locator_group())
    }
}

impl TransferCode {
    /// Parses what a person typed; see the module docs for the normalisation.
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        let values = normalise(input)?;
        if values.len() != CODE_LEN {
            return Err(CodeError::Length { got: values.len() });
        }
        if luhn_sum(&values, 1) % 32 != 0 {
            return Err(CodeError::Check);
        }
        let mut out = [0u8; CODE_LEN - 1];
        out.copy_from_slice(&values[..CODE_LEN - 1]);
        Ok(Self { values: out })
    }

    /// The first group, canonical upper case.
    pub fn locator_group(&self) -> String {
        symbols(&self.values[..GROUP_LEN])
    }

    /// The 19 secret characters, canonical upper case: the argon2id input.
    pub fn secret(&self) -> String {
        symbols(&self.values[GROUP_LEN..])
    }

    /// The 16-byte locator that crosses with the ticket.
    pub fn locator(&self) -> [u8; 16] {
        locator_for_group(&self.locator_group())
    }
}

/// Locator of a canonical first group.
pub fn locator_for_group(group: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(LOCATOR_LABEL);
    h.update(group.as_bytes());
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Maps typed characters to symbol values, skipping separators.
fn normalise(input: &str) -> Result<Vec<u8>, CodeError> {
    let mut out = Vec::with_capacity(CODE_LEN);
    for (position, ch) in input.chars().enumerate() {
        if ch == '-' || ch.is_whitespace() {
            continue;
        }
        let canonical = match ch.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        let value = ALPHABET
            .iter()
            .position(|&a| char::from(a) == canonical)
            .ok_or(CodeError::BadCharacter { ch, position })?;
        out.push(value as u8);
        if out.len() > CODE_LEN {
            // Longer input cannot become valid; stop before reading all of it.
            return Err(CodeError::Length {
                got: input.chars().filter(|c| c.is_ascii_alphanumeric()).count(),
            });
        }
    }
    Ok(out)
}

fn symbols(values: &[u8]) -> String {
    values
        .iter()
        .map(|&v| char::from(ALPHABET[usize::from(v & 31)]))
        .collect()
}

/// Luhn mod N (N = 32) sum, the rightmost value weighted by `first_factor`.
fn luhn_sum(values: &[u8], first_factor: u32) -> u32 {
    let mut factor = first_factor;
    let mut sum = 0u32;
    for &v in values.iter().rev() {
        let addend = factor * u32::from(v);
        sum += addend / 32 + addend % 32;
        factor = if factor == 2 { 1 } else { 2 };
    }
    sum
}

/// The 25-character code (no dashes) for 24 symbol values: tests and demos build codes with it.
pub fn code_text(values24: &[u8; CODE_LEN - 1]) -> String {
    let remainder = luhn_sum(values24, 2) % 32;
    let check = ((32 - remainder) % 32) as u8;
    let mut all = values24.to_vec();
    all.push(check);
    symbols(&all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_sender_shows() {
        let v: [u8; 24] = core::array::from_fn(|i| (i * 7 % 32) as u8);
        let shown = code_text(&v);
        let c = TransferCode::parse(&shown.to_lowercase()).unwrap();
        assert_eq!(c.locator_group(), &shown[..5]);
        assert_eq!(c.secret(), &shown[5..24]);
        assert_eq!(c.locator(), locator_for_group(&shown[..5]));
        let mut typo = shown.into_bytes();
        typo[7] = if typo[7] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            TransferCode::parse(&String::from_utf8(typo).unwrap()),
            Err(CodeError::Check)
        );
        assert!(matches!(
            TransferCode::parse("short"),
            Err(CodeError::Length { got: 5 })
        ));
    }
}
