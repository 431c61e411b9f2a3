//! Transfer codes for just-in-time login tickets: the one definition of the format.
//!
//! The sender generates codes and ferries their hash; the receiver parses what a person
//! types and finds the ticket by its locator. Both use this module.
//!
//! # Format
//!
//! 25 characters of Crockford base32 (`0-9 A-Z` without `I L O U`), shown as five groups of
//! five: `7KQ2M-X4HDN-R8WPA-3FZTC-9JB6E`.
//! - groups 1 and 2 (10 chars, 50 bits): the locator. The ticket's 16-byte `locator` is
//!   `SHA-256("airlock-transfer-code-locator-v1\0" || first 10 chars)[..16]`, so the receiver
//!   finds the ticket in O(1). It is not secret; with 2^50 values two live tickets
//!   practically never share one.
//! - characters 11..24 (14 chars, 70 bits): the secret. Only an argon2id hash of these 14
//!   characters (canonical upper case ASCII) crosses the diode.
//! - character 25: a check character, Luhn mod 32 over the 24 before it. It catches every
//!   single mistyped character and every swap of two neighbours except `0`<->`Z`, so a typo
//!   is reported at once instead of costing an attempt and an argon2 verification.
//!
//! # Input normalisation
//!
//! Case is ignored; spaces, tabs and `-` are ignored; `O` reads as `0`, `I` and `L` as `1`.

use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The 32 symbols, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters per displayed group.
pub const GROUP_LEN: usize = 5;
/// Characters in a code, check character included.
pub const CODE_LEN: usize = 25;
/// Characters of the locator part (the first two groups).
pub const LOCATOR_LEN: usize = 2 * GROUP_LEN;
/// Characters of the secret part.
pub const SECRET_LEN: usize = CODE_LEN - LOCATOR_LEN - 1;
/// Domain label of the locator hash.
pub const LOCATOR_LABEL: &[u8] = b"airlock-transfer-code-locator-v1\0";

/// What was wrong with a typed code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodeError {
    #[error(
        "character {ch:?} at position {position} is not part of a transfer code (letters and digits except U)"
    )]
    /// A character outside the code alphabet.
    BadCharacter {
        /// The character.
        ch: char,
        /// Its position, from 0.
        position: usize,
    },
    #[error("a transfer code has 25 letters and digits; this one has {got}")]
    /// Too few or too many characters.
    Length {
        /// How many were given.
        got: usize,
    },
    #[error("the code has a typo: check it against the one you were given")]
    /// The check character does not match: a typo.
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
    /// A fresh random code (120 random bits: 50 locator + 70 secret).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut values = [0u8; CODE_LEN - 1];
        let mut bytes = [0u8; CODE_LEN - 1];
        rng.fill_bytes(&mut bytes);
        for (v, b) in values.iter_mut().zip(bytes) {
            *v = b & 31; // 256 is a multiple of 32: uniform
        }
        Self { values }
    }

    /// Parses what a person typed; see the module docs for the normalisation.
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        let values = normalise(input)?;
        if values.len() != CODE_LEN {
            return Err(CodeError::Length { got: values.len() });
        }
        if !luhn_sum(&values, 1).is_multiple_of(32) {
            return Err(CodeError::Check);
        }
        let mut out = [0u8; CODE_LEN - 1];
        out.copy_from_slice(&values[..CODE_LEN - 1]);
        Ok(Self { values: out })
    }

    /// The code as shown to people: five groups of five, check character last.
    pub fn display(&self) -> String {
        let mut all: Vec<u8> = self.values.to_vec();
        all.push(check_value(&self.values));
        let text = symbols(&all);
        let groups: Vec<&str> = (0..CODE_LEN / GROUP_LEN)
            .filter_map(|g| text.get(g * GROUP_LEN..(g + 1) * GROUP_LEN))
            .collect();
        groups.join("-")
    }

    /// The locator part (first two groups), canonical upper case.
    pub fn locator_group(&self) -> String {
        symbols(&self.values[..LOCATOR_LEN])
    }

    /// The 14 secret characters, canonical upper case: the argon2id input.
    pub fn secret(&self) -> String {
        symbols(&self.values[LOCATOR_LEN..])
    }

    /// The 16-byte locator that crosses with the ticket.
    pub fn locator(&self) -> [u8; 16] {
        locator_for_group(&self.locator_group())
    }
}

