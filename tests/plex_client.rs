//! The real `PlexClient` against the fake plex.tv over loopback, and the fake's own fidelity to
//! `PLEX_API.md`.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use metrics_exporter_prometheus::PrometheusBuilder;
use plex_oidc::plex::{PinId, PlexClient, PlexClientSettings, PlexError, PlexToken, server_access};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use crate::support::fake_plex::{Account, Call, FakePlex, Fault, OTHER_SERVER_ID, SERVER_ID};

const CLIENT_ID: &str = "plex-oidc-test-installation-0001";
const PRODUCT: &str = "Example Auth";

fn settings_for(base_url: &str, client_identifier: &str, timeout: Duration) -> PlexClientSettings {
    PlexClientSettings {
        api_url: Url::parse(base_url).unwrap(),
        app_url: Url::parse(base_url).unwrap(),
        client_identifier: client_identifier.into(),
        product: PRODUCT.into(),
        version: "0.1.0".into(),
        request_timeout: timeout,
    }
}

fn client_for(fake: &FakePlex) -> PlexClient {
    PlexClient::new(settings_for(
        &fake.base_url(),
        CLIENT_ID,
        Duration::from_secs(5),
    ))
    .unwrap()
}

async fn start() -> (FakePlex, PlexClient) {
    let fake = FakePlex::start().await;
    let client = client_for(&fake);
    (fake, client)
}

fn token(account: Account) -> PlexToken {
    PlexToken::new(account.token())
}

