//! The frame of the HTML pages both daemons serve, as a maud template.
//!
//! Pages are maud templates: every value put into one is escaped unless it is wrapped in
//! `PreEscaped` (which the daemons use only for markup other templates made), so there is
//! one escaping path for the login pages, the portal and the status page, not one
//! hand-written function per daemon.

use maud::{Markup, PreEscaped, html};

/// The doctype as the pages always wrote it (maud's `DOCTYPE` is upper-case).
pub const DOCTYPE: PreEscaped<&str> = PreEscaped("<!doctype html>");

/// A whole document: `title · Airlock`, the daemon's own style sheet (a path on its own
/// origin: pages load nothing from another), then `body`.
pub fn document(title: &str, stylesheet: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · Airlock" }
                link rel="stylesheet" href=(stylesheet);
            }
            body { (body) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_the_frame_is_plain() {
        let page = document(
            "<b>\"x\" & y</b>",
            "/assets/a.css",
            html! { p { ("<script>alert(1)</script>") } },
        )
        .into_string();
        assert!(
            page.starts_with("<!doctype html><html lang=\"en\"><head>"),
            "{page}"
        );
        assert!(
            page.contains("<title>&lt;b&gt;&quot;x&quot; &amp; y&lt;/b&gt; · Airlock</title>"),
            "{page}"
        );
        assert!(
            page.contains("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
            "{page}"
        );
        assert!(page.contains(r#"<link rel="stylesheet" href="/assets/a.css">"#));
        assert!(!page.contains("<script") && !page.contains("http"));
    }
}
