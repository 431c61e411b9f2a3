//! What the portal's handlers and its mirror task share.

use super::config::PortalConfig;
use super::http_client::HttpClient;
use super::idp::Idp;
use super::pending::PendingStore;
use crate::config::Config;

/// Everything the handlers and the mirror task share.
pub struct Portal {
    /// The whole sender config: the policy and the spool directory come from here.
    pub config: Config,
    pub settings: PortalConfig,
    pub idps: Vec<Idp>,
    pub http: HttpClient,
    pub pending: PendingStore,
}