/// The fragment parameters of an auth-app URL.
fn fragment_params(auth_url: &str) -> HashMap<String, String> {
    let url = Url::parse(auth_url).unwrap();
    let fragment = url.fragment().unwrap();
    let query = fragment.strip_prefix('?').unwrap();
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn raw_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

// ---- PINs -------------------------------------------------------------------------------------

#[tokio::test]
async fn creating_a_pin_yields_a_strong_code_that_expires_in_half_an_hour() {
    let (fake, client) = start().await;
    let before = SystemTime::now();

    let pin = client.create_pin().await.unwrap();

    assert_eq!(pin.code.len(), 25, "strong codes have 25 characters");
    assert!(
        pin.code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "strong codes are lowercase alphanumeric"
    );
    assert!(pin.auth_token.is_none());
    let expires_in = pin.expires_in.unwrap();
    assert!((1795..=1800).contains(&expires_in), "{expires_in}");
    let expires_at = pin.expires_at.unwrap();
    let lifetime = expires_at.duration_since(before).unwrap();
    assert!(
        lifetime > Duration::from_secs(1790) && lifetime < Duration::from_secs(1810),
        "{lifetime:?}"
    );
    assert_eq!(fake.calls(Call::PinCreate), 1);
    assert_eq!(fake.latest_pin_code().as_deref(), Some(pin.code.as_str()));
    assert_eq!(fake.latest_pin_product().as_deref(), Some(PRODUCT));
}

#[tokio::test]
async fn a_pin_has_no_token_until_the_user_approves_it() {
    let (fake, client) = start().await;
    let pin = client.create_pin().await.unwrap();

    let waiting = client.check_pin(pin.id).await.unwrap();
    assert_eq!(waiting.id, pin.id);
    assert!(waiting.auth_token.is_none());

    assert!(fake.approve(&pin.code, Account::Friend));
    let approved = client.check_pin(pin.id).await.unwrap();
    assert_eq!(
        approved.auth_token.as_ref().map(PlexToken::expose),
        Some(Account::Friend.token())
    );
    assert_eq!(fake.calls(Call::PinCheck), 2);
}

#[tokio::test]
async fn an_approved_pin_keeps_yielding_the_approving_accounts_token() {
    let (fake, client) = start().await;
    let pin = client.create_pin().await.unwrap();
    assert!(fake.approve_latest(Account::HomeMember));

    for _ in 0..3 {
        let checked = client.check_pin(pin.id).await.unwrap();
        assert_eq!(
            checked.auth_token.unwrap().expose(),
            Account::HomeMember.token()
        );
    }
}

#[tokio::test]
async fn approving_an_unknown_code_or_with_no_pin_created_fails() {
    let (fake, client) = start().await;
    assert!(!fake.approve_latest(Account::Owner), "no PIN exists yet");

    let pin = client.create_pin().await.unwrap();
    assert!(!fake.approve("notarealcode0000000000000", Account::Owner));

    assert!(client.check_pin(pin.id).await.unwrap().auth_token.is_none());
}

#[tokio::test]
async fn an_expired_pin_is_not_found_even_after_approval() {
    let (fake, client) = start().await;
    let pin = client.create_pin().await.unwrap();
    assert!(fake.approve(&pin.code, Account::Owner));

    fake.expire_all_pins();

    let err = client.check_pin(pin.id).await.unwrap_err();
    assert!(matches!(err, PlexError::PinNotFound), "{err:?}");
    assert!(!err.is_unavailable());
    assert!(
        !fake.approve(&pin.code, Account::Owner),
        "expired PINs cannot be approved"
    );
}

#[tokio::test]
async fn an_unknown_pin_id_is_not_found() {
    let (_fake, client) = start().await;
    let err = client.check_pin(PinId::new(42)).await.unwrap_err();
    assert!(matches!(err, PlexError::PinNotFound), "{err:?}");
}

#[tokio::test]
async fn a_pin_checked_under_another_client_identifier_is_not_found() {
    let (fake, client) = start().await;
    let other = PlexClient::new(settings_for(
        &fake.base_url(),
        "another-installation",
        Duration::from_secs(5),
    ))
    .unwrap();
    let pin = client.create_pin().await.unwrap();
    assert!(fake.approve(&pin.code, Account::Owner));

    let err = other.check_pin(pin.id).await.unwrap_err();
    assert!(matches!(err, PlexError::PinNotFound), "{err:?}");

    let own = client.check_pin(pin.id).await.unwrap();
    assert!(own.auth_token.is_some(), "the creator still gets the token");
}

#[tokio::test]
async fn the_whole_auth_app_round_trip_approves_the_pin_through_the_page_protocol() {
    let (fake, client) = start().await;
    let pin = client.create_pin().await.unwrap();
    let auth_url = client.auth_app_url(&pin.code, None);
    let params = fragment_params(&auth_url);

    // What the auth page's script posts when the user clicks "Approve as bob".
    let response = raw_http()
        .post(format!("{}/__fake/approve", fake.base_url()))
        .json(&serde_json::json!({
            "code": params["code"],
            "clientID": params["clientID"],
            "account": Account::Friend.slug(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let approved = client.check_pin(pin.id).await.unwrap();
    assert_eq!(
        approved.auth_token.unwrap().expose(),
        Account::Friend.token()
    );
}

// ---- The account and its access ---------------------------------------------------------------

#[tokio::test]
async fn the_user_endpoint_describes_every_fixture_account() {
    let (_fake, client) = start().await;
    for account in Account::ALL {
        let user = client.user(&token(account)).await.unwrap();
        assert_eq!(user.id, account.id(), "{account:?}");
        assert_eq!(user.uuid, account.uuid(), "{account:?}");
        assert_eq!(user.username.as_deref(), account.username(), "{account:?}");
        assert_eq!(user.title.as_deref(), Some(account.title()), "{account:?}");
        assert_eq!(user.email.as_deref(), account.email(), "{account:?}");
        assert!(user.thumb.unwrap().contains(account.uuid()), "{account:?}");
    }
}

#[tokio::test]
async fn a_managed_user_has_no_username_no_email_and_is_unconfirmed() {
    let (_fake, client) = start().await;
    let user = client.user(&token(Account::Managed)).await.unwrap();
    assert_eq!(user.username, None);
    assert_eq!(user.email, None);
    assert!(!user.confirmed);
    assert!(user.restricted);
    assert!(user.home);
    assert_eq!(user.title.as_deref(), Some("Kids"));
}

#[tokio::test]
async fn the_owner_is_the_home_admin_and_an_empty_friendly_name_is_absent() {
    let (_fake, client) = start().await;
    let owner = client.user(&token(Account::Owner)).await.unwrap();
    assert!(owner.home_admin);
    assert!(owner.confirmed);
    assert_eq!(owner.friendly_name.as_deref(), Some("Alice Owner"));
    let friend = client.user(&token(Account::Friend)).await.unwrap();
    assert!(!friend.home_admin);
    assert_eq!(friend.friendly_name, None);
}

#[tokio::test]
async fn only_accounts_the_server_is_shared_with_get_access() {
    let (_fake, client) = start().await;
    for account in Account::ALL {
        let resources = client.resources(&token(account)).await.unwrap();
        let access = server_access(&resources, SERVER_ID);
        assert_eq!(access.is_some(), account.has_access(), "{account:?}");
    }

    let owner = server_access(
        &client.resources(&token(Account::Owner)).await.unwrap(),
        SERVER_ID,
    )
    .unwrap();
    assert!(owner.owned);
    assert_eq!(owner.shared_by, None);
    assert_eq!(owner.server_name.as_deref(), Some("Living Room"));

    let friend = server_access(
        &client.resources(&token(Account::Friend)).await.unwrap(),
        SERVER_ID,
    )
    .unwrap();
    assert!(!friend.owned);
    assert!(!friend.home);
    assert_eq!(friend.shared_by.as_deref(), Some("alice"));

    for account in [Account::HomeMember, Account::Managed] {
        let home =
            server_access(&client.resources(&token(account)).await.unwrap(), SERVER_ID).unwrap();
        assert!(home.home, "{account:?}");
        assert!(!home.owned, "{account:?}");
    }
}

#[tokio::test]
async fn the_outsiders_client_entry_carrying_our_server_id_grants_nothing() {
    let (_fake, client) = start().await;
    let resources = client.resources(&token(Account::Outsider)).await.unwrap();

    let impostor = resources
        .iter()
        .find(|r| r.client_identifier.as_deref() == Some(SERVER_ID))
        .expect("the outsider lists a client with our server's id");
    assert!(!impostor.provides.as_deref().unwrap().contains("server"));
    assert!(
        resources
            .iter()
            .any(|r| r.client_identifier.as_deref() == Some(OTHER_SERVER_ID) && r.owned),
        "the outsider owns another server"
    );
    assert_eq!(server_access(&resources, SERVER_ID), None);
    assert!(server_access(&resources, OTHER_SERVER_ID).unwrap().owned);
}

#[tokio::test]
async fn removing_a_share_denies_access_until_it_is_restored() {
    let (fake, client) = start().await;
    let friend = token(Account::Friend);

    fake.remove_share(Account::Friend);
    let revoked = client.resources(&friend).await.unwrap();
    assert_eq!(server_access(&revoked, SERVER_ID), None);
    assert!(!revoked.is_empty(), "the friend's own devices stay listed");
    let owner = client.resources(&token(Account::Owner)).await.unwrap();
    assert!(
        server_access(&owner, SERVER_ID).is_some(),
        "others keep access"
    );

    fake.restore_share(Account::Friend);
    let restored = client.resources(&friend).await.unwrap();
    assert!(server_access(&restored, SERVER_ID).is_some());
}

#[tokio::test]
async fn an_unknown_token_is_unauthorized_for_user_and_resources() {
    let (_fake, client) = start().await;
    let bogus = PlexToken::new("not-a-token-plex-knows");

    let user = client.user(&bogus).await.unwrap_err();
    assert!(matches!(user, PlexError::Unauthorized), "{user:?}");
    assert!(!user.is_unavailable());
    let resources = client.resources(&bogus).await.unwrap_err();
    assert!(
        matches!(resources, PlexError::Unauthorized),
        "{resources:?}"
    );
}

#[tokio::test]
async fn a_token_that_cannot_be_a_header_is_unauthorized_without_a_request() {
    let (fake, client) = start().await;
    let err = client
        .user(&PlexToken::new("line\nbreak"))
        .await
        .unwrap_err();
    assert!(matches!(err, PlexError::Unauthorized), "{err:?}");
    assert_eq!(fake.calls(Call::User), 0);
}

// ---- Upstream faults --------------------------------------------------------------------------

#[tokio::test]
async fn rate_limiting_is_reported_with_the_retry_hint_when_plex_gives_one() {
    let (fake, client) = start().await;
    fake.set_fault(Fault::RateLimited);

    let err = client.create_pin().await.unwrap_err();
    assert!(
        matches!(err, PlexError::RateLimited { retry_after: None }),
        "{err:?}"
    );
    assert!(err.is_unavailable());

    fake.set_rate_limit_retry_after(Some(Duration::from_secs(7)));
    let err = client.check_pin(PinId::new(1)).await.unwrap_err();
    assert!(
        matches!(err, PlexError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_server_error_means_plex_is_unavailable_never_denied() {
    let (fake, client) = start().await;
    for status in [500, 502, 503, 504] {
        fake.set_fault(Fault::ServerError(status));
        let user = client.user(&token(Account::Owner)).await.unwrap_err();
        assert!(
            matches!(&user, PlexError::Unavailable(m) if m.contains(&status.to_string())),
            "{user:?}"
        );
        let resources = client.resources(&token(Account::Owner)).await.unwrap_err();
        assert!(
            matches!(resources, PlexError::Unavailable(_)),
            "{resources:?}"
        );
        let pin = client.create_pin().await.unwrap_err();
        assert!(matches!(pin, PlexError::Unavailable(_)), "{pin:?}");
    }
}

#[tokio::test]
async fn malformed_json_is_an_unexpected_response() {
    let (fake, client) = start().await;
    fake.set_fault(Fault::MalformedJson);
    for err in [
        client.create_pin().await.unwrap_err(),
        client.check_pin(PinId::new(1)).await.unwrap_err(),
        client.user(&token(Account::Owner)).await.unwrap_err(),
        client
            .resources(&token(Account::Owner))
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert!(matches!(err, PlexError::UnexpectedResponse(_)), "{err:?}");
        assert!(err.is_unavailable());
    }
}

#[tokio::test]
async fn xml_instead_of_the_json_asked_for_is_an_unexpected_response() {
    let (fake, client) = start().await;
    fake.set_fault(Fault::XmlInsteadOfJson);
    for err in [
        client.create_pin().await.unwrap_err(),
        client.user(&token(Account::Owner)).await.unwrap_err(),
        client
            .resources(&token(Account::Owner))
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert!(
            matches!(&err, PlexError::UnexpectedResponse(m) if m.contains("XML")),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn a_reset_connection_means_plex_is_unavailable() {
    let (fake, client) = start().await;
    fake.set_fault(Fault::ResetConnection);
    let started = Instant::now();

    let pin = client.create_pin().await.unwrap_err();
    let user = client.user(&token(Account::Owner)).await.unwrap_err();

    assert!(matches!(pin, PlexError::Unavailable(_)), "{pin:?}");
    assert!(matches!(user, PlexError::Unavailable(_)), "{user:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a reset is noticed at once"
    );
    assert!(
        fake.calls(Call::PinCreate) >= 1,
        "the request reached the fake"
    );
}

#[tokio::test]
async fn a_redirect_from_plex_is_never_followed() {
    let (fake, client) = start().await;
    let elsewhere = FakePlex::start().await;
    fake.set_fault(Fault::RedirectTo(format!(
        "{}/api/v2/user",
        elsewhere.base_url()
    )));

    let user = client.user(&token(Account::Owner)).await.unwrap_err();
    let pin = client.create_pin().await.unwrap_err();

    assert!(
        matches!(&user, PlexError::UnexpectedResponse(m) if m.contains("302")),
        "{user:?}"
    );
    assert!(matches!(pin, PlexError::UnexpectedResponse(_)), "{pin:?}");
    assert_eq!(
        elsewhere.calls(Call::User),
        0,
        "the token never went elsewhere"
    );
    assert_eq!(elsewhere.calls(Call::PinCreate), 0);
}

#[tokio::test]
async fn a_slow_plex_times_out_quickly_as_unavailable() {
    let fake = FakePlex::start().await;
    let client = PlexClient::new(settings_for(
        &fake.base_url(),
        CLIENT_ID,
        Duration::from_millis(300),
    ))
    .unwrap();
    fake.set_latency(Duration::from_secs(3));
    let started = Instant::now();

    let err = client.user(&token(Account::Owner)).await.unwrap_err();

    let elapsed = started.elapsed();
    assert!(matches!(err, PlexError::Unavailable(_)), "{err:?}");
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

#[tokio::test]
async fn the_client_recovers_as_soon_as_plex_does() {
    let (fake, client) = start().await;
    for fault in [
        Fault::ServerError(503),
        Fault::ResetConnection,
        Fault::MalformedJson,
        Fault::RateLimited,
    ] {
        fake.set_fault(fault.clone());
        assert!(
            client.user(&token(Account::Owner)).await.is_err(),
            "{fault:?}"
        );
        fake.set_fault(Fault::None);
        let user = client.user(&token(Account::Owner)).await.unwrap();
        assert_eq!(user.id, Account::Owner.id(), "after {fault:?}");
    }
}

#[tokio::test]
async fn a_plex_that_refuses_connections_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = PlexClient::new(settings_for(
        &format!("http://{addr}"),
        CLIENT_ID,
        Duration::from_secs(2),
    ))
    .unwrap();

    let err = client.create_pin().await.unwrap_err();

    assert!(
        matches!(&err, PlexError::Unavailable(m) if m.contains("connect")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_plex_host_that_does_not_resolve_is_unavailable() {
    let client = PlexClient::new(settings_for(
        "http://plex-oidc-test.invalid",
        CLIENT_ID,
        Duration::from_secs(1),
    ))
    .unwrap();
    let started = Instant::now();

    let err = client.user(&token(Account::Owner)).await.unwrap_err();

    assert!(matches!(err, PlexError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Serves `response` verbatim to every connection, after reading the request head.
async fn serve_raw(response: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_oversized_response_is_rejected_without_buffering_it() {
    let declared =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n["
            .to_vec();
    let mut chunked =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");

    for response in [declared, chunked] {
        let base = serve_raw(response).await;
        let client =
            PlexClient::new(settings_for(&base, CLIENT_ID, Duration::from_secs(5))).unwrap();
        let err = client.resources(&token(Account::Owner)).await.unwrap_err();
        assert!(
            matches!(&err, PlexError::UnexpectedResponse(m) if m.contains("exceeds")),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn a_404_without_plexs_error_envelope_is_not_mistaken_for_an_expired_pin() {
    // What a wrong api_url (some other web server) answers.
    let base = serve_raw(
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\nnot found"
            .to_vec(),
    )
    .await;
    let client = PlexClient::new(settings_for(&base, CLIENT_ID, Duration::from_secs(5))).unwrap();

    let err = client.check_pin(PinId::new(1)).await.unwrap_err();

    assert!(matches!(err, PlexError::UnexpectedResponse(_)), "{err:?}");
}

// ---- What goes on the wire --------------------------------------------------------------------

#[tokio::test]
async fn tokens_travel_in_a_header_never_in_the_query() {
    let (fake, client) = start().await;
    client.user(&token(Account::Owner)).await.unwrap();
    client.resources(&token(Account::Owner)).await.unwrap();
    let pin = client.create_pin().await.unwrap();
    client.check_pin(pin.id).await.unwrap();

    assert_eq!(fake.tokens_seen_in_queries(), 0);
}

#[tokio::test]
async fn every_call_carries_one_stable_client_identifier() {
    let (fake, client) = start().await;
    let clone = client.clone();
    let pin = client.create_pin().await.unwrap();
    clone.check_pin(pin.id).await.unwrap();
    client.user(&token(Account::Friend)).await.unwrap();
    clone.resources(&token(Account::Friend)).await.unwrap();

    assert_eq!(fake.client_identifiers_seen(), vec![CLIENT_ID.to_owned()]);
}

#[tokio::test]
async fn the_auth_app_url_parses_back_to_code_client_product_and_forward_url() {
    let (fake, client) = start().await;
    let pin = client.create_pin().await.unwrap();
    let forward = "https://auth.example.com/plex/continue?login=a b&x=1#frag";

    let with_forward = client.auth_app_url(&pin.code, Some(forward));
    let without = client.auth_app_url(&pin.code, None);

    assert!(
        with_forward.starts_with(&format!("{}/auth#?", fake.base_url())),
        "{with_forward}"
    );
    assert!(
        !with_forward.contains(' ') && !with_forward.contains('+'),
        "{with_forward}"
    );
    let params = fragment_params(&with_forward);
    assert_eq!(params["clientID"], CLIENT_ID);
    assert_eq!(params["code"], pin.code);
    assert_eq!(params["context[device][product]"], PRODUCT);
    assert_eq!(params["forwardUrl"], forward);
    assert_eq!(params.len(), 4);
    let params = fragment_params(&without);
    assert!(!params.contains_key("forwardUrl"));
    assert_eq!(params.len(), 3);

    // The URL leads to the (fake) auth app page.
    let page = raw_http().get(&without).send().await.unwrap();
    assert_eq!(page.status(), 200);
}

#[tokio::test]
async fn the_auth_app_url_keeps_a_path_prefix_of_the_app_url() {
    let settings = PlexClientSettings {
        app_url: Url::parse("https://plex.example/app/").unwrap(),
        ..settings_for("https://plex.example", CLIENT_ID, Duration::from_secs(1))
    };
    let client = PlexClient::new(settings).unwrap();
    assert!(
        client
            .auth_app_url("code", None)
            .starts_with("https://plex.example/app/auth#?clientID=")
    );
}

#[tokio::test]
async fn metrics_count_each_call_by_outcome() {
    // A thread-local recorder: #[tokio::test] runs the whole test on this one thread.
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (fake, client) = start().await;

    client.user(&token(Account::Owner)).await.unwrap();
    client.user(&PlexToken::new("bogus")).await.unwrap_err();
    fake.set_fault(Fault::RateLimited);
    client.create_pin().await.unwrap_err();
    client.create_pin().await.unwrap_err();
    fake.set_fault(Fault::ServerError(502));
    client.resources(&token(Account::Owner)).await.unwrap_err();

    let text = handle.render();
    let count = |call: &str, outcome: &str| -> Option<f64> {
        text.lines()
            .find(|l| {
                l.starts_with("plex_oidc_plex_request_duration_seconds_count{")
                    && l.contains(&format!("call=\"{call}\""))
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    assert_eq!(count("user", "ok"), Some(1.0), "{text}");
    assert_eq!(count("user", "unauthorized"), Some(1.0), "{text}");
    assert_eq!(count("pin_create", "rate_limited"), Some(2.0), "{text}");
    assert_eq!(count("resources", "unavailable"), Some(1.0), "{text}");
    assert!(
        text.contains("plex_oidc_plex_rate_limited_total{call=\"pin_create\"} 2"),
        "{text}"
    );
    assert!(
        !text.contains(Account::Owner.token()),
        "no token in metrics"
    );
}

// ---- The fake itself ----------------------------------------------------------------------------

#[tokio::test]
async fn the_fake_answers_xml_unless_json_is_asked_for() {
    let fake = FakePlex::start().await;
    let url = format!("{}/api/v2/user", fake.base_url());
    let http = raw_http();
    let request = || {
        http.get(&url)
            .header("X-Plex-Client-Identifier", CLIENT_ID)
            .header("X-Plex-Token", Account::Owner.token())
    };

    let xml = request().send().await.unwrap();
    assert!(
        xml.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("xml")
    );
    let body = xml.text().await.unwrap();
    assert!(body.contains("<user "), "{body}");
    assert!(
        body.contains(r#"confirmed="1""#),
        "booleans are 0/1: {body}"
    );

    let json = request()
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        json.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert!(json.headers().contains_key("x-request-id"));
    let value: Value = json.json().await.unwrap();
    assert_eq!(value["id"], Account::Owner.id());

    let suffixed = http
        .get(format!("{url}.json"))
        .header("X-Plex-Client-Identifier", CLIENT_ID)
        .header("X-Plex-Token", Account::Owner.token())
        .send()
        .await
        .unwrap();
    let value: Value = suffixed.json().await.unwrap();
    assert_eq!(value["uuid"], Account::Owner.uuid());
}

#[tokio::test]
async fn the_fake_refuses_pins_without_a_client_identifier_and_accepts_one_anywhere() {
    let fake = FakePlex::start().await;
    let url = format!("{}/api/v2/pins", fake.base_url());
    let http = raw_http();

    let missing = http
        .post(&url)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], 1000);
    assert_eq!(body["errors"][0]["status"], 400);

    let by_query = http
        .post(format!("{url}?strong=true&X-Plex-Client-Identifier=q-id"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 201);
    let by_form = http
        .post(&url)
        .header("Accept", "application/json")
        .form(&[
            ("strong", "true"),
            ("X-Plex-Client-Identifier", "form-id"),
            ("X-Plex-Product", "Formed"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(by_form.status(), 201);
    let pin: Value = by_form.json().await.unwrap();
    assert_eq!(pin["clientIdentifier"], "form-id");
    assert_eq!(pin["product"], "Formed");
    assert_eq!(pin["code"].as_str().unwrap().len(), 25);
}

#[tokio::test]
async fn the_fake_pin_body_is_complete_and_a_weak_pin_has_a_short_uppercase_code() {
    let fake = FakePlex::start().await;
    let http = raw_http();
    let create = |strong: bool| {
        http.post(format!(
            "{}/api/v2/pins{}",
            fake.base_url(),
            if strong { "?strong=true" } else { "" }
        ))
        .header("Accept", "application/json")
        .header("X-Plex-Client-Identifier", CLIENT_ID)
        .header("X-Plex-Product", PRODUCT)
        .send()
    };

    let strong: Value = create(true).await.unwrap().json().await.unwrap();
    for field in [
        "id",
        "code",
        "product",
        "trusted",
        "qr",
        "clientIdentifier",
        "location",
        "expiresIn",
        "createdAt",
        "expiresAt",
        "authToken",
        "newRegistration",
    ] {
        assert!(strong.get(field).is_some(), "missing {field}: {strong}");
    }
    assert_eq!(strong["product"], PRODUCT);
    assert_eq!(strong["authToken"], Value::Null);
    assert!(strong["expiresAt"].as_str().unwrap().ends_with('Z'));

    let weak = create(false).await.unwrap();
    assert_eq!(weak.status(), 201);
    let weak: Value = weak.json().await.unwrap();
    let code = weak["code"].as_str().unwrap();
    assert_eq!(code.len(), 4);
    assert!(
        code.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
        "{code}"
    );
    assert!(weak["expiresIn"].as_u64().unwrap() <= 900);
}

#[tokio::test]
async fn the_fake_answers_unknown_routes_with_plexs_not_found() {
    let fake = FakePlex::start().await;
    for path in ["/", "/api/v2/friends", "/nope/deeper"] {
        let response = raw_http()
            .get(format!("{}{path}", fake.base_url()))
            .header("Accept", "application/json")
            .header("X-Plex-Client-Identifier", CLIENT_ID)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status": 404, "error": "Not Found"}),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_fake_refuses_user_and_resources_without_a_valid_token() {
    let fake = FakePlex::start().await;
    for route in ["user", "resources"] {
        let response = raw_http()
            .get(format!("{}/api/v2/{route}", fake.base_url()))
            .header("Accept", "application/json")
            .header("X-Plex-Client-Identifier", CLIENT_ID)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{route}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], 1001, "{route}");
    }
}

#[tokio::test]
async fn the_fake_counts_tokens_sent_as_query_parameters() {
    let fake = FakePlex::start().await;
    let response = raw_http()
        .get(format!(
            "{}/api/v2/user?X-Plex-Token={}&X-Plex-Client-Identifier={CLIENT_ID}",
            fake.base_url(),
            Account::Friend.token()
        ))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "plex.tv accepts query tokens too");
    assert_eq!(fake.tokens_seen_in_queries(), 1);
}

#[tokio::test]
async fn the_fake_auth_page_isolates_its_opener_and_offers_every_account() {
    let fake = FakePlex::start().await;
    let response = raw_http()
        .get(format!("{}/auth", fake.base_url()))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["cross-origin-opener-policy"],
        "same-origin"
    );
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    for id in [
        "approve-owner",
        "approve-friend",
        "approve-home",
        "approve-managed",
        "approve-outsider",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(page.contains("Approve as alice"));
    assert!(page.contains("id=\"approved\""));
    assert!(page.contains("forwardUrl"));
}

#[tokio::test]
async fn the_fake_approve_hook_rejects_unknown_codes_and_foreign_client_ids() {
    let (fake, client) = start().await;
    let pin = client.create_pin().await.unwrap();
    let approve = |code: &str, client_id: &str| {
        raw_http()
            .post(format!("{}/__fake/approve", fake.base_url()))
            .json(&serde_json::json!({"code": code, "clientID": client_id, "account": "owner"}))
            .send()
    };

    assert_eq!(
        approve("unknowncode", CLIENT_ID).await.unwrap().status(),
        404
    );
    assert_eq!(
        approve(&pin.code, "someone-else").await.unwrap().status(),
        404
    );
    assert!(client.check_pin(pin.id).await.unwrap().auth_token.is_none());

    assert_eq!(approve(&pin.code, CLIENT_ID).await.unwrap().status(), 200);
    assert_eq!(
        client
            .check_pin(pin.id)
            .await
            .unwrap()
            .auth_token
            .unwrap()
            .expose(),
        Account::Owner.token()
    );
}

#[tokio::test]
async fn the_fake_counts_calls_until_reset() {
    let (fake, client) = start().await;
    client.user(&token(Account::Owner)).await.unwrap();
    client.resources(&token(Account::Owner)).await.unwrap();
    client.resources(&token(Account::Owner)).await.unwrap();
    assert_eq!(fake.calls(Call::User), 1);
    assert_eq!(fake.calls(Call::Resources), 2);
    assert_eq!(fake.calls(Call::PinCheck), 0);

    fake.reset_calls();

    assert_eq!(fake.calls(Call::Resources), 0);
}
