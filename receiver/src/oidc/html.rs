//! Server-rendered pages: maud templates (every value escaped), framed by
//! [`airlock_daemon::html::document`], with strict headers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

pub const CSS: &str = include_str!("../../assets/login.css");

/// No script, no frames, nothing from any other origin.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A full page around `main`.
pub fn page(status: StatusCode, title: &str, main: Markup) -> Response {
    page_with_form_target(status, title, main, None)
}

/// The origin (`scheme://host:port`) of a URL, if it is a plain one.
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let plain = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    };
    (matches!(scheme, "http" | "https") && !authority.is_empty() && plain(authority))
        .then(|| format!("{scheme}://{authority}"))
}

/// A page whose form may end in a redirect to `form_target`'s origin. Browsers apply
/// `form-action` to the redirects that follow a form POST, so the login form must
/// allow the one validated redirect_uri origin of the request it completes.
pub fn page_with_form_target(
    status: StatusCode,
    title: &str,
    main: Markup,
    form_target: Option<&str>,
) -> Response {
    page_with(status, title, main, form_target, false)
}

/// Like [`page_with_form_target`] for a page that loads the provider's own scripts
/// (`script-src 'self'`, `connect-src 'self'`: still no inline script, no other origin).
pub fn page_with_script(
    status: StatusCode,
    title: &str,
    main: Markup,
    form_target: Option<&str>,
) -> Response {
    page_with(status, title, main, form_target, true)
}

/// The document around a page's `main`.
fn document(title: &str, main: Markup) -> String {
    airlock_daemon::html::document(
        title,
        "/assets/login.css",
        html! {
            main { (main) }
            footer { "Airlock inside sign-in" }
        },
    )
    .into_string()
}

fn page_with(
    status: StatusCode,
    title: &str,
    main: Markup,
    form_target: Option<&str>,
    script: bool,
) -> Response {
    let mut csp = match form_target.and_then(origin) {
        Some(o) => CSP.replace("form-action 'self'", &format!("form-action 'self' {o}")),
        None => CSP.to_string(),
    };
    if script {
        csp = csp.replacen(
            "default-src 'none';",
            "default-src 'none'; script-src 'self'; connect-src 'self';",
            1,
        );
    }
    let mut r = (status, document(title, main)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static(CSP)),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An error page for requests that cannot be sent back to a client.
pub fn error_page(status: StatusCode, title: &str, message: &str, code: &str) -> Response {
    let main = html! {
        h1 { (title) }
        p role="alert" class="error" { (message) }
        p class="hint" {
            "Error code: " code { (code) } ". Go back to the application and start the sign-in again; if it keeps failing, give this code to your administrator."
        }
    };
    page(status, title, main)
}

/// A form-error paragraph (`role="alert"`) if there is a message.
pub fn alert(id: Option<&str>, class: &str, message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message {
            p id=[id] class=(class) role="alert" { (m) }
        }
    }
}

/// The stylesheet (cacheable).
pub fn css() -> Response {
    let mut r = CSS.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            origin("http://127.0.0.1:2/cb?x").as_deref(),
            Some("http://127.0.0.1:2")
        );
        assert_eq!(
            origin("https://app.inside/cb").as_deref(),
            Some("https://app.inside")
        );
        assert_eq!(origin("https://a b/"), None);
        assert_eq!(origin("javascript://x"), None);
    }

    #[test]
    fn pages_escape_markup() {
        let page = document("<t>", html! { p { ("<a href=\"x\">'&'</a>") } });
        assert!(
            page.contains("<title>&lt;t&gt; · Airlock</title>"),
            "{page}"
        );
        assert!(
            page.contains("<p>&lt;a href=&quot;x&quot;&gt;'&amp;'&lt;/a&gt;</p>"),
            "{page}"
        );
        assert!(
            page.contains("<main><p>") && page.contains("<footer>Airlock inside sign-in</footer>")
        );
    }

    #[test]
    fn assets_have_no_external_urls_or_scripts() {
        let page = document("t", html! {});
        for a in [page.as_str(), CSS] {
            assert!(!a.contains("http://") && !a.contains("https://") && !a.contains("//cdn"));
            assert!(!a.to_lowercase().contains("<script"));
            assert!(!a.contains("@import") && !a.contains("url("));
        }
    }
}
