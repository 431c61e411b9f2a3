//! The WebAuthn relying party: ceremonies built and checked by webauthn-rs-core, and
//! every way a response can be refused, each with a stable reason and words for people.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::Digest;
use webauthn_rs_core::WebauthnCore;
use webauthn_rs_core::error::WebauthnError;
use webauthn_rs_core::proto::{
    AttestationConveyancePreference, AuthenticationResult, AuthenticationState, COSEAlgorithm,
    Credential, PublicKeyCredential, RegisterPublicKeyCredential, RegistrationState,
    UserVerificationPolicy,
};

use crate::oidc::passkey::config::{AttestationPreference, PasskeyConfig, UserVerification};
use airlock_daemon::config_check::KeyProblem;

/// Largest WebAuthn response accepted (a passkey response is well under 2 KiB; an
/// attestation with a certificate chain a few KiB).
pub const MAX_RESPONSE: usize = 8 * 1024;

/// Why a passkey ceremony was refused. Nothing is stored when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the passkey response is not valid WebAuthn JSON")]
    Malformed,
    #[error("the passkey response is larger than {MAX_RESPONSE} bytes")]
    Oversized,
    #[error("this passkey request was already used or has expired")]
    Replayed,
    #[error("the response was made for another web site (origin)")]
    WrongOrigin,
    #[error("the response was made for another relying party id")]
    WrongRpId,
    #[error("the response answers another challenge")]
    WrongChallenge,
    #[error("the response's signature does not verify (altered in transit?)")]
    BadSignature,
    #[error("this passkey is not registered here")]
    UnknownCredential,
    #[error("this passkey belongs to another person")]
    OtherUsersCredential,
    #[error("the authenticator's signature counter went backwards: it may have been cloned")]
    CounterRegression,
    #[error("the authenticator changed its backup eligibility")]
    BackupEligibilityChanged,
    #[error("the authenticator did not verify the person (PIN or biometric)")]
    UserNotVerified,
    #[error("the person's access was withdrawn outside")]
    Revoked,
    #[error("the person's outside approval has expired")]
    ApprovalExpired,
    #[error("the passkey reached the end of its lifetime")]
    PasskeyExpired,
    #[error("the passkey was switched off")]
    Disabled,
    #[error("the passkey was switched off when the person's outside approval expired")]
    DisabledAtExpiry,
    #[error("a passkey can only be created right after a sign-in with a transfer code")]
    NotFreshSignIn,
    #[error("the person already has the maximum number of passkeys")]
    TooMany,
    #[error("this authenticator is already registered")]
    AlreadyRegistered,
    #[error("people without an outside pre-approval may not create passkeys here")]
    NotEligible,
    #[error("the application asked for a sign-in with a transfer code")]
    TransferCodeRequired,
    #[error("the WebAuthn response was refused: {0}")]
    Invalid(String),
}

impl Refusal {
    /// Stable label for logs, metrics and the event log.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Oversized => "oversized",
            Refusal::Replayed => "replayed",
            Refusal::WrongOrigin => "wrong_origin",
            Refusal::WrongRpId => "wrong_rp_id",
            Refusal::WrongChallenge => "wrong_challenge",
            Refusal::BadSignature => "bad_signature",
            Refusal::UnknownCredential => "unknown_credential",
            Refusal::OtherUsersCredential => "other_users_credential",
            Refusal::CounterRegression => "counter_regression",
            Refusal::BackupEligibilityChanged => "backup_eligibility_changed",
            Refusal::UserNotVerified => "user_not_verified",
            Refusal::Revoked => "revoked",
            Refusal::ApprovalExpired => "approval_expired",
            Refusal::PasskeyExpired => "passkey_expired",
            Refusal::Disabled => "disabled",
            Refusal::DisabledAtExpiry => "disabled_expired",
            Refusal::NotFreshSignIn => "not_fresh_sign_in",
            Refusal::TooMany => "too_many",
            Refusal::AlreadyRegistered => "already_registered",
            Refusal::NotEligible => "not_eligible",
            Refusal::TransferCodeRequired => "transfer_code_required",
            Refusal::Invalid(_) => "invalid",
        }
    }

    /// What the person reads, with what to do next.
    pub fn message(&self) -> String {
        match self {
            Refusal::Revoked => "Your access was withdrawn by your administrator outside, so your passkeys no longer work. If you should still have access, ask your administrator to approve you again; then sign in with a new transfer code.".into(),
            Refusal::ApprovalExpired => "Your approval to enter this network has expired, so your passkeys no longer work. Ask your administrator outside to renew it, or sign in outside for a new transfer code.".into(),
            Refusal::PasskeyExpired => "This passkey has reached the end of its allowed lifetime. Sign in with a transfer code from outside, then create a new passkey.".into(),
            Refusal::Disabled => "This passkey was switched off because your access was withdrawn outside. If you should still have access, ask your administrator to approve you again; then sign in with a new transfer code and create a new passkey.".into(),
            Refusal::DisabledAtExpiry => "This passkey was switched off when your approval to enter this network expired. Ask your administrator outside to renew the approval; then sign in with a new transfer code and create a new passkey.".into(),
            Refusal::CounterRegression => "This passkey was refused because it looks copied (its counter went backwards). Sign in with a transfer code, remove the passkey on your account page and tell your administrator.".into(),
            Refusal::UnknownCredential => "This passkey is not registered here (it may have been removed). Sign in with a transfer code instead.".into(),
            Refusal::NotFreshSignIn => "A passkey can only be created within a few minutes of signing in with a transfer code. Sign in with a new transfer code from outside and try again.".into(),
            Refusal::TooMany => "You already have the maximum number of passkeys. Remove one on your account page first.".into(),
            Refusal::NotEligible => "Passkeys are only available to people pre-approved outside. Keep signing in with transfer codes.".into(),
            Refusal::TransferCodeRequired => "This application asks you to sign in with a fresh transfer code: sign in outside and type the code shown there.".into(),
            Refusal::UserNotVerified => "Your authenticator did not check your PIN or fingerprint. Try again and unlock it when asked.".into(),
            other => format!("The passkey sign-in did not work: {other}. Try again, or use a transfer code."),
        }
    }
}

