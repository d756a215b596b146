//! Properties over arbitrary input: whatever a client sends as a cookie, a query, a form or a header, and
//! whatever a damaged disk holds in the journal, the parsers answer with a value or a typed error, never a
//! panic, and never with something that grants more than it should.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use plex_oidc::clock::SystemClock;
use plex_oidc::flow::{Session, SessionCodec};
use plex_oidc::keys::KeySet;
use plex_oidc::oidc::{
    AuthorizeError, Client, ClientCredentials, ClientRegistry, ClientSecret, Identity, Params,
    Provider, ProviderSettings,
};
use plex_oidc::plex::PlexToken;
use plex_oidc::random::SystemRandom;
use plex_oidc::seal::Sealer;
use plex_oidc::store::{JOURNAL_FILE, Store, StoreError};
use proptest::prelude::*;

use crate::support::app::temp_dir;

const NOW: u64 = 1_700_000_000;
const REDIRECT: &str = "https://grafana.example.com/login/generic_oauth";

fn codec() -> SessionCodec {
    SessionCodec::new(Arc::new(Sealer::from_key([42; 32])))
}

fn session() -> Session {
    Session {
        sid: "sid-1".into(),
        identity: Identity {
            subject: "24810035".into(),
            preferred_username: Some("bob".into()),
            name: None,
            picture: None,
            email: Some("bob@example.com".into()),
            email_verified: true,
            groups: vec![],
            extra_profile: Default::default(),
        },
        account: "bob".into(),
        plex_token: PlexToken::new("bobTokenQw3rtyUiop12"),
        auth_time: NOW,
        expires_at: NOW + 3600,
        clients: vec!["grafana".into()],
    }
}

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

/// One provider for all cases: building it generates an RSA key, far too slow to do per case.
static PROVIDER: LazyLock<Provider> = LazyLock::new(|| {
    let dir = temp_dir("properties-provider");
    let (keys, _) = KeySet::load_or_generate(&dir).expect("a signing key");
    let store = Store::open(&dir, NOW, false).expect("an empty store opens");
    let registry = ClientRegistry::new([
        client(
            "grafana",
            ClientSecret::plain("grafana-secret"),
            &[REDIRECT, "https://grafana.example.com/other"],
        ),
        client(
            "mobile",
            ClientSecret::None,
            &["app.immich:///oauth-callback"],
        ),
    ]);
    Provider::new(
        ProviderSettings {
            issuer: "https://auth.example.com".into(),
            code_capacity: 16,
            extra_claims: vec![],
        },
        registry,
        Arc::new(keys),
        Arc::new(Sealer::from_key([42; 32])),
        Arc::new(store),
        Arc::new(SystemClock),
        Arc::new(SystemRandom),
    )
});

/// One parameter: mostly the first (accepted) value, sometimes another listed one, absent, or arbitrary.
fn param(
    name: &'static str,
    values: &'static [&'static str],
) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        8 => Just(Some(values[0].to_owned())),
        2 => prop::sample::select(values).prop_map(|v| Some(v.to_owned())),
        1 => any::<String>().prop_map(Some),
    ]
    .prop_map(move |v| v.map(|v| format!("{name}={}", url_encode(&v))))
}

