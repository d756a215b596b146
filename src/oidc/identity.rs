//! Who signed in, as OIDC claims. Built by the login flow; this module does not know where it came from.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Scopes;

/// The end user's claims. `extra_profile` carries provider-specific profile claims (e.g. `plex_uuid`)
/// released with the `profile` scope.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra_profile: Map<String, Value>,
}

impl Identity {
    /// The claims `scopes` release, without `sub` (callers place it). A claim whose value is unknown is
    /// omitted rather than sent as null (OIDC Core §5.3.2).
    pub fn scoped_claims(&self, scopes: Scopes, into: &mut Map<String, Value>) {
        if scopes.profile {
            put(into, "preferred_username", &self.preferred_username);
            put(into, "name", &self.name);
            put(into, "picture", &self.picture);
            for (k, v) in &self.extra_profile {
                into.insert(k.clone(), v.clone());
            }
        }
        if scopes.email && self.email.is_some() {
            put(into, "email", &self.email);
            into.insert("email_verified".into(), Value::Bool(self.email_verified));
        }
        if scopes.groups {
            into.insert(
                "groups".into(),
                Value::Array(self.groups.iter().cloned().map(Value::String).collect()),
            );
        }
    }
}

fn put(into: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        into.insert(key.to_owned(), Value::String(v.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            subject: "13692262".into(),
            preferred_username: Some("alice".into()),
            name: Some("Alice".into()),
            picture: None,
            email: Some("a@example.com".into()),
            email_verified: true,
            groups: vec![],
            extra_profile: Map::from_iter([("plex_uuid".to_string(), Value::from("dae343c1"))]),
        }
    }

    #[test]
    fn claims_follow_the_scopes_and_omit_unknown_values() {
        let mut m = Map::new();
        alice().scoped_claims(Scopes::parse("openid profile"), &mut m);
        assert_eq!(m.get("preferred_username"), Some(&Value::from("alice")));
        assert_eq!(m.get("plex_uuid"), Some(&Value::from("dae343c1")));
        assert!(!m.contains_key("picture"));
        assert!(!m.contains_key("email"));

        let mut m = Map::new();
        alice().scoped_claims(Scopes::parse("openid email"), &mut m);
        assert_eq!(m.get("email_verified"), Some(&Value::Bool(true)));
        assert!(!m.contains_key("name"));
    }

    #[test]
    fn an_account_without_email_gets_neither_email_claim() {
        let mut id = alice();
        id.email = None;
        let mut m = Map::new();
        id.scoped_claims(Scopes::parse("openid email"), &mut m);
        assert!(m.is_empty());
    }
}
