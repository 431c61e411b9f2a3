//! The provider driven by a strict third-party client: the `openidconnect` crate,
//! with its allowed algorithms configured and at_hash checked by hand.

use crate::oidc_support;

use oidc_support::*;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest,
    HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope,
    TokenResponse,
};

/// openidconnect's HTTP hook, over the tests' minimal HTTP/1.1 client.
async fn http_client(req: HttpRequest) -> Result<HttpResponse, std::io::Error> {
    let headers: Vec<(&str, String)> = req
        .headers()
        .iter()
        .filter(|(k, _)| k.as_str() != "content-type")
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = String::from_utf8(req.body().clone()).map_err(std::io::Error::other)?;
    let method = req.method().as_str().to_string();
    let url = req.uri().to_string();
    let r = http(
        &method,
        &url,
        &headers,
        if method == "POST" {
            Some(body.as_str())
        } else {
            None
        },
    )
    .await;
    let mut b = openidconnect::http::Response::builder().status(r.status);
    for (k, v) in &r.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(r.body.into_bytes()).map_err(std::io::Error::other)
}

fn hand_at_hash(alg: &CoreJwsSigningAlgorithm, access: &str) -> String {
    let a = match alg {
        CoreJwsSigningAlgorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        _ => jsonwebtoken::Algorithm::ES256,
    };
    at_hash(a, access)
}

async fn full_flow(
    client_id: &str,
    secret: Option<&str>,
    redirect: &str,
    alg: CoreJwsSigningAlgorithm,
    scopes: &[&str],
) {
    let op = Op::start(None).await;
    let meta = CoreProviderMetadata::discover_async(
        IssuerUrl::new(op.base.clone()).unwrap(),
        &http_client,
    )
    .await
    .unwrap();
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(client_id.into()),
        secret.map(|s| ClientSecret::new(s.into())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for s in scopes {
        req = req.add_scope(Scope::new(s.to_string()));
    }
    let (url, csrf, nonce) = req.url();

    // The browser part: follow the authorization URL, type the transfer code.
    let mut b = Browser::default();
    let r = b.get(url.as_str()).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cb = submit_code(&op, &mut b, r.location(), &op.ticket("oscar", 300)).await;
    assert_eq!(
        query_param(&cb, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    assert_eq!(query_param(&cb, "iss").as_deref(), Some(op.base.as_str()));
    let code = query_param(&cb, "code").unwrap();

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http_client)
        .await
        .unwrap();
    let id_token = tokens.id_token().expect("id_token");
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs(vec![alg.clone()]);
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("ID token accepted by openidconnect");
    assert_eq!(claims.subject().as_str(), Op::sub("oscar"));
    // at_hash by hand, and openidconnect's own computation agrees.
    let access = tokens.access_token().secret();
    assert_eq!(
        claims.access_token_hash().unwrap().to_string(),
        hand_at_hash(&alg, access)
    );
    let lib = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(&lib, claims.access_token_hash().unwrap());
    // A verifier that allows only RS256 must refuse an ES256/EdDSA token: the algorithm is enforced.
    if alg != CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256 {
        let rs_only = client
            .id_token_verifier()
            .set_allowed_algs(vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]);
        assert!(id_token.claims(&rs_only, &nonce).is_err());
    }

    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http_client)
        .await
        .unwrap();
    assert_eq!(info.subject().as_str(), Op::sub("oscar"));

    if let Some(rt) = tokens.refresh_token() {
        let refreshed = client
            .exchange_refresh_token(rt)
            .unwrap()
            .request_async(&http_client)
            .await
            .unwrap();
        assert_ne!(refreshed.refresh_token().unwrap().secret(), rt.secret());
        // Reuse of the old refresh token is refused.
        let reuse = client
            .exchange_refresh_token(rt)
            .unwrap()
            .request_async(&http_client)
            .await;
        assert!(reuse.is_err());
    }
}

#[tokio::test]
async fn openidconnect_public_client_es256() {
    full_flow(
        "spa",
        None,
        "http://127.0.0.1:1/cb",
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        &["profile", "email", "offline_access"],
    )
    .await;
}

#[tokio::test]
async fn openidconnect_confidential_client_rs256() {
    full_flow(
        "app",
        Some(CONF_SECRET),
        "http://127.0.0.1:2/cb",
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        &["offline_access"],
    )
    .await;
}

