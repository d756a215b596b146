//! Who may use the operator's server: decided from the user's own `/api/v2/resources` (PLEX_API §6a),
//! which lists the owner's server, Plex Home servers and accepted shares, and nothing pending.

use serde::{Deserialize, Serialize};

use super::model::Resource;

/// How an account reaches the operator's server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerAccess {
    pub server_name: Option<String>,
    /// The account owns the server.
    pub owned: bool,
    /// Reached through Plex Home.
    pub home: bool,
    /// The owner's name (`sourceTitle`) when the server is shared with the account.
    pub shared_by: Option<String>,
}

/// Access iff an entry has `server` in its comma-separated `provides` and `clientIdentifier ==
/// server_id`. A client or player that happens to carry the same identifier grants nothing.
pub fn server_access(resources: &[Resource], server_id: &str) -> Option<ServerAccess> {
    let server_id = server_id.trim();
    if server_id.is_empty() {
        return None;
    }
    let matching: Vec<&Resource> = resources
        .iter()
        .filter(|r| r.client_identifier.as_deref() == Some(server_id) && provides_server(r))
        .collect();
    if matching.is_empty() {
        return None;
    }
    // plex.tv may list a server twice (e.g. owned and via Home); the strongest relation wins.
    let owned = matching.iter().any(|r| r.owned);
    Some(ServerAccess {
        server_name: matching.iter().find_map(|r| r.name.clone()),
        owned,
        home: matching.iter().any(|r| r.home),
        shared_by: if owned {
            None
        } else {
            matching.iter().find_map(|r| r.source_title.clone())
        },
    })
}

fn provides_server(resource: &Resource) -> bool {
    resource
        .provides
        .as_deref()
        .is_some_and(|p| p.split(',').any(|role| role.trim() == "server"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MID: &str = "5a1f0e8c3b2d4e6f7a8b9c0d1e2f3a4b5c6d7e8f";

    fn server(id: &str) -> Resource {
        Resource {
            name: Some("Srv".into()),
            client_identifier: Some(id.into()),
            provides: Some("server".into()),
            ..Resource::default()
        }
    }

    #[test]
    fn the_owner_of_the_server_has_access_as_owner() {
        let resources = [Resource {
            owned: true,
            ..server(MID)
        }];
        assert_eq!(
            server_access(&resources, MID),
            Some(ServerAccess {
                server_name: Some("Srv".into()),
                owned: true,
                home: false,
                shared_by: None,
            })
        );
    }

    #[test]
    fn a_shared_server_names_who_shared_it() {
        let resources = [Resource {
            owner_id: Some(1),
            source_title: Some("alice".into()),
            ..server(MID)
        }];
        let access = server_access(&resources, MID).unwrap();
        assert!(!access.owned);
        assert_eq!(access.shared_by.as_deref(), Some("alice"));
    }

    #[test]
    fn a_home_server_grants_access_through_home() {
        let resources = [Resource {
            home: true,
            ..server(MID)
        }];
        let access = server_access(&resources, MID).unwrap();
        assert!(access.home);
        assert!(!access.owned);
    }

    #[test]
    fn another_server_grants_nothing() {
        let resources = [server("0000000000000000000000000000000000000000")];
        assert_eq!(server_access(&resources, MID), None);
    }

    #[test]
    fn a_client_carrying_the_server_id_grants_nothing() {
        let resources = [Resource {
            provides: Some("client,player".into()),
            ..server(MID)
        }];
        assert_eq!(server_access(&resources, MID), None);
    }

    #[test]
    fn server_among_several_roles_counts() {
        let resources = [Resource {
            provides: Some("client, server ,player".into()),
            ..server(MID)
        }];
        assert!(server_access(&resources, MID).is_some());
    }

    #[test]
    fn a_role_that_merely_contains_server_does_not_count() {
        let resources = [Resource {
            provides: Some("sync-target,servers,pubsub-server".into()),
            ..server(MID)
        }];
        assert_eq!(server_access(&resources, MID), None);
    }

    #[test]
    fn entries_without_identifier_or_provides_grant_nothing() {
        let resources = [
            Resource {
                client_identifier: None,
                ..server(MID)
            },
            Resource {
                provides: None,
                ..server(MID)
            },
        ];
        assert_eq!(server_access(&resources, MID), None);
    }

    #[test]
    fn an_empty_server_id_matches_nothing() {
        let resources = [server("")];
        assert_eq!(server_access(&resources, ""), None);
        assert_eq!(server_access(&resources, "  "), None);
    }

    #[test]
    fn the_identifier_must_match_exactly() {
        let resources = [server(&MID.to_uppercase()), server(&MID[..39])];
        assert_eq!(server_access(&resources, MID), None);
    }

    #[test]
    fn a_duplicate_listing_keeps_the_strongest_relation() {
        let resources = [
            Resource {
                home: true,
                source_title: Some("alice".into()),
                ..server(MID)
            },
            Resource {
                owned: true,
                ..server(MID)
            },
        ];
        let access = server_access(&resources, MID).unwrap();
        assert!(access.owned);
        assert!(access.home);
        assert_eq!(access.shared_by, None);
    }
}
