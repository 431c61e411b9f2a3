//! An IdpMirror frame that crosses the link is served inside, read-only and byte for
//! byte, at /idp-mirror/{sha256(issuer)}/openid-configuration and /jwks on the provider.

use std::time::Duration;

use airlock_protocol::keys::{LinkKey, SignerKey};
use airlock_protocol::link::LinkParams;
use airlock_protocol::message::{Body, IdpMirror};
use airlock_protocol::seal::Sealer;
use airlock_tests::deployment::{Deployment, Options};
use airlock_tests::ops::{free_tcp_port, http_get};
use airlock_tests::peer::{LinkSender, unix_now};
use sha2::{Digest, Sha256};

const OUTSIDE: &str = "https://login.partner.example";
// Deliberately not normalised JSON (spacing, key order): the mirror must not re-encode it.
const DISCOVERY: &str = "{\"issuer\": \"https://login.partner.example\",\n  \"jwks_uri\":\"https://login.partner.example/keys\"}";
const JWKS: &str = "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\",\"kid\":\"k1\"}]}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_documents_are_served_byte_for_byte() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let oidc = free_tcp_port().unwrap();
    let opts = Options {
        receiver_extra: format!(
            "\n[oidc]\nissuer = \"http://{oidc}\"\nlisten = \"{oidc}\"\nallow_plain_http = true\n"
        ),
        ..Options::default()
    };
    let mut d = Deployment::create(&opts).await.unwrap();
    d.start_receiver().await.unwrap();

    let keys = d.path().join("keys");
    let sealer = Sealer::new(
        SignerKey::load(&keys.join("signer.pem")).unwrap(),
        LinkKey::load(&keys.join("link.key")).unwrap(),
    );
    let target = d.relay().unwrap().local_addr();
    // The deployment's receiver accepts datagrams up to 1400 bytes.
    let params = LinkParams {
        datagram_size: 1200,
        ..LinkParams::default()
    };
    let mut tx = LinkSender::new(target, sealer, 77, &params).await.unwrap();
    tx.send(Body::IdpMirror(IdpMirror {
        issuer: OUTSIDE.into(),
        discovery: DISCOVERY.as_bytes().to_vec(),
        jwks: JWKS.as_bytes().to_vec(),
        fetched_at: unix_now(),
    }))
    .await
    .unwrap();
    tx.flush().await.unwrap();

    let hash = hex::encode(Sha256::digest(OUTSIDE.as_bytes()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let index = loop {
        let r = http_get(oidc, "/idp-mirror/").await.unwrap();
        if r.status == 200 && r.body.contains(&hash) {
            break r.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "mirror never appeared: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(index.contains(OUTSIDE), "{index}");

    let doc = http_get(oidc, &format!("/idp-mirror/{hash}/openid-configuration"))
        .await
        .unwrap();
    assert_eq!((doc.status, doc.body.as_str()), (200, DISCOVERY));
    let jwks = http_get(oidc, &format!("/idp-mirror/{hash}/jwks"))
        .await
        .unwrap();
    assert_eq!((jwks.status, jwks.body.as_str()), (200, JWKS));
    let unknown = http_get(oidc, &format!("/idp-mirror/{}/jwks", "0".repeat(64)))
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
}
