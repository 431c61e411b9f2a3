//! The portal's server-rendered pages. Every dynamic value goes through [`esc`]; the only
//! asset is the embedded style sheet; there is no script.

use std::fmt::Write as _;

use crate::policy::Rejection;

/// The style sheet, embedded in the binary.
pub const CSS: &str = include_str!("../../assets/portal.css");

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn layout(title: &str, main: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Airlock</title>
<link rel="stylesheet" href="/assets/portal.css">
</head>
<body>
<header><p class="brand">Airlock</p></header>
<main>
<h1>{title}</h1>
{main}
</main>
</body>
</html>
"#,
        title = esc(title)
    )
}

/// A button (link) per configured IdP: (name, display name).
pub fn start(idps: &[(String, String)]) -> String {
    let mut list = String::new();
    for (name, display) in idps {
        let _ = write!(
            list,
            r#"<li><a class="button" href="/login/{}">{}</a></li>"#,
            esc(name),
            esc(display)
        );
    }
    layout(
        "Get a transfer code",
        &format!(
            r#"<p>Sign in with your own organisation's account. If you are allowed in, you get a
one-time transfer code to type at any inside application's login page.</p>
<nav aria-label="Sign-in options"><ul class="idps">{list}</ul></nav>"#
        ),
    )
}

/// The code, grouped, with its expiry and what to do with it.
pub fn issued(code: &str, expires_at: u64, now: u64, subject: &str, idp_display: &str) -> String {
    let minutes = expires_at.saturating_sub(now).div_ceil(60);
    let when = crate::timefmt::utc(expires_at);
    let iso = crate::timefmt::iso8601(expires_at);
    layout(
        "Your transfer code",
        &format!(
            r#"<p>You signed in at {idp} as <strong>{subject}</strong>.</p>
<section aria-labelledby="code-label" class="code-box">
<h2 id="code-label">Transfer code</h2>
<p class="code" id="transfer-code">{code}</p>
<p>Valid once, until <time id="expires" datetime="{iso}">{when}</time> (about {minutes} minute{s}).</p>
</section>
<h2>What to do now</h2>
<ol>
<li>Go to any inside application and choose <strong>Log in</strong>.</li>
<li>Type this code on the Airlock login page. Dashes and capital letters do not matter.</li>
</ol>
<p>Do not share this code: whoever types it first is logged in as you. If it expires, come
back here for a new one.</p>"#,
            idp = esc(idp_display),
            subject = esc(subject),
            // Break lines only between groups, never inside one.
            code = esc(code).replace('-', "-<wbr>"),
            s = if minutes == 1 { "" } else { "s" },
        ),
    )
}

/// The policy said no: which rule, why, and whom to ask.
pub fn refused(rejection: &Rejection, help_contact: &str, idp_display: &str) -> String {
    layout(
        "No transfer code for this account",
        &format!(
            r#"<p>You signed in at {idp}, but Airlock's policy does not let this account in, so
no code was made.</p>
<div role="alert" class="refusal">
<p>Refused by rule <code id="rule">{rule}</code>: {detail}</p>
</div>
<p>If you think you should have access, ask {help}, and tell them the rule named above.</p>
<p><a href="/">Back to the start</a></p>"#,
            idp = esc(idp_display),
            rule = esc(rejection.rule),
            detail = esc(&rejection.detail),
            help = esc(help_contact),
        ),
    )
}

/// Something went wrong; `what` says what, `todo` what to do.
pub fn error(title: &str, what: &str, todo: &str) -> String {
    layout(
        title,
        &format!(
            r#"<div role="alert"><p>{}</p></div>
<p>{}</p>
<p><a href="/">Back to the start</a></p>"#,
            esc(what),
            esc(todo)
        ),
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
    }
}
