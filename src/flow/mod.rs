//! The login flow: the only place that knows both the OIDC provider and Plex.
//!
//! A relying party's authorization request becomes a pending login bound to a browser cookie; the page
//! asks us to start a Plex PIN, then polls; we poll plex.tv for that PIN, check the account's access to
//! the operator's server, and finally hand the provider an identity to mint a code for.

mod access;
mod grants;
mod identity;
mod login;
mod session;

pub use access::{Access, AccessChecker};
pub use grants::{AuthorizeOutcome, LogoutError, LogoutOutcome, LogoutRequest};
pub use identity::{account_label, identity_from_plex};
pub use login::{
    FinishOutcome, FlowParts, LoginError, LoginFlow, LoginSettings, LoginState, LoginSummary,
    PollResult, StartResult,
};
pub use session::{Session, SessionCodec};
