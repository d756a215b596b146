//! The plex.tv adapter: PINs, the account behind a token, and whether that account may use the
//! operator's server. Knows nothing about OIDC, HTTP routes or salvo; `flow` joins it to the rest.
//!
//! The wire protocol is described in `PLEX_API.md`; this module keeps only what plex-oidc needs and
//! parses leniently, because plex.tv adds, drops and nulls fields without notice.

mod access;
mod client;
mod error;
mod model;

pub use access::{ServerAccess, server_access};
pub use client::{PlexClient, PlexClientSettings, describe_metrics};
pub use error::PlexError;
pub use model::{Pin, PinId, PlexToken, PlexUser, Resource};
