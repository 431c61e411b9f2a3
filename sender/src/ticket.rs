//! Just-in-time login tickets: a fresh transfer code, of which only a slow hash crosses.

use airlock_protocol::message::LoginTicket;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use thiserror::Error;

use crate::policy::TicketRequest;
use crate::transfer_code::TransferCode;

/// argon2id cost: 19 MiB, 2 passes, 1 lane (the OWASP baseline). The receiver reads the
/// parameters from the PHC string, so they can be raised without a protocol change.
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
pub const ARGON2_PASSES: u32 = 2;
pub const ARGON2_LANES: u32 = 1;

#[derive(Debug, Error)]
pub enum TicketError {
    #[error("argon2id hashing failed: {0}")]
    Hash(String),
}

/// The ticket to send and the code to show the person (never stored, never logged).
pub struct IssuedTicket {
    pub ticket: LoginTicket,
    pub code: TransferCode,
}

/// Makes the transfer code and the LoginTicket that carries its hash.
pub fn issue(request: TicketRequest) -> Result<IssuedTicket, TicketError> {
    let mut rng = rand::rngs::OsRng;
    let code = TransferCode::generate(&mut rng);
    let code_hash = hash_secret(&code.secret())?;
    let ticket = LoginTicket {
        locator: code.locator(),
        code_hash,
        issuer: request.issuer,
        subject: request.subject,
        claims: request.claims,
        approval: request.approval,
        expires_at: request.expires_at,
    };
    Ok(IssuedTicket { ticket, code })
}

/// argon2id PHC string of the secret part, with a random salt.
pub fn hash_secret(secret: &str) -> Result<String, TicketError> {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None)
        .map_err(|e| TicketError::Hash(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| TicketError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_protocol::message::{Approval, Claims};
    use argon2::password_hash::{PasswordHash, PasswordVerifier};

    #[test]
    fn the_hash_verifies_the_secret_and_nothing_else() {
        let issued = issue(TicketRequest {
            issuer: "https://idp".into(),
            subject: "s".into(),
            claims: Claims::default(),
            approval: Approval::default(),
            expires_at: 10,
        })
        .unwrap();
        let phc = PasswordHash::new(&issued.ticket.code_hash).unwrap();
        assert_eq!(phc.algorithm.as_str(), "argon2id");
        let argon = Argon2::default();
        assert!(
            argon
                .verify_password(issued.code.secret().as_bytes(), &phc)
                .is_ok()
        );
        assert!(argon.verify_password(b"WRONG", &phc).is_err());
        assert_eq!(issued.ticket.locator, issued.code.locator());
        assert!(!issued.ticket.code_hash.contains(&issued.code.secret()));
    }
}
