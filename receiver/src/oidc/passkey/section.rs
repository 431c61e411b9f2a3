//! The passkey part of the login page (its script is `/assets/passkey.js`).

use crate::oidc::html::escape;

/// The passkey part of the login page. Hidden until the script finds WebAuthn in the
/// browser: without JavaScript the page is the transfer-code form alone.
pub fn section(txn: &str, csrf: &str) -> String {
    format!(
        r#"<section id="passkey" aria-labelledby="passkey-title" hidden>
<h2 id="passkey-title">With a passkey</h2>
<form id="passkey-form" method="post" action="{action}" data-options="{options}">
<input type="hidden" name="txn" value="{txn}">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="ceremony" value="">
<input type="hidden" name="credential" value="">
<label for="username">Email address (optional)</label>
<p id="username-hint" class="hint">Leave it empty to pick your passkey from a list.</p>
<input type="text" class="plain" id="username" name="username" autocomplete="username webauthn" spellcheck="false" maxlength="200" aria-describedby="username-hint">
<button type="submit" id="passkey-button">Sign in with a passkey</button>
</form>
<p id="passkey-status" class="hint" role="status"></p>
<h2>Or with a transfer code</h2>
</section>
<script src="{script}" defer></script>
"#,
        action = crate::oidc::passkey::paths::SIGN_IN,
        options = crate::oidc::passkey::paths::SIGN_IN_OPTIONS,
        txn = escape(txn),
        csrf = escape(csrf),
        script = crate::oidc::passkey::paths::SCRIPT,
    )
}