fn refuse(e: WebauthnError) -> Refusal {
    use WebauthnError as W;
    match e {
        W::InvalidRPOrigin | W::CredentialCrossOrigin => Refusal::WrongOrigin,
        W::InvalidRPIDHash => Refusal::WrongRpId,
        W::MismatchedChallenge | W::ChallengeNotFound | W::InvalidClientDataType => {
            Refusal::WrongChallenge
        }
        W::AuthenticationFailure => Refusal::BadSignature,
        W::CredentialNotFound => Refusal::OtherUsersCredential,
        W::CredentialPossibleCompromise => Refusal::CounterRegression,
        W::CredentialBackupEligibilityInconsistent => Refusal::BackupEligibilityChanged,
        W::UserNotVerified | W::UserNotPresent => Refusal::UserNotVerified,
        W::ParseBase64Failure(_)
        | W::ParseCBORFailure(_)
        | W::ParseJSONFailure(_)
        | W::ParseNOMFailure
        | W::ParseInsufficientBytesAvailable => Refusal::Malformed,
        W::CredentialExcludedFromRequest | W::CredentialAlreadyExists => Refusal::AlreadyRegistered,
        other => Refusal::Invalid(other.to_string()),
    }
}

/// The relying party of one provider: rp id and origin from the issuer.
#[derive(Debug, Clone)]
pub struct RelyingParty {
    core: WebauthnCore,
    policy: UserVerificationPolicy,
    attestation: AttestationConveyancePreference,
    pub rp_id: String,
}

/// A ceremony's browser half (JSON for `navigator.credentials`) and server half.
pub struct Started {
    pub options: serde_json::Value,
    pub state: serde_json::Value,
}

fn json_err(e: serde_json::Error) -> Refusal {
    Refusal::Invalid(format!("ceremony state: {e}"))
}

