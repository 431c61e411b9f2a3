//! Every config check: the error names the file, the key and what is allowed.

use std::path::Path;

use airlock_sender::config::{Config, ConfigError};

const BASE: &str = r#"data_dir = "/var/lib/airlock-sender"
[keys]
signer = "k/signer.pem"
link = "k/link.key"
[link.udp]
target = "127.0.0.1:7400"
[policy]
claim_allow_list = ["email"]
[[policy.issuers]]
issuer = "https://idp.example"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/airlock/sender.toml"))
}

/// Parses BASE with `edit` applied and expects an error mentioning every needle.
fn expect_error(text: &str, needles: &[&str]) {
    let err = parse(text)
        .expect_err("config should be refused")
        .to_string();
    assert!(
        err.starts_with("config file /etc/airlock/sender.toml"),
        "{err}"
    );
    for n in needles {
        assert!(err.contains(n), "{err:?} should mention {n:?}");
    }
    assert!(!err.contains('\n'), "one line: {err:?}");
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn replace(from: &str, to: &str) -> String {
    assert!(BASE.contains(from));
    BASE.replace(from, to)
}

#[test]
fn the_base_config_is_valid_with_defaults() {
    let c = parse(BASE).unwrap();
    assert_eq!(c.link.mtu, 1200);
    assert_eq!(c.send.repetitions, 2);
    assert_eq!(c.policy.ticket_ttl_secs, 300);
}

#[test]
fn unknown_keys_are_refused_everywhere() {
    expect_error(
        &with("colour = 1\n"),
        &[
            "unknown field `colour`",
            "line 11",
            "`colour = 1`",
            "in [[policy.issuers]]",
        ],
    );
    expect_error(
        &replace("[link.udp]", "[link.udp]\nport = 1"),
        &["unknown field `port`", "target"],
    );
    expect_error(
        &with("[send]\nrepetition = 2\n"),
        &["unknown field `repetition`", "repetitions"],
    );
    expect_error(
        &with("email_domain = [\"x\"]\n"),
        &["unknown field `email_domain`", "email_domains"],
    );
}

#[test]
fn missing_required_keys_are_named() {
    expect_error(
        &BASE.replace("data_dir = \"/var/lib/airlock-sender\"\n", ""),
        &["missing field `data_dir`"],
    );
    expect_error(
        &replace("claim_allow_list = [\"email\"]", ""),
        &["claim_allow_list"],
    );
}

#[test]
fn wrong_types_are_refused() {
    expect_error(
        &with("[fec]\nrepair_ratio = \"lots\"\nmin_repair = 1\n"),
        &["invalid type", "repair_ratio"],
    );
    expect_error(
        &replace("127.0.0.1:7400", "not an address"),
        &["invalid socket address"],
    );
    expect_error(
        &with("[link.serial]\ndevice = \"/dev/ttyS0\"\nbaud = 9600\nparity = \"mark\"\n"),
        &["unknown variant `mark`", "none"],
    );
}

#[test]
fn link_must_be_exactly_one_of_udp_or_serial() {
    expect_error(
        &with("[link.serial]\ndevice = \"/dev/ttyS0\"\nbaud = 9600\n"),
        &["key `link`", "not both"],
    );
    expect_error(
        &replace(
            "[link.udp]\ntarget = \"127.0.0.1:7400\"",
            "[link]\nmtu = 1200",
        ),
        &["key `link`", "[link.serial]"],
    );
}

#[test]
fn link_values_are_range_checked() {
    let udp = "[link.udp]\ntarget = \"127.0.0.1:7400\"";
    expect_error(
        &replace(udp, &format!("[link]\nmtu = 20\n{udp}")),
        &["key `link.mtu`", "to 65507 bytes, got 20"],
    );
    expect_error(
        &replace(udp, &format!("[link]\nmax_block_bytes = 10000000\n{udp}")),
        &["key `link.max_block_bytes`"],
    );
    expect_error(
        &replace(udp, &format!("[link]\nlinger_ms = 60000\n{udp}")),
        &["key `link.linger_ms`", "at most 10000"],
    );
    expect_error(
        &replace("127.0.0.1:7400", "127.0.0.1:0"),
        &["key `link.udp.target`", "port"],
    );
    expect_error(
        &replace(udp, &format!("{udp}\nmulticast_ttl = 4")),
        &["key `link.udp.multicast_ttl`", "multicast target"],
    );
    expect_error(
        &replace("127.0.0.1:7400\"", "239.1.2.3:7400\"\nmulticast_ttl = 0"),
        &["key `link.udp.multicast_ttl`", "1 to 255"],
    );
    expect_error(
        &replace(
            "127.0.0.1:7400\"",
            "[ff05::1:3]:7400\"\nmulticast_interface = \"10.0.0.5\"",
        ),
        &["key `link.udp.multicast_interface`", "IPv6 group"],
    );
}

#[test]
fn serial_values_are_range_checked() {
    let udp = "[link.udp]\ntarget = \"127.0.0.1:7400\"";
    let serial = |body: &str| replace(udp, &format!("[link.serial]\n{body}"));
    expect_error(
        &serial("device = \"\"\nbaud = 9600"),
        &["key `link.serial.device`"],
    );
    expect_error(
        &serial("device = \"/dev/ttyS0\"\nbaud = 12"),
        &["key `link.serial.baud`", "300 to 4000000"],
    );
    expect_error(
        &serial("device = \"/dev/ttyS0\"\nbaud = 9600\ndata_bits = 9"),
        &["key `link.serial.data_bits`"],
    );
    expect_error(
        &serial("device = \"/dev/ttyS0\"\nbaud = 9600\nstop_bits = 3"),
        &["key `link.serial.stop_bits`"],
    );
    assert!(
        parse(&serial(
            "device = \"/dev/ttyS0\"\nbaud = 115200\nparity = \"even\""
        ))
        .is_ok()
    );
}

#[test]
fn fec_values_are_range_checked() {
    expect_error(
        &with("[fec]\nrepair_ratio = 9.0\nmin_repair = 1\n"),
        &["key `fec.repair_ratio`", "0.0 to 4.0"],
    );
    expect_error(
        &with("[fec]\nrepair_ratio = 0.5\nmin_repair = 5000\n"),
        &["key `fec.min_repair`"],
    );
}

fn send(body: &str) -> String {
    let full = "repetitions = 2\nrepetition_spacing_ms = 100\npacing_bytes_per_sec = 0\nheartbeat_secs = 5\ncarousel_secs = 0\n";
    let mut lines: Vec<String> = full.lines().map(String::from).collect();
    for l in body.lines() {
        let key = l.split('=').next().unwrap().trim();
        lines.retain(|x| !x.starts_with(key));
        lines.push(l.to_string());
    }
    with(&format!("[send]\n{}\n", lines.join("\n")))
}

#[test]
fn send_values_are_range_checked() {
    assert!(parse(&send("")).is_ok());
    expect_error(
        &send("repetitions = 0"),
        &["key `send.repetitions`", "1 to 10"],
    );
    expect_error(
        &send("repetition_spacing_ms = 9999999"),
        &["key `send.repetition_spacing_ms`"],
    );
    expect_error(&send("heartbeat_secs = 0"), &["key `send.heartbeat_secs`"]);
    expect_error(
        &send("carousel_secs = 5"),
        &["key `send.carousel_secs`", "0 (off) or at least 10"],
    );
    expect_error(
        &send("pacing_bytes_per_sec = 50"),
        &["key `send.pacing_bytes_per_sec`"],
    );
}

#[test]
fn outbox_retention_must_be_positive() {
    expect_error(
        &with("[outbox]\nlog_retention_days = 0\n"),
        &["key `outbox.log_retention_days`"],
    );
}

#[test]
fn policy_values_are_checked() {
    expect_error(
        &replace("[\"email\"]", "[\"email\", \"exp\"]"),
        &["key `policy.claim_allow_list[1]`", "never crosses"],
    );
    expect_error(
        &replace("[\"email\"]", "[\"\"]"),
        &["key `policy.claim_allow_list[0]`"],
    );
    expect_error(
        &replace("[\"email\"]", "[\"email\"]\nmax_validity_days = 0"),
        &["key `policy.max_validity_days`"],
    );
    expect_error(
        &replace("[\"email\"]", "[\"email\"]\nticket_ttl_secs = 5"),
        &["key `policy.ticket_ttl_secs`", "30 to 86400"],
    );
    expect_error(
        &replace("[\"email\"]", "[\"email\"]\nmax_record_bytes = 10"),
        &["key `policy.max_record_bytes`"],
    );
    expect_error(
        &with("[[policy.issuers]]\nissuer = \"https://idp.example\"\n"),
        &["key `policy.issuers[1].issuer`", "twice"],
    );
    expect_error(
        &with("email_domains = [\"@example.com\"]\n"),
        &["key `policy.issuers[0].email_domains[0]`", "bare domain"],
    );
    expect_error(
        &replace("issuer = \"https://idp.example\"", "issuer = \"\""),
        &["key `policy.issuers[0].issuer`"],
    );
}

#[test]
fn trusted_issuers_are_checked() {
    let t = |iss: &str, aud: &str| {
        format!(
            "[[trusted_issuers]]\nissuer = \"{iss}\"\njwks_file = \"j.json\"\naudience = \"{aud}\"\n"
        )
    };
    assert!(parse(&with(&t("https://idp.example", "a"))).is_ok());
    expect_error(
        &with(&t("https://other.example", "a")),
        &["key `trusted_issuers[0].issuer`", "[[policy.issuers]]"],
    );
    expect_error(
        &with(&t("https://idp.example", "")),
        &["key `trusted_issuers[0].audience`"],
    );
    expect_error(
        &with(&format!(
            "{}{}",
            t("https://idp.example", "a"),
            t("https://idp.example", "a")
        )),
        &["key `trusted_issuers[1].issuer`", "twice"],
    );
    expect_error(
        &with(&format!(
            "{}leeway_secs = 9999\n",
            t("https://idp.example", "a")
        )),
        &["key `trusted_issuers[0].leeway_secs`"],
    );
}

#[test]
fn a_missing_file_is_named() {
    let err = Config::load(Path::new("/nonexistent/sender.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot read config file /nonexistent/sender.toml"),
        "{err}"
    );
}

#[test]
fn relative_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sender.toml");
    std::fs::write(&path, BASE.replace("/var/lib/airlock-sender", "data")).unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.data_dir, dir.path().join("data"));
    assert_eq!(c.keys.signer, dir.path().join("k/signer.pem"));
}
