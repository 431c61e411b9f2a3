//! The error of the sealing pipeline's threads (ingester, pending reader, signing
//! engine, committer).

use airlock_protocol::seal::SealError;
use thiserror::Error;

use crate::outbox::OutboxError;
use crate::spool::SpoolError;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("sealing failed: {0}")]
    Seal(#[from] SealError),
    #[error("the link task stopped; see the previous error")]
    LinkClosed,
    #[error("engine thread: {0}")]
    Thread(String),
}