impl RelyingParty {
    pub fn new(issuer: &str, cfg: &PasskeyConfig) -> Result<Self, KeyProblem> {
        let url = url::Url::parse(issuer)
            .map_err(|e| KeyProblem::new("oidc.issuer", format!("not a URL ({e})")))?;
        let Some(host) = url.host_str().map(str::to_string) else {
            return Err(KeyProblem::new(
                "oidc.issuer",
                "has no host: passkeys need one as their relying-party id",
            ));
        };
        if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
            tracing::warn!(
                issuer,
                "passkeys: the issuer's host is an IP address, which browsers refuse as a WebAuthn relying-party id; give the provider a DNS name (localhost on loopback)"
            );
        }
        let core = WebauthnCore::new_unsafe_experts_only(
            &cfg.rp_name,
            &host,
            vec![url],
            std::time::Duration::from_secs(cfg.ceremony_timeout_secs),
            Some(false),
            Some(false),
        );
        Ok(RelyingParty {
            core,
            policy: match cfg.user_verification {
                UserVerification::Required => UserVerificationPolicy::Required,
                UserVerification::Preferred => UserVerificationPolicy::Preferred,
            },
            attestation: match cfg.attestation {
                AttestationPreference::None => AttestationConveyancePreference::None,
                AttestationPreference::Indirect => AttestationConveyancePreference::Indirect,
                AttestationPreference::Direct => AttestationConveyancePreference::Direct,
            },
            rp_id: host,
        })
    }

    /// The user handle of a local `sub`: a hash, so no personal data reaches the
    /// authenticator, and the same for all of a person's passkeys.
    pub fn user_handle(sub: &str) -> Vec<u8> {
        let mut h = sha2::Sha256::new();
        h.update(b"airlock passkey user handle\0");
        h.update(sub.as_bytes());
        h.finalize().to_vec()
    }

    /// Enrolment options: a discoverable (resident) credential, ES256/EdDSA/RS256.
    pub fn start_enrol(
        &self,
        sub: &str,
        username: &str,
        display_name: &str,
        exclude: Vec<Credential>,
    ) -> Result<Started, Refusal> {
        let exclude = exclude.into_iter().map(|c| c.cred_id).collect::<Vec<_>>();
        let builder = self
            .core
            .new_challenge_register_builder(&Self::user_handle(sub), username, display_name)
            .map_err(refuse)?
            .attestation(self.attestation.clone())
            .credential_algorithms(vec![
                COSEAlgorithm::ES256,
                COSEAlgorithm::EDDSA,
                COSEAlgorithm::RS256,
            ])
            .require_resident_key(true)
            .user_verification_policy(self.policy)
            .exclude_credentials(Some(exclude));
        let (ccr, state) = self
            .core
            .generate_challenge_register(builder)
            .map_err(refuse)?;
        Ok(Started {
            options: serde_json::to_value(ccr).map_err(json_err)?,
            state: serde_json::to_value(state).map_err(json_err)?,
        })
    }

    /// Checks a `navigator.credentials.create` response against its ceremony.
    pub fn finish_enrol(
        &self,
        response: &str,
        state: &serde_json::Value,
    ) -> Result<Credential, Refusal> {
        if response.len() > MAX_RESPONSE {
            return Err(Refusal::Oversized);
        }
        let reg: RegisterPublicKeyCredential =
            serde_json::from_str(response).map_err(|_| Refusal::Malformed)?;
        let state: RegistrationState = serde_json::from_value(state.clone()).map_err(json_err)?;
        self.core
            .register_credential(&reg, &state, None)
            .map_err(refuse)
    }

    /// Sign-in options: usernameless (discoverable) when `creds` is empty, else limited
    /// to those credentials (sign-in by name).
    pub fn start_sign_in(&self, creds: Vec<Credential>) -> Result<Started, Refusal> {
        let builder = self
            .core
            .new_challenge_authenticate_builder(creds, Some(self.policy))
            .map_err(refuse)?;
        let (rcr, state) = self
            .core
            .generate_challenge_authenticate(builder)
            .map_err(refuse)?;
        Ok(Started {
            options: serde_json::to_value(rcr).map_err(json_err)?,
            state: serde_json::to_value(state).map_err(json_err)?,
        })
    }

    /// Checks a `navigator.credentials.get` response against its ceremony and the
    /// stored credential it names (`discoverable`: the ceremony allowed any).
    pub fn finish_sign_in(
        &self,
        response: &PublicKeyCredential,
        state: &serde_json::Value,
        stored: &Credential,
        discoverable: bool,
    ) -> Result<AuthenticationResult, Refusal> {
        let mut state: AuthenticationState =
            serde_json::from_value(state.clone()).map_err(json_err)?;
        if discoverable {
            state.set_allowed_credentials(vec![stored.clone()]);
        }
        self.core
            .authenticate_credential(response, &state)
            .map_err(refuse)
    }
}

/// Parses a sign-in response (size first).
pub fn parse_assertion(response: &str) -> Result<PublicKeyCredential, Refusal> {
    if response.len() > MAX_RESPONSE {
        return Err(Refusal::Oversized);
    }
    serde_json::from_str(response).map_err(|_| Refusal::Malformed)
}

/// base64url (no padding) of raw bytes: credential ids and user handles as stored.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Applies an accepted sign-in to the stored credential: the counter moves forward
/// (never back: a race with a clone is caught here too), backup state follows the
/// authenticator. Returns false (nothing to write) if the counter did not advance.
pub fn advance(stored: &mut Credential, result: &AuthenticationResult) -> bool {
    if (result.counter() > 0 || stored.counter > 0) && result.counter() <= stored.counter {
        return false;
    }
    stored.counter = result.counter();
    stored.backup_state = result.backup_state();
    true
}
