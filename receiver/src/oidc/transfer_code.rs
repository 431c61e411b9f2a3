//! Transfer codes: the one definition lives in `airlock_protocol::transfer_code`
//! (shared with the sender). This module re-exports it and adds a builder for tests
//! and demos that need codes with chosen symbols.

pub use airlock_protocol::transfer_code::*;

/// The 25-character code (no dashes) for 24 symbol values (each taken mod 32),
/// with its Luhn mod 32 check character.
pub fn code_text(values24: &[u8; CODE_LEN - 1]) -> String {
    let mut factor = 2u32;
    let mut sum = 0u32;
    for &v in values24.iter().rev() {
        let addend = factor * u32::from(v & 31);
        sum += addend / 32 + addend % 32;
        factor = if factor == 2 { 1 } else { 2 };
    }
    let check = ((32 - sum % 32) % 32) as u8;
    values24
        .iter()
        .chain(std::iter::once(&check))
        .map(|&v| char::from(ALPHABET[usize::from(v & 31)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_codes_parse_with_the_shared_parser() {
        let v: [u8; 24] = core::array::from_fn(|i| (i * 7 % 32) as u8);
        let shown = code_text(&v);
        let c = TransferCode::parse(&shown.to_lowercase()).unwrap();
        assert_eq!(c.locator_group(), &shown[..LOCATOR_LEN]);
        assert_eq!(c.secret(), &shown[LOCATOR_LEN..24]);
        assert_eq!(c.locator(), locator_for_group(&shown[..LOCATOR_LEN]));
        let mut typo = shown.into_bytes();
        typo[7] = if typo[7] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            TransferCode::parse(&String::from_utf8(typo).unwrap()),
            Err(CodeError::Check)
        );
    }
}