/// Locator of a canonical locator part.
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

/// The check value for the 24 leading values.
fn check_value(values: &[u8]) -> u8 {
    let remainder = luhn_sum(values, 2) % 32;
    ((32 - remainder) % 32) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn code_from_seed(seed: u64) -> TransferCode {
        TransferCode::generate(&mut rand::rngs::StdRng::seed_from_u64(seed))
    }

    #[test]
    fn display_shape() {
        let shown = code_from_seed(1).display();
        assert_eq!(shown.len(), 29);
        assert_eq!(shown.split('-').count(), 5);
        assert!(shown.split('-').all(|g| g.len() == 5));
    }

    #[test]
    fn known_errors() {
        assert_eq!(
            TransferCode::parse("ABC"),
            Err(CodeError::Length { got: 3 })
        );
        assert!(matches!(
            TransferCode::parse("ABCDE-FGHJK-MNPQR-STVWX-YZ01U"),
            Err(CodeError::BadCharacter { ch: 'U', .. })
        ));
        assert!(matches!(
            TransferCode::parse("ABCDE-FGHJK-MNPQR-STVWX-YZ0!"),
            Err(CodeError::BadCharacter { ch: '!', .. })
        ));
    }

    #[test]
    fn locator_is_fixed_by_spec() {
        // Pinned so that a change of derivation is noticed (the receiver must match).
        let l = locator_for_group("7KQ2M");
        let mut h = Sha256::new();
        h.update(b"airlock-transfer-code-locator-v1\x007KQ2M");
        assert_eq!(&l[..], &h.finalize()[..16]);
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = code_from_seed(3);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(&c.secret()));
    }

    proptest! {
        #[test]
        fn roundtrip(seed in any::<u64>()) {
            let c = code_from_seed(seed);
            let parsed = TransferCode::parse(&c.display()).unwrap();
            prop_assert_eq!(&parsed, &c);
            prop_assert_eq!(parsed.secret().len(), SECRET_LEN);
            prop_assert_eq!(parsed.locator(), locator_for_group(&c.display().replace('-', "")[..LOCATOR_LEN]));
        }

        #[test]
        fn sloppy_typing_is_normalised(seed in any::<u64>(), spaces in proptest::collection::vec(0usize..30, 0..6)) {
            let c = code_from_seed(seed);
            let mut typed: String = c.display().to_lowercase().replace('0', "o").replace('1', "l").replace('-', "");
            for s in spaces {
                let at = s.min(typed.len());
                typed.insert(at, if s % 2 == 0 { ' ' } else { '-' });
            }
            prop_assert_eq!(TransferCode::parse(&typed).unwrap(), c);
        }

        #[test]
        fn every_single_substitution_is_caught(seed in any::<u64>(), pos in 0usize..CODE_LEN, delta in 1u8..32) {
            let shown: Vec<u8> = code_from_seed(seed).display().replace('-', "").into_bytes();
            let mut typo = shown.clone();
            let value = ALPHABET.iter().position(|&a| a == shown[pos]).unwrap() as u8;
            typo[pos] = ALPHABET[usize::from((value + delta) % 32)];
            let typo = String::from_utf8(typo).unwrap();
            prop_assert_eq!(TransferCode::parse(&typo), Err(CodeError::Check));
        }

        #[test]
        fn neighbour_swaps_are_caught(seed in any::<u64>(), pos in 0usize..CODE_LEN - 1) {
            let shown: Vec<u8> = code_from_seed(seed).display().replace('-', "").into_bytes();
            let (a, b) = (shown[pos], shown[pos + 1]);
            // Luhn mod 32 misses exactly the 0<->Z swap; identical neighbours are no typo.
            prop_assume!(a != b && !(a == b'0' && b == b'Z') && !(a == b'Z' && b == b'0'));
            let mut typo = shown.clone();
            typo.swap(pos, pos + 1);
            let typo = String::from_utf8(typo).unwrap();
            prop_assert_eq!(TransferCode::parse(&typo), Err(CodeError::Check));
        }

        #[test]
        fn arbitrary_input_never_panics(s in "\\PC{0,60}") {
            let _ = TransferCode::parse(&s);
        }
    }
}
