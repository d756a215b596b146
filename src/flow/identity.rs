//! How a Plex account becomes OIDC claims (PLEX_API.md §9).

use serde_json::{Map, Value};

use crate::oidc::Identity;
use crate::plex::PlexUser;

/// `sub` is the numeric account id as a string: immutable, unlike username or e-mail, and a string
/// because go-oidc, mod_auth_openidc and Authlib reject a numeric `sub`.
pub fn identity_from_plex(user: &PlexUser) -> Identity {
    let non_empty = |s: &Option<String>| s.as_ref().filter(|v| !v.is_empty()).cloned();
    let preferred_username = non_empty(&user.username).or_else(|| non_empty(&user.title));
    let name = non_empty(&user.friendly_name).or_else(|| non_empty(&user.title));
    let mut extra_profile = Map::new();
    if !user.uuid.is_empty() {
        extra_profile.insert("plex_uuid".into(), Value::String(user.uuid.clone()));
    }
    Identity {
        subject: user.id.to_string(),
        preferred_username,
        name,
        picture: non_empty(&user.thumb),
        email: non_empty(&user.email),
        email_verified: user.confirmed,
        groups: Vec::new(),
        extra_profile,
    }
}

/// The name a person recognises their account by, for the denial page.
pub fn account_label(user: &PlexUser) -> String {
    [&user.username, &user.title, &user.email]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("Plex account {}", user.id))
}