#[tokio::test]
async fn openidconnect_confidential_client_eddsa() {
    full_flow(
        "ed",
        Some(CONF_SECRET),
        "http://127.0.0.1:3/cb",
        CoreJwsSigningAlgorithm::EdDsa,
        &["email"],
    )
    .await;
}

/// The device flow (RFC 8628) as openidconnect drives it: the device endpoint from
/// discovery (additional metadata, as the crate's own example reads it), the device
/// authorization request, and the library's polling loop; meanwhile a person types the
/// code, signs in and approves. The poller's sleep advances the provider's clock by the
/// interval the library chose, so no test time passes in waiting.
#[tokio::test]
async fn openidconnect_device_flow_public_client() {
    use openidconnect::core::{
        CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod,
        CoreDeviceAuthorizationResponse, CoreGrantType, CoreJsonWebKey,
        CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode,
        CoreResponseType, CoreSubjectIdentifierType,
    };
    use openidconnect::{AdditionalProviderMetadata, DeviceAuthorizationUrl, ProviderMetadata};

    #[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
    struct DeviceEndpoint {
        device_authorization_endpoint: DeviceAuthorizationUrl,
    }
    impl AdditionalProviderMetadata for DeviceEndpoint {}
    type DeviceProviderMetadata = ProviderMetadata<
        DeviceEndpoint,
        CoreAuthDisplay,
        CoreClientAuthMethod,
        CoreClaimName,
        CoreClaimType,
        CoreGrantType,
        CoreJweContentEncryptionAlgorithm,
        CoreJweKeyManagementAlgorithm,
        CoreJsonWebKey,
        CoreResponseMode,
        CoreResponseType,
        CoreSubjectIdentifierType,
    >;

    let op = crate::oidc_device::start().await;
    let meta = DeviceProviderMetadata::discover_async(
        IssuerUrl::new(op.base.clone()).unwrap(),
        &http_client,
    )
    .await
    .unwrap();
    let endpoint = meta
        .additional_metadata()
        .device_authorization_endpoint
        .clone();
    assert_eq!(
        endpoint.as_str(),
        format!("{}/device_authorization", op.base)
    );
    let client = CoreClient::from_provider_metadata(meta, ClientId::new("tv".into()), None)
        .set_device_authorization_url(endpoint);
    let details: CoreDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .request_async(&http_client)
        .await
        .unwrap();
    let user_code = details.user_code().secret().clone();
    assert_eq!(
        details.verification_uri().as_str(),
        format!("{}/device", op.base)
    );
    assert_eq!(details.interval(), std::time::Duration::from_secs(5));

    let polls = std::sync::atomic::AtomicU32::new(0);
    let clock = op.clock.clone();
    let poll = client
        .exchange_device_access_token(&details)
        .unwrap()
        .request_async(
            &http_client,
            |d: std::time::Duration| {
                polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                clock.advance(d.as_secs());
                tokio::time::sleep(std::time::Duration::from_millis(20))
            },
            None,
        );
    let person = async {
        let mut b = Browser::default();
        let r = crate::oidc_device::type_code(&op, &mut b, &user_code).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let confirm = submit_code(&op, &mut b, r.location(), &op.ticket("olga", 3600)).await;
        let done = crate::oidc_device::decide(&op, &mut b, &confirm, "approve").await;
        assert_eq!(done.status, 200, "{}", done.body);
    };
    let (tokens, ()) = tokio::join!(poll, person);
    let tokens = tokens.expect("the library's poll ends with tokens");
    assert!(
        polls.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the library polled while the person was approving"
    );
    let id_token = tokens.id_token().expect("id_token");
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let no_nonce = |n: Option<&Nonce>| match n {
        None => Ok(()),
        Some(_) => Err("a device flow ID token has no nonce".to_string()),
    };
    let claims = id_token
        .claims(&verifier, no_nonce)
        .expect("ID token accepted by openidconnect");
    assert_eq!(claims.subject().as_str(), Op::sub("olga"));
    assert!(claims.auth_time().is_some());
    let rt = tokens
        .refresh_token()
        .expect("refresh token (tv may refresh)");
    let refreshed = client
        .exchange_refresh_token(rt)
        .unwrap()
        .request_async(&http_client)
        .await
        .unwrap();
    assert!(refreshed.access_token().secret().len() > 20);
    // The device code is spent: the library's next exchange is refused.
    let again = client
        .exchange_device_access_token(&details)
        .unwrap()
        .request_async(&http_client, |_| async {}, None)
        .await;
    assert!(again.is_err());
}
