//! Whether a Plex account may (still) use the operator's server, asked of plex.tv at most once per
//! `recheck_interval` per account, with the last known answer standing through short plex.tv outages.

use std::sync::Arc;

use quick_cache::sync::Cache;

use super::identity::{account_label, identity_from_plex};
use crate::clock::Clock;
use crate::oidc::Identity;
use crate::plex::{PlexClient, PlexError, PlexToken, ServerAccess, server_access};

#[derive(Debug, Clone)]
pub enum Access {
    /// With the account's current claims.
    Allowed(Identity),
    Denied {
        account: String,
    },
    /// plex.tv no longer accepts the token (signed out of the device, password changed).
    TokenRejected,
    Unavailable,
}

#[derive(Debug, Clone)]
struct Record {
    checked_at: u64,
    /// `None` after a denial.
    identity: Option<Identity>,
    account: String,
}

/// The `groups` claim: how the account reaches the server, so apps can map roles (an admin role for the
/// owner, say) without a directory of their own.
pub fn groups_for(access: &ServerAccess) -> Vec<String> {
    let relation = if access.owned {
        "plex:owner"
    } else if access.home {
        "plex:home"
    } else {
        "plex:shared"
    };
    vec!["plex:user".to_owned(), relation.to_owned()]
}

pub struct AccessChecker {
    plex: PlexClient,
    server_id: String,
    clock: Arc<dyn Clock>,
    recheck_interval: u64,
    outage_grace: u64,
    cache: Arc<Cache<String, Record>>,
}

impl AccessChecker {
    pub fn new(
        plex: PlexClient,
        server_id: String,
        clock: Arc<dyn Clock>,
        recheck_interval: u64,
        outage_grace: u64,
        capacity: usize,
    ) -> AccessChecker {
        AccessChecker {
            plex,
            server_id,
            clock,
            recheck_interval,
            outage_grace,
            cache: Arc::new(Cache::new(capacity.max(16))),
        }
    }

    /// Keeps `previous`'s answers (config reload).
    pub fn adopt_state_of(mut self, previous: &AccessChecker) -> AccessChecker {
        self.cache = previous.cache.clone();
        self
    }

    pub fn plex(&self) -> &PlexClient {
        &self.plex
    }

    /// Fetches the account and its resources concurrently (two round trips would otherwise be sequential)
    /// and records the answer.
    pub async fn fetch(&self, token: &PlexToken) -> Result<Access, PlexError> {
        let (user, resources) = tokio::join!(self.plex.user(token), self.plex.resources(token));
        let (user, resources) = match (user, resources) {
            (Ok(u), Ok(r)) => (u, r),
            (Err(PlexError::Unauthorized), _) | (_, Err(PlexError::Unauthorized)) => {
                return Ok(Access::TokenRejected);
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        let mut identity = identity_from_plex(&user);
        let account = account_label(&user);
        let access = server_access(&resources, &self.server_id);
        let allowed = access.is_some();
        if let Some(access) = &access {
            identity.groups = groups_for(access);
        }
        self.cache.insert(
            identity.subject.clone(),
            Record {
                checked_at: self.clock.unix_seconds(),
                identity: allowed.then(|| identity.clone()),
                account: account.clone(),
            },
        );
        Ok(if allowed {
            Access::Allowed(identity)
        } else {
            Access::Denied { account }
        })
    }

    /// Re-checks `subject`'s access with its sealed token. `last_known_allowed_at` is when access was last
    /// confirmed outside this cache (a session's login, a grant's last refresh), for after a restart.
    pub async fn recheck(
        &self,
        subject: &str,
        fallback: &Identity,
        token: &PlexToken,
        last_known_allowed_at: u64,
    ) -> Access {
        let now = self.clock.unix_seconds();
        let cached = self.cache.get(subject);
        if let Some(record) = &cached
            && now.saturating_sub(record.checked_at) < self.recheck_interval
        {
            return match &record.identity {
                Some(identity) => Access::Allowed(identity.clone()),
                None => Access::Denied {
                    account: record.account.clone(),
                },
            };
        }
        match self.fetch(token).await {
            Ok(access) => access,
            Err(e) => {
                let (last_ok, identity) = match &cached {
                    Some(Record {
                        checked_at,
                        identity: Some(identity),
                        ..
                    }) => ((*checked_at).max(last_known_allowed_at), identity.clone()),
                    Some(Record {
                        identity: None,
                        account,
                        ..
                    }) => {
                        return Access::Denied {
                            account: account.clone(),
                        };
                    }
                    None => (last_known_allowed_at, fallback.clone()),
                };
                if now.saturating_sub(last_ok) <= self.outage_grace {
                    tracing::warn!(error = %e, "plex.tv unavailable during an access re-check; the last known answer stands");
                    Access::Allowed(identity)
                } else {
                    tracing::warn!(error = %e, "plex.tv unavailable during an access re-check, beyond the outage grace");
                    Access::Unavailable
                }
            }
        }
    }
}
