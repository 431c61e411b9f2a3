//! Gap test: seqs dropped in transit are named exactly by `gaps`; after the sender resends
//! them, `gaps` is empty.

use crate::common;

use std::collections::BTreeSet;

use common::*;

#[test]
fn gaps_names_exactly_the_dropped_seqs_and_clears_after_resend() {
    let setup = Setup::new(LinkKind::Udp);
    let mut rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let dropped: BTreeSet<u64> = [7, 20, 21, 22, 49].into();
    let mut all = Vec::new();
    for i in 1..=50u64 {
        all.push(tx.next(provision(i)));
    }
    // The heartbeat (seq 51) tells the receiver everything up to 51 should be there.
    all.push(tx.next(heartbeat(tx.session_id)));
    let delivered: Vec<Vec<u8>> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(&(*i as u64 + 1)))
        .map(|(_, f)| f.sealed.clone())
        .collect();
    tx.send_udp(setup.udp_port, &delivered);
    rx.wait_for("delivered frames", |m| {
        m.accepted() == delivered.len() as u64
    });

    let kid = tx.chain.sealer.signer_kid().to_owned();
    let gaps = setup.gaps_json();
    assert_eq!(gaps["signers"][&kid]["highest"], 51);
    assert_eq!(
        gaps["signers"][&kid]["missing"],
        serde_json::json!([[7, 7], [20, 22], [49, 49]])
    );
    let (ok, text, _) = setup.cli(&["gaps"]);
    assert!(ok);
    assert!(
        text.contains("airlock-sender resend --from 20 --to 22"),
        "{text}"
    );
    assert!(text.contains("5 missing in 3 range(s)"), "{text}");
    let m = rx.metrics();
    assert_eq!(m.get("airlock_gap_missing_seqs"), 5);

    // The sender's `resend` re-encrypts the same signed frames.
    let resent: Vec<Vec<u8>> = dropped
        .iter()
        .map(|s| {
            tx.chain
                .sealer
                .encrypt(&all[*s as usize - 1].sign1)
                .unwrap()
        })
        .collect();
    tx.send_udp(setup.udp_port, &resent);
    let m = rx.wait_for("resent frames", |m| m.accepted() == all.len() as u64);
    assert_eq!(m.get("airlock_gap_missing_seqs"), 0);
    assert_eq!(
        setup.gaps_json()["signers"][&kid]["missing"],
        serde_json::json!([])
    );

    // The same answer from the store itself once the daemon is stopped.
    rx.stop();
    let (ok, text, err) = setup.cli(&["gaps"]);
    assert!(ok, "{err}");
    assert!(text.contains("no gaps"), "{text}");
}
