//! plex-oidc: an OpenID Connect provider that signs people in with Plex and admits those the operator's
//! Plex Media Server is shared with.
//!
//! Imports go one way: `http` -> `flow` -> {`oidc`, `plex`, `keys`, `seal`}. `oidc` and `plex` never know
//! each other; only `flow` joins them.

pub mod assets;
pub mod backchannel;
pub mod cli;
pub mod clock;
pub mod config;
pub mod flow;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod oidc;
pub mod plex;
pub mod random;
pub mod seal;
pub mod startup;
pub mod store;
pub mod telemetry;
