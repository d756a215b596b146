//! Authorization requests (query strings and form bodies): parsed, or refused; an error is only ever
//! sent back to a redirect URI the client registered.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use plex_oidc::oidc::{
    AuthorizationRequest, AuthorizeError, Client, ClientRegistry, ClientSecret, Params,
};

fn client(id: &str, secret: ClientSecret, redirect_uris: &[&str]) -> Client {
    Client {
        id: id.into(),
        name: None,
        secret,
        redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
        require_pkce: false,
        access_token_ttl: Duration::from_secs(600),
        id_token_ttl: Duration::from_secs(600),
        refresh_tokens: false,
        refresh_token_ttl: Duration::from_secs(3600),
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: None,
    }
}

static REGISTRY: LazyLock<ClientRegistry> = LazyLock::new(|| {
    ClientRegistry::new([
        client(
            "grafana",
            ClientSecret::plain("grafana-secret"),
            &[
                "https://grafana.example.com/cb",
                "https://grafana.example.com/other",
            ],
        ),
        client(
            "mobile",
            ClientSecret::None,
            &["app.immich:///oauth-callback"],
        ),
    ])
});

fuzz_target!(|data: &[u8]| {
    let Ok(params) = Params::from_urlencoded(data) else {
        return;
    };
    match AuthorizationRequest::parse(&REGISTRY, &params) {
        Ok(request) => {
            assert!(request.client.has_redirect_uri(&request.redirect_uri));
            assert!(request.scopes.openid);
            assert!(!request.client.pkce_required() || request.code_challenge.is_some());
        }
        Err(AuthorizeError::Redirect { redirect_uri, .. }) => {
            let client_id = params.get("client_id").ok().flatten().unwrap_or_default();
            let client = REGISTRY
                .get(client_id)
                .expect("a redirect implies a known client");
            assert!(
                client.has_redirect_uri(&redirect_uri),
                "error sent to {redirect_uri}"
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
