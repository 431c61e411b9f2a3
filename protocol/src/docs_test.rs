//! The figures the documents state, checked against the code that has them.

use std::path::PathBuf;

use crate::replay::WINDOW;
use crate::seal::Freshness;
use crate::transfer_code::{LOCATOR_LEN, SECRET_LEN};

fn doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// 65536 -> "65,536".
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn assert_contains(doc_name: &str, text: &str, needle: &str) {
    assert!(
        text.contains(needle),
        "docs/{doc_name} should say `{needle}` (that is what the code does)"
    );
}

#[test]
fn protocol_defaults_table_matches_the_code() {
    let protocol = doc("protocol.md");
    let fresh = Freshness::default();
    let rows = [
        format!("| replay window | {} seqs per signer |", grouped(WINDOW)),
        format!(
            "| max frame age / clock skew | {} days / {} s |",
            fresh.max_age_secs / 86_400,
            fresh.max_skew_secs
        ),
        format!("(default {} s) | `from_future` |", fresh.max_skew_secs),
        // The replay module refuses `highest - seq >= WINDOW` as too old.
        format!(
            "| 14 | seq not seen, and fewer than {} below the highest seen (replay window: the highest and the {} seqs under it) | `replay` |",
            grouped(WINDOW),
            grouped(WINDOW - 1)
        ),
    ];
    for row in rows {
        assert_contains("protocol.md", &protocol, &row);
    }
    let decisions = doc("decisions.md");
    assert_contains(
        "decisions.md",
        &decisions,
        &format!("{} s of skew", fresh.max_skew_secs),
    );
}

#[test]
fn transfer_code_bits_in_the_docs_match_the_format() {
    let secret_bits = SECRET_LEN * 5;
    let locator_bits = LOCATOR_LEN * 5;
    assert_contains(
        "threat-model.md",
        &doc("threat-model.md"),
        &format!("{secret_bits} secret bits"),
    );
    let protocol = doc("protocol.md");
    assert_contains(
        "protocol.md",
        &protocol,
        &format!("| 1–{LOCATOR_LEN} | {locator_bits} | locator part"),
    );
    assert_contains(
        "protocol.md",
        &protocol,
        &format!(
            "| {}–{} | {secret_bits} | secret",
            LOCATOR_LEN + 1,
            LOCATOR_LEN + SECRET_LEN
        ),
    );
}
