//! The passkey part of the login page (its script is `/assets/passkey.js`).

use maud::{Markup, html};

use crate::oidc::passkey::paths;

/// The passkey part of the login page. Hidden until the script finds WebAuthn in the
/// browser: without JavaScript the page is the transfer-code form alone.
pub fn section(txn: &str, csrf: &str) -> Markup {
    html! {
        section id="passkey" aria-labelledby="passkey-title" hidden {
            h2 id="passkey-title" { "With a passkey" }
            form id="passkey-form" method="post" action=(paths::SIGN_IN) data-options=(paths::SIGN_IN_OPTIONS) {
                input type="hidden" name="txn" value=(txn);
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="ceremony" value="";
                input type="hidden" name="credential" value="";
                label for="username" { "Email address (optional)" }
                p id="username-hint" class="hint" { "Leave it empty to pick your passkey from a list." }
                input type="text" class="plain" id="username" name="username" autocomplete="username webauthn" spellcheck="false" maxlength="200" aria-describedby="username-hint";
                button type="submit" id="passkey-button" { "Sign in with a passkey" }
            }
            p id="passkey-status" class="hint" role="status" {}
            h2 { "Or with a transfer code" }
        }
        script src=(paths::SCRIPT) defer {}
    }
}
