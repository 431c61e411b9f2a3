//! The portal's server-rendered pages: maud templates (every value escaped), framed by
//! [`airlock_daemon::html::document`]; the only asset is the embedded style sheet; there
//! is no script.

use maud::{Markup, html};

use crate::policy::Rejection;

/// The style sheet, embedded in the binary.
pub const CSS: &str = include_str!("../../assets/portal.css");

fn layout(title: &str, main: Markup) -> String {
    airlock_daemon::html::document(
        title,
        "/assets/portal.css",
        html! {
            header { p class="brand" { "Airlock" } }
            main {
                h1 { (title) }
                (main)
            }
        },
    )
    .into_string()
}

/// A button (link) per configured IdP: (name, display name).
pub fn start(idps: &[(String, String)]) -> String {
    layout(
        "Get a transfer code",
        html! {
            p { "Sign in with your own organisation's account. If you are allowed in, you get a
        one-time transfer code to type at any inside application's login page." }
            nav aria-label="Sign-in options" {
                ul class="idps" {
                    @for (name, display) in idps {
                        li { a class="button" href={ "/login/" (name) } { (display) } }
                    }
                }
            }
        },
    )
}

/// The code, grouped, with its expiry and what to do with it.
pub fn issued(code: &str, expires_at: u64, now: u64, subject: &str, idp_display: &str) -> String {
    let minutes = expires_at.saturating_sub(now).div_ceil(60);
    let when = crate::timefmt::utc(expires_at);
    let iso = crate::timefmt::iso8601(expires_at);
    layout(
        "Your transfer code",
        html! {
            p { "You signed in at " (idp_display) " as " strong { (subject) } "." }
            section aria-labelledby="code-label" class="code-box" {
                h2 id="code-label" { "Transfer code" }
                // Break lines only between groups, never inside one.
                p class="code" id="transfer-code" {
                    @for (i, group) in code.split('-').enumerate() {
                        @if i > 0 { "-" wbr; }
                        (group)
                    }
                }
                p {
                    "Valid once, until " time id="expires" datetime=(iso) { (when) }
                    " (about " (minutes) " minute" @if minutes != 1 { "s" } ")."
                }
            }
            h2 { "What to do now" }
            ol {
                li { "Go to any inside application and choose " strong { "Log in" } "." }
                li { "Type this code on the Airlock login page. Dashes and capital letters do not matter." }
            }
            p { "Do not share this code: whoever types it first is logged in as you. If it expires, come
        back here for a new one." }
        },
    )
}

/// The policy said no: which rule, why, and whom to ask.
pub fn refused(rejection: &Rejection, help_contact: &str, idp_display: &str) -> String {
    layout(
        "No transfer code for this account",
        html! {
            p { "You signed in at " (idp_display) ", but Airlock's policy does not let this account in, so
        no code was made." }
            div role="alert" class="refusal" {
                p { "Refused by rule " code id="rule" { (rejection.rule) } ": " (rejection.detail) }
            }
            p { "If you think you should have access, ask " (help_contact) ", and tell them the rule named above." }
            p { a href="/" { "Back to the start" } }
        },
    )
}

/// Something went wrong; `what` says what, `todo` what to do.
pub fn error(title: &str, what: &str, todo: &str) -> String {
    layout(
        title,
        html! {
            div role="alert" { p { (what) } }
            p { (todo) }
            p { a href="/" { "Back to the start" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let page = start(&[("corp".into(), "<script>alert(1)</script>".into())]);
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;"));
        let r = Rejection {
            source_name: "s".into(),
            rule: "email_domain",
            detail: "email \"a@<b>\"".into(),
        };
        let page = refused(&r, "idm & co", "Corp");
        assert!(page.contains("&lt;b&gt;") && page.contains("idm &amp; co"));
        assert!(page.contains(r#"<code id="rule">email_domain</code>"#));
    }

    #[test]
    fn pages_are_accessible_html() {
        let page = issued("7KQ2M-X4HDN-R8WPA-3FZTC-9JB6E", 1300, 1000, "u", "Corp");
        assert!(page.contains(r#"<html lang="en">"#));
        assert!(page.contains("<h1>") && page.contains("<main>"));
        assert!(page.contains("about 5 minutes"));
        assert!(!page.contains("<script"));
        assert!(page.contains(
            r#"<p class="code" id="transfer-code">7KQ2M-<wbr>X4HDN-<wbr>R8WPA-<wbr>3FZTC-<wbr>9JB6E</p>"#
        ));
        assert!(issued("A-B", 1060, 1000, "u", "Corp").contains("about 1 minute)"));
        assert!(start(&[("a b".into(), "A".into())]).contains(r#"href="/login/a b""#));
    }
}
