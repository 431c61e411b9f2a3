//! Each crate has one integration-test binary (`autotests = false`, `tests/integration.rs`):
//! a test file that is not declared as a module of it would silently never run.

use std::path::Path;

#[test]
fn every_test_file_is_a_module_of_its_crates_test_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut missing = Vec::new();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("members = ["))
        .unwrap();
    let crates: Vec<&str> = members
        .trim_end_matches(']')
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .collect();
    assert!(crates.contains(&"receiver"), "{crates:?}");
    for krate in crates {
        let dir = root.join(krate).join("tests");
        if !dir.is_dir() {
            // A crate without integration tests (its unit tests sit beside the code).
            continue;
        }
        let main = std::fs::read_to_string(dir.join("integration.rs")).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = match path.file_name().and_then(|n| n.to_str()) {
                Some(n) if n.ends_with(".rs") && n != "integration.rs" => n.trim_end_matches(".rs"),
                Some(n) if path.join("mod.rs").is_file() => n,
                _ => continue,
            };
            if !main.lines().any(|l| l.trim() == format!("mod {name};")) {
                missing.push(format!("{krate}/tests/{name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not declared in their crate's tests/integration.rs (add `mod NAME;`): {missing:?}"
    );
}
