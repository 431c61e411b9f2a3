//! The `/authorize` side of pushed authorization requests (RFC 9126 section 4): a
//! `request_uri` that `/par` issued stands for the parameters pushed with it.

use axum::response::Response;

use crate::oidc::http::{Params, bad_page, server_page};
use crate::oidc::metrics::Counter;
use crate::oidc::provider::Provider;
use crate::oidc::store::PushedTake;
use crate::oidc::util::hash_secret;

/// What every request_uri of ours starts with (RFC 9126 §2.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// The parameters of the pushed request `params` names by `request_uri`, with its
/// `client_id`; taken from the store, so a second use finds nothing. Refusals are error
/// pages: no redirect_uri is known to be the client's until the request is found.
pub(crate) fn resolve(p: &Provider, params: &Params) -> Result<Params, Box<Response>> {
    let refuse = |reason: &'static str, message: &str| {
        tracing::info!(reason, "pushed authorization request refused");
        p.metrics().inc(Counter::AuthorizeErrors, reason);
        Box::new(bad_page(message, "invalid_request_uri"))
    };
    let Some(client_id) = params.get("client_id") else {
        return Err(Box::new(bad_page(
            "The sign-in request names no application (client_id is missing).",
            "invalid_request",
        )));
    };
    let uri = params.get("request_uri").unwrap_or_default();
    let Some(secret) = uri.strip_prefix(REQUEST_URI_PREFIX) else {
        return Err(refuse(
            "request_uri_unknown",
            "The sign-in request refers to a request this service did not issue.",
        ));
    };
    let id = hash_secret(secret);
    let record = match p.store().take_pushed(&id, client_id) {
        Ok(PushedTake::Taken(r)) => r,
        Ok(PushedTake::Unknown) => {
            return Err(refuse(
                "request_uri_unknown",
                "The sign-in request was already used or has expired: start the sign-in again from the application.",
            ));
        }
        Ok(PushedTake::OtherClient) => {
            tracing::warn!(
                client_id,
                "request_uri used by another client than the one that pushed it"
            );
            return Err(refuse(
                "request_uri_other_client",
                "The sign-in request was made by another application.",
            ));
        }
        Err(e) => return Err(Box::new(server_page(e))),
    };
    p.release_push(&id);
    if record.expires_at <= p.now() {
        return Err(refuse(
            "request_uri_expired",
            "The sign-in request has expired: start the sign-in again from the application.",
        ));
    }
    let raw = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .extend_pairs(&record.params)
        .finish();
    Params::parse(&raw).map_err(|e| {
        Box::new(server_page(format!(
            "a pushed request no longer parses: {e}"
        )))
    })
}
