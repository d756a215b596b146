//! The OpenID Connect protocol engine: authorization requests, codes, tokens, userinfo and discovery.
//!
//! It knows nothing about Plex or HTTP frameworks: callers hand it parsed parameters and an [`Identity`],
//! and it hands back redirect URLs, JSON documents and typed errors whose `Display` is the RFC wire code.

mod authorize;
mod client;
mod discovery;
mod error;
mod identity;
mod params;
mod provider;
mod scope;
mod token;

pub use authorize::{AuthorizationRequest, Prompt, redirect_with as append_query};
pub use client::{Client, ClientRegistry, ClientSecret};
pub use discovery::Endpoints;
pub use error::{AuthorizeError, ErrorCode, TokenError, UserinfoError};
pub use identity::Identity;
pub use params::{ParamError, Params};
pub use provider::{
    GrantContext, IdTokenHint, Provider, ProviderSettings, RefreshGrant, RefreshPayload,
    TokenResponse,
};
pub use scope::Scopes;
pub use token::ClientCredentials;