/// Query-ish text built from the parameter names the parsers look for, so cases get past the first
/// check (and sometimes all the way through) instead of all failing on an unknown name; plus junk,
/// raw separators and repeated parameters.
fn query_text() -> impl Strategy<Value = String> {
    let known = (
        param("client_id", &["grafana", "mobile", "nobody"]),
        param(
            "redirect_uri",
            &[
                REDIRECT,
                "https://grafana.example.com/other",
                "https://evil.example/cb",
            ],
        ),
        param("response_type", &["code", "token"]),
        param("scope", &["openid", "openid email profile", "email"]),
        param("state", &["st", ""]),
        param(
            "code_challenge",
            &["E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "short"],
        ),
        param("code_challenge_method", &["S256", "plain"]),
        param("prompt", &["none", "login", "none login", "consent"]),
        param("max_age", &["0", "300", "-1", "abc"]),
        param("grant_type", &["authorization_code", "refresh_token"]),
        param("client_secret", &["grafana-secret", "wrong"]),
    );
    let junk = prop::collection::vec(
        prop_oneof![
            Just("=".to_owned()),
            Just("%".to_owned()),
            Just("%ZZ%C3%28+".to_owned()),
            Just("client_id=grafana".to_owned()),
            Just("state=again".to_owned()),
            any::<String>(),
            "[a-z_]{0,12}=[ -~]{0,24}",
        ],
        0..3,
    );
    (known, junk).prop_map(|(known, junk)| {
        let (a, b, c, d, e, f, g, h, i, j, k) = known;
        [a, b, c, d, e, f, g, h, i, j, k]
            .into_iter()
            .flatten()
            .chain(junk)
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_as_a_session_cookie_never_yield_a_session(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let c = codec();
        let text = String::from_utf8_lossy(&bytes);
        prop_assert!(c.open(&text, 0).is_none());
        // Bytes that are valid base64url still fail authentication.
        prop_assert!(c.open(&URL_SAFE_NO_PAD.encode(&bytes), 0).is_none());
    }

    #[test]
    fn any_change_to_a_real_session_cookie_is_no_session(index in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_-]") {
        let c = codec();
        let cookie = c.seal(&session()).expect("a session seals");
        prop_assert!(c.open(&cookie, NOW).is_some(), "the untouched cookie opens");
        let i = index.index(cookie.len());
        let mut tampered = cookie.clone().into_bytes();
        prop_assume!(tampered[i] != replacement.as_bytes()[0]);
        tampered[i] = replacement.as_bytes()[0];
        let tampered = String::from_utf8(tampered).expect("still ASCII");
        prop_assert!(c.open(&tampered, NOW).is_none(), "a tampered cookie opened");
        // Cut short, or extended, it is no session either.
        prop_assert!(c.open(&cookie[..i], NOW).is_none());
        let extended = format!("{cookie}{replacement}");
        prop_assert!(c.open(&extended, NOW).is_none());
    }

    #[test]
    fn any_query_parses_or_is_refused_and_an_accepted_request_names_a_registered_redirect(query in query_text()) {
        let Ok(params) = Params::from_urlencoded(query.as_bytes()) else {
            return Ok(());
        };
        match PROVIDER.parse_authorization(&params) {
            Ok(request) => {
                prop_assert!(request.client.has_redirect_uri(&request.redirect_uri));
                prop_assert!(request.scopes.openid, "a request without openid was accepted");
                prop_assert!(!request.client.pkce_required() || request.code_challenge.is_some());
            }
            // An error is only ever sent to a redirect URI the client registered.
            Err(AuthorizeError::Redirect { redirect_uri, .. }) => {
                let client_id = params.get("client_id").ok().flatten().unwrap_or_default();
                let client = PROVIDER.client(client_id);
                prop_assert!(client.is_some_and(|c| c.has_redirect_uri(&redirect_uri)), "error sent to {redirect_uri}");
            }
            Err(_) => {}
        }
    }

    #[test]
    fn any_bytes_as_a_query_never_panic_the_parameter_parser(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        if let Ok(params) = Params::from_urlencoded(&bytes) {
            let _ = params.get("client_id");
            let _ = PROVIDER.parse_authorization(&params);
        }
    }

    #[test]
    fn any_token_request_form_and_authorization_header_never_panic(
        form in query_text(),
        header in prop_oneof![
            Just(None),
            any::<String>().prop_map(Some),
            "[ -~]{0,40}".prop_map(|s| Some(format!("Basic {}", STANDARD.encode(s)))),
            "[ -~]{0,40}".prop_map(|s| Some(format!("basic {s}"))),
        ],
    ) {
        let Ok(params) = Params::from_urlencoded(form.as_bytes()) else {
            return Ok(());
        };
        if let Ok(credentials) = ClientCredentials::from_request(header.as_deref(), &params) {
            // Someone is named, and the secret has no say in what Debug prints.
            prop_assert!(!credentials.client_id.is_empty() || header.is_some());
            let other = ClientCredentials {
                client_id: credentials.client_id.clone(),
                secret: credentials.secret.as_ref().map(|_| "something else entirely".to_owned()),
                method: credentials.method,
            };
            prop_assert_eq!(format!("{credentials:?}"), format!("{other:?}"), "Debug depends on the secret");
            // Wrong or missing secrets never authenticate.
            if credentials.client_id == "grafana" && credentials.secret.as_deref() != Some("grafana-secret") {
                prop_assert!(PROVIDER.authenticate(&credentials).is_err());
            }
        }
    }
}

proptest! {
    // Each case writes, fsyncs and renames a file: fewer cases, still hundreds of journals.
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_journal_replays_or_is_reported_corrupt_and_a_replayed_one_opens_again(
        lines in prop::collection::vec(
            prop_oneof![
                Just(r#"{"op":"put","family":{"id":"f1","client_id":"grafana","generation":0,"expires_at":1800000000,"payload":"p"}}"#.to_owned()),
                Just(r#"{"op":"rotate","id":"f1","generation":1,"expires_at":1900000000}"#.to_owned()),
                Just(r#"{"op":"remove","id":"f1"}"#.to_owned()),
                Just(r#"{"op":"revoke_grant","id":"g1","until":1800000000}"#.to_owned()),
                Just(String::new()),
                any::<String>(),
            ],
            0..8,
        ),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let dir = temp_dir("properties-journal");
        let mut bytes = lines.join("\n").into_bytes();
        bytes.extend_from_slice(&tail);
        std::fs::write(dir.join(JOURNAL_FILE), &bytes).expect("journal written");

        match Store::open(&dir, NOW, false) {
            Ok(store) => {
                let families = store.family_count();
                drop(store);
                let again = Store::open(&dir, NOW, false);
                prop_assert!(again.is_ok(), "a compacted journal must reopen: {:?}", again.err());
                prop_assert_eq!(again.map(|s| s.family_count()).unwrap_or(usize::MAX), families);
            }
            Err(StoreError::Corrupt { line, .. }) => {
                prop_assert!(line >= 1);
                // Asked to discard the damage, the store always opens.
                let discarding = Store::open(&dir, NOW, true);
                prop_assert!(discarding.is_ok(), "{:?}", discarding.err());
            }
            Err(other) => prop_assert!(false, "neither replayed nor corrupt: {other}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
