//! UDP multicast end to end: the real `airlock-sender` sends to a multicast group, two real
//! `airlock-receiver`s joined to that group both provision the same users, and both frame
//! logs pass `audit verify`.
//!
//! Multicast is not routed over loopback by default, so the scenario runs in a network
//! namespace of its own, created without privileges (`unshare --user --map-root-user --net`).
//! IPv4: loopback up, multicast on, and a route for 224.0.0.0/4 through it. IPv6 (Linux
//! does not loop IPv6 multicast over `lo`): a veth pair air0/air1 whose only multicast route
//! is air0, so the sender's datagrams leave by air0 and arrive on air1; receiver A joins
//! where the route says (air0, and gets the sender's local copy), receiver B names air1.
//!
//! The test binary re-executes itself in the namespace ([`airlock_tests::netns`]), running
//! only this test with `AIRLOCK_MULTICAST_INNER=4` or `=6`, which then plays the scenario
//! (sender, both receivers and every CLI query live in the namespace).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use airlock_tests::deployment::{Deployment, Gaps, Options, provision_record};
use airlock_tests::netns::{LogTails, NamespaceRun};
use airlock_tests::ops::{self, free_tcp_port, free_udp_port, metric_sum, parse_metrics};
use airlock_tests::peer::unix_now;
use airlock_tests::supervisor::{self, Child, ChildSpec};

const INNER_ENV: &str = "AIRLOCK_MULTICAST_INNER";
const USERS: u64 = 5;
/// The last line of a successful inner run: proves the inner test really ran (a libtest
/// filter that matches nothing also exits 0).
const DONE: &str = "multicast scenario passed";

#[test]
fn two_receivers_hear_one_sender_on_a_multicast_group() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    run(Family::V4);
}

#[test]
fn two_receivers_hear_one_sender_on_an_ipv6_multicast_group() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    run(Family::V6);
}

fn run(family: Family) {
    let ns = NamespaceRun {
        test_name: family.test_name(),
        module: module_path!(),
        inner_env: INNER_ENV,
        inner_value: family.inner_value(),
        setup: family.script(),
        done_marker: DONE,
        deadline: Duration::from_secs(180),
    };
    if ns.is_inner() {
        inner(family);
    } else {
        ns.run_outside();
    }
}

