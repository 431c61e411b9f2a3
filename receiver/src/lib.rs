#![forbid(unsafe_code)]

pub mod oidc;