#[derive(Debug, Clone, Copy)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn test_name(self) -> &'static str {
        match self {
            Family::V4 => "two_receivers_hear_one_sender_on_a_multicast_group",
            Family::V6 => "two_receivers_hear_one_sender_on_an_ipv6_multicast_group",
        }
    }

    fn inner_value(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }

    /// Administratively (239/8) or site-local (ff05::/16) scoped; the namespace has no
    /// other traffic anyway.
    fn group(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(239, 255, 73, 1)),
            Family::V6 => IpAddr::V6(Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0x73, 1)),
        }
    }

    /// The interface receiver B names in `multicast_interface`.
    fn interface_b(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1",
            Family::V6 => "air1",
        }
    }

    /// Sets the namespace's network up, then runs "$0" "$@" (`ip` comes through the env).
    fn script(self) -> &'static str {
        match self {
            Family::V4 => {
                r#"set -e
"$AIRLOCK_NS_IP" link set lo up
"$AIRLOCK_NS_IP" link set lo multicast on
"$AIRLOCK_NS_IP" route add 224.0.0.0/4 dev lo
echo "namespace ready: $("$AIRLOCK_NS_IP" -o route show 224.0.0.0/4)"
exec "$0" "$@""#
            }
            // No duplicate address detection: the link-local addresses are usable at once.
            Family::V6 => {
                r#"set -e
echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad || true
"$AIRLOCK_NS_IP" link set lo up
"$AIRLOCK_NS_IP" link add air0 type veth peer name air1
"$AIRLOCK_NS_IP" link set air0 up
"$AIRLOCK_NS_IP" link set air1 up
for i in $(seq 100); do
  "$AIRLOCK_NS_IP" -6 -o addr show | grep -q tentative || break
  sleep 0.1
done
"$AIRLOCK_NS_IP" -6 route del multicast ff00::/8 dev air1 table local
echo "namespace ready: $("$AIRLOCK_NS_IP" -6 -o route show table local type multicast)"
exec "$0" "$@""#
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Inside the namespace: the scenario.

fn inner(family: Family) {
    airlock_tests::netns::runtime().block_on(async {
        let port = free_udp_port().unwrap().port();
        let group = SocketAddr::new(family.group(), port);
        let opts = Options {
            multicast: Some(group),
            repetitions: 1,
            heartbeat_secs: 1,
            ..Options::default()
        };
        let mut d = Deployment::create(&opts).await.unwrap();
        say(&format!(
            "deployment in {}; sender -> {group}",
            d.path().display()
        ));
        let mut b = ReceiverB::create(&d, family).unwrap();
        // On failure, the daemons' last log lines go into the test output (the directory is
        // kept too, but a CI log should explain the failure by itself).
        let _tails = LogTails {
            dir: d.path().to_path_buf(),
            logs: &["sender.log", "receiver.log", "receiver-b.log"],
        };
        // Deployment and receiver B live outside the deadline, so a timeout still panics
        // with them alive: their logs are printed and the directory is kept.
        tokio::time::timeout(Duration::from_secs(90), scenario(&mut d, &mut b, group))
            .await
            .expect("the scenario did not finish within 90 s");
        say(DONE);
    });
}

async fn scenario(d: &mut Deployment, b: &mut ReceiverB, group: SocketAddr) {
    // Both receivers first, so they hear the sender's first frame.
    d.start_receiver().await.unwrap();
    b.start().await.unwrap();
    for child in [d.receiver.as_mut().unwrap(), b.child.as_mut().unwrap()] {
        let line = child
            .wait_for_log("joined multicast group", Duration::from_secs(10))
            .await
            .unwrap();
        let iface = line.rsplit("iface=").next().unwrap_or("?").trim();
        say(&format!(
            "{} joined {} on {iface}",
            child.name(),
            group.ip()
        ));
    }
    d.start_sender().await.unwrap();
    say("sender running");

    let until = unix_now() + 30 * 86_400;
    let records: Vec<_> = (0..USERS).map(|i| provision_record(i, until)).collect();
    let out = d.submit("approvals.jsonl", &records).await.unwrap();
    say(&format!(
        "submitted {USERS} approvals: {}",
        out.stderr.trim()
    ));

    // Both receivers provision every user.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (users_a, users_b) = loop {
        let a = sorted_users(d.users().await.unwrap());
        let bu = sorted_users(b.users().await.unwrap());
        if a.len() as u64 == USERS && bu.len() as u64 == USERS {
            break (a, bu);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after 30 s receiver A has {} and receiver B {} of {USERS} users",
            a.len(),
            bu.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    say(&format!(
        "both receivers have {USERS} users: {:?}",
        users_a
            .iter()
            .map(|u| u["subject"].as_str().unwrap_or("?"))
            .collect::<Vec<_>>()
    ));
    let expected: Vec<String> = (0..USERS).map(|i| format!("user-{i:05}")).collect();
    let subjects: Vec<String> = users_a
        .iter()
        .map(|u| u["subject"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(subjects, expected, "receiver A's users: {users_a:#?}");
    // The same frames made the same users: identical rows, seq for seq.
    assert_eq!(users_a, users_b, "receiver A and receiver B disagree");

    for (name, addr) in [("receiver", d.receiver_ops), ("receiver-b", b.ops)] {
        let m = parse_metrics(&ops::http_get(addr, "/metrics").await.unwrap().body);
        say(&format!(
            "{name}: {} datagrams, {} frames accepted, {} rejected",
            metric_sum(&m, "airlock_link_datagrams_total", &[]),
            metric_sum(&m, "airlock_frames_accepted_total", &[]),
            metric_sum(&m, "airlock_frames_rejected_total", &[]),
        ));
    }

    // Stop the sender (it flushes), then let both receivers catch up with its last seq
    // (heartbeats included) before stopping them and auditing their logs.
    d.stop_sender().await.unwrap();
    let last_seq = d.sender_status().unwrap()["last_seq"].as_u64().unwrap();
    say(&format!("sender stopped at seq {last_seq}"));
    d.wait_no_gaps(last_seq, Duration::from_secs(15))
        .await
        .unwrap();
    b.wait_no_gaps(last_seq, Duration::from_secs(15))
        .await
        .unwrap();
    d.stop_receiver().await.unwrap();
    b.child
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(10))
        .await
        .unwrap();
    let verify = ["audit", "verify", "--json"];
    let reports = [
        ("receiver", d.receiver_cli(&verify).await.unwrap().stdout),
        ("receiver-b", b.cli(&verify).await.unwrap().stdout),
    ];
    for (name, out) in reports {
        let report: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{name}: audit verify --json: {e}: {out}"));
        assert_eq!(report["ok"], true, "{name}: audit verify: {out}");
        assert_eq!(report["missing_seqs"], 0, "{name}: audit verify: {out}");
        say(&format!(
            "{name}: audit verify ok, {} entries, head {}",
            report["entries"], report["head"]
        ));
    }
}

/// The second receiver: receiver A's config with its own data directory and ops port, and
/// the multicast interface named (same trust, same multicast group and port).
struct ReceiverB {
    config: PathBuf,
    ops: SocketAddr,
    dir: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
}

impl ReceiverB {
    fn create(d: &Deployment, family: Family) -> anyhow::Result<Self> {
        let ops = free_tcp_port()?;
        let a = std::fs::read_to_string(&d.receiver_config)?;
        let a_data = "data_dir = \"receiver-data\"";
        let a_ops = format!("listen = \"{}\"", d.receiver_ops);
        let a_group = format!("multicast_group = \"{}\"\n", family.group());
        anyhow::ensure!(
            a.contains(a_data) && a.contains(&a_ops) && a.contains(&a_group),
            "unexpected receiver config:\n{a}"
        );
        // Receiver A joins on any interface, B names it: both ways of the documented config.
        let b = a
            .replacen(a_data, "data_dir = \"receiver-b-data\"", 1)
            .replacen(&a_ops, &format!("listen = \"{ops}\""), 1)
            .replacen(
                &a_group,
                &format!(
                    "{a_group}multicast_interface = \"{}\"\n",
                    family.interface_b()
                ),
                1,
            );
        let config = d.path().join("receiver-b.toml");
        std::fs::write(&config, b)?;
        Ok(Self {
            config,
            ops,
            dir: d.path().to_path_buf(),
            bin: supervisor::binary("airlock-receiver")?,
            child: None,
        })
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        let spec = ChildSpec::new(
            "receiver-b",
            self.bin.clone(),
            self.dir.join("receiver-b.log"),
        )
        .args(["run", "--config"])
        .arg(&self.config)
        .env("RUST_LOG", "info")
        .cwd(&self.dir);
        let mut child = Child::start(spec)?;
        child
            .wait_for_port(self.ops, Duration::from_secs(30))
            .await?;
        self.child = Some(child);
        Ok(())
    }

    async fn cli(&self, args: &[&str]) -> anyhow::Result<supervisor::Output> {
        let config = self.config.display().to_string();
        let mut all = args.to_vec();
        all.extend(["--config", &config]);
        Ok(supervisor::run_ok(&self.bin, &all, &[], Duration::from_secs(60)).await?)
    }

    async fn users(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        Ok(serde_json::from_str(
            &self.cli(&["users", "--json"]).await?.stdout,
        )?)
    }

    async fn wait_no_gaps(&self, seq: u64, timeout: Duration) -> anyhow::Result<Gaps> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let g: Gaps = serde_json::from_str(&self.cli(&["gaps", "--json"]).await?.stdout)?;
            if g.missing_count() == 0 && g.highest() >= seq {
                return Ok(g);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "receiver-b: gaps remain after {timeout:?}: {g:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn sorted_users(mut users: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    users.sort_by_key(|u| u["subject"].as_str().unwrap_or_default().to_string());
    users
}

/// A progress line from the inner side (reaches the outer test's output as `ns| ...`).
fn say(msg: &str) {
    eprintln!("[multicast] {msg}");
}
