//! Returning users, access re-checks, refresh tokens, logout (issue 3). Time moves by the injected clock.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::oidc_flow::urlencode;
use crate::support::app::{GRAFANA_REDIRECT, GRAFANA_SECRET, TestApp, query_param, spawn_app_with};
use crate::support::browser::Browser;
use crate::support::fake_plex::{Account, Call, Fault};

const LOGOUT_REDIRECT: &str = "https://grafana.example.com/logged-out";

async fn app() -> TestApp {
    spawn_app_with(|c| {
        c["clients"][0]["post_logout_redirect_uris"] = json!([LOGOUT_REDIRECT]);
    })
    .await
}

fn grafana(t: &TestApp, extra: &str) -> String {
    t.authorize_url(&format!(
        "client_id=grafana&redirect_uri={}&response_type=code&scope=openid+profile+email{extra}",
        urlencode(GRAFANA_REDIRECT)
    ))
}

fn code_of(location: &Option<String>) -> String {
    let location = location.as_deref().expect("a redirect");
    assert!(location.starts_with(GRAFANA_REDIRECT), "{location}");
    query_param(location, "code").unwrap_or_else(|| panic!("no code in {location}"))
}

async fn exchange(t: &TestApp, code: &str) -> Value {
    t.grafana_tokens(code).await
}

async fn refresh(t: &TestApp, token: &str) -> (u16, Value) {
    let res = t
        .http
        .post(t.url("/token"))
        .basic_auth("grafana", Some(GRAFANA_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn plex_account_calls(t: &TestApp) -> usize {
    t.plex.calls(Call::User) + t.plex.calls(Call::Resources)
}

#[tokio::test]
async fn a_returning_user_goes_straight_back_without_calling_plex() {
    let t = app().await;
    let b = Browser::new(&t);
    let first = b.sign_in(Account::Friend, &grafana(&t, "")).await;
    code_of(&first.location);
    assert!(
        b.cookie("plex-oidc-session").is_some(),
        "a session cookie is set"
    );
    t.plex.reset_calls();

    let again = b.get(&grafana(&t, "&state=second")).await;

    assert_eq!(again.status, 303, "no page: {}", again.body.len());
    let location = again.location.clone().unwrap();
    assert_eq!(query_param(&location, "state").as_deref(), Some("second"));
    code_of(&again.location);
    assert_eq!(
        plex_account_calls(&t),
        0,
        "inside the re-check interval nobody asks plex.tv"
    );
}

#[tokio::test]
async fn a_removed_share_is_denied_at_the_next_recheck() {
    let t = app().await;
    let b = Browser::new(&t);
    b.sign_in(Account::Friend, &grafana(&t, "")).await;
    t.plex.remove_share(Account::Friend);

    let cached = b.get(&grafana(&t, "")).await;
    assert_eq!(
        cached.status, 303,
        "the cached answer stands inside the interval"
    );

    t.clock.advance(Duration::from_secs(6 * 60));
    let rechecked = b.get(&grafana(&t, "")).await;
    assert_eq!(rechecked.status, 200);
    assert_eq!(rechecked.state().as_deref(), Some("denied"));
    assert!(rechecked.body.contains(Account::Friend.username().unwrap()));
    assert!(
        b.cookie("plex-oidc-session").is_none(),
        "the session is ended"
    );
}

#[tokio::test]
async fn a_plex_outage_keeps_the_last_answer_within_the_grace_and_not_beyond() {
    let t = app().await;
    let b = Browser::new(&t);
    b.sign_in(Account::Friend, &grafana(&t, "")).await;
    t.plex.set_fault(Fault::ServerError(502));

    t.clock.advance(Duration::from_secs(10 * 60));
    let within = b.get(&grafana(&t, "")).await;
    code_of(&within.location);

    t.clock.advance(Duration::from_secs(2 * 60 * 60));
    let beyond = b.get(&grafana(&t, "")).await;
    assert_eq!(beyond.status, 200);
    assert_eq!(beyond.state().as_deref(), Some("unavailable"));
    assert!(
        b.cookie("plex-oidc-session").is_some(),
        "an outage does not end the session"
    );

    t.plex.set_fault(Fault::None);
    let recovered = b.get(&grafana(&t, "")).await;
    code_of(&recovered.location);
}

#[tokio::test]
async fn prompt_none_answers_from_the_session_or_with_the_right_error() {
    let t = app().await;
    let b = Browser::new(&t);
    let none = b.get(&grafana(&t, "&prompt=none")).await;
    assert_eq!(
        query_param(none.location.as_deref().unwrap(), "error").as_deref(),
        Some("login_required")
    );

    b.sign_in(Account::Friend, &grafana(&t, "")).await;
    let silent = b.get(&grafana(&t, "&prompt=none")).await;
    code_of(&silent.location);

    t.plex.remove_share(Account::Friend);
    t.clock.advance(Duration::from_secs(6 * 60));
    let denied = b.get(&grafana(&t, "&prompt=none")).await;
    assert_eq!(
        query_param(denied.location.as_deref().unwrap(), "error").as_deref(),
        Some("access_denied")
    );
}

#[tokio::test]
async fn prompt_login_always_shows_the_page() {
    let t = app().await;
    let b = Browser::new(&t);
    b.sign_in(Account::Friend, &grafana(&t, "")).await;
    let page = b.get(&grafana(&t, "&prompt=login")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.state().as_deref(), Some("ready"));
}

#[tokio::test]
async fn max_age_forces_a_new_sign_in_and_auth_time_stays_the_original() {
    let t = app().await;
    let b = Browser::new(&t);
    let first = b.sign_in(Account::Friend, &grafana(&t, "")).await;
    let first_tokens = exchange(&t, &code_of(&first.location)).await;
    let auth_time = jwt_claims(first_tokens["id_token"].as_str().unwrap())["auth_time"].clone();

    t.clock.advance(Duration::from_secs(120));
    let returning = b.get(&grafana(&t, "&max_age=600")).await;
    let tokens = exchange(&t, &code_of(&returning.location)).await;
    let claims = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(
        claims["auth_time"], auth_time,
        "auth_time is the sign-in, not this request"
    );
    assert!(claims["iat"].as_u64().unwrap() >= auth_time.as_u64().unwrap() + 120);
    assert!(claims.get("sid").is_some());

    let too_old = b.get(&grafana(&t, "&max_age=60")).await;
    assert_eq!(too_old.status, 200);
    assert_eq!(too_old.state().as_deref(), Some("ready"));
    let silent = b.get(&grafana(&t, "&max_age=60&prompt=none")).await;
    assert_eq!(
        query_param(silent.location.as_deref().unwrap(), "error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn a_tampered_or_garbage_session_cookie_just_shows_the_page() {
    let t = app().await;
    let b = Browser::new(&t);
    b.sign_in(Account::Friend, &grafana(&t, "")).await;
    let real = b.cookie("plex-oidc-session").unwrap();
    let mut tampered = real.into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    for value in [
        String::from_utf8(tampered).unwrap(),
        "garbage".to_owned(),
        "%00%ff".to_owned(),
        "x".repeat(4000),
    ] {
        b.set_cookie("plex-oidc-session", &value);
        let page = b.get(&grafana(&t, "")).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.state().as_deref(), Some("ready"));
    }
}

async fn offline_tokens(t: &TestApp, b: &Browser<'_>) -> Value {
    let visit = b
        .sign_in(Account::Friend, &grafana(t, "+offline_access"))
        .await;
    let tokens = exchange(t, &code_of(&visit.location)).await;
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    tokens
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family() {
    let t = app().await;
    let b = Browser::new(&t);
    let tokens = offline_tokens(&t, &b).await;
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();

    let (status, second) = refresh(&t, &first).await;
    assert_eq!(status, 200, "{second}");
    let second_rt = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_rt, first, "rotated");
    assert!(second["id_token"].is_string());

    let (status, reused) = refresh(&t, &first).await;
    assert_eq!(
        (status, reused["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, after) = refresh(&t, &second_rt).await;
    assert_eq!(
        (status, after["error"].as_str()),
        (400, Some("invalid_grant")),
        "the whole family is revoked"
    );
    let res = t
        .http
        .get(t.url("/userinfo"))
        .bearer_auth(second["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "and so are its access tokens");
}

#[tokio::test]
async fn a_refresh_rechecks_access_and_fails_once_it_is_gone() {
    let t = app().await;
    let b = Browser::new(&t);
    let tokens = offline_tokens(&t, &b).await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    t.plex.reset_calls();
    let (status, next) = refresh(&t, &rt).await;
    assert_eq!(status, 200);
    assert_eq!(plex_account_calls(&t), 0, "cached inside the interval");

    t.plex.remove_share(Account::Friend);
    t.clock.advance(Duration::from_secs(6 * 60));
    let (status, body) = refresh(&t, next["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(plex_account_calls(&t) > 0, "plex.tv was asked again");
}

#[tokio::test]
async fn refresh_tokens_and_sessions_survive_a_restart() {
    let t = app().await;
    let b = Browser::new(&t);
    let tokens = offline_tokens(&t, &b).await;
    let session = b.cookie("plex-oidc-session").unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    let t = t.restart().await;

    let (status, body) = refresh(&t, &rt).await;
    assert_eq!(status, 200, "{body}");
    let info = t
        .http
        .get(t.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200, "access tokens survive too");
    let b = Browser::new(&t);
    b.set_cookie("plex-oidc-session", &session);
    let again = b.get(&grafana(&t, "")).await;
    code_of(&again.location);
}

#[tokio::test]
async fn logout_ends_the_session_revokes_refresh_tokens_and_returns_to_a_registered_uri() {
    let t = app().await;
    let b = Browser::new(&t);
    let tokens = offline_tokens(&t, &b).await;
    let id_token = tokens["id_token"].as_str().unwrap();

    let out = b
        .get(&t.url(&format!(
            "/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye",
            urlencode(LOGOUT_REDIRECT)
        )))
        .await;

    assert_eq!(out.status, 303);
    assert_eq!(
        out.location.as_deref(),
        Some(format!("{LOGOUT_REDIRECT}?state=bye").as_str())
    );
    assert!(b.cookie("plex-oidc-session").is_none());
    let (status, _) = refresh(&t, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400, "the session's refresh tokens are revoked");
    let page = b.get(&grafana(&t, "")).await;
    assert_eq!(
        page.state().as_deref(),
        Some("ready"),
        "signed out means the page again"
    );
}

#[tokio::test]
async fn logout_to_an_unregistered_uri_is_a_page_never_a_redirect() {
    let t = app().await;
    let b = Browser::new(&t);
    b.sign_in(Account::Friend, &grafana(&t, "")).await;
    let out = b
        .get(&t.url(&format!(
            "/logout?client_id=grafana&post_logout_redirect_uri={}",
            urlencode("https://evil.example/")
        )))
        .await;
    assert_eq!(out.status, 400);
    assert!(out.location.is_none());
    assert_eq!(out.state().as_deref(), Some("invalid"));
    assert!(
        b.cookie("plex-oidc-session").is_some(),
        "a refused logout ends nothing"
    );

    let plain = b.get(&t.url("/logout")).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.state().as_deref(), Some("signed-out"));
    assert!(b.cookie("plex-oidc-session").is_none());
}

/// A relying party's back-channel logout endpoint on loopback that records what it receives.
async fn logout_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/backchannel", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            let _ = tx.send(body.to_owned());
                            break;
                        }
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn back_channel_logout_reaches_every_client_of_the_session() {
    let (receiver, mut received) = logout_receiver().await;
    let t = spawn_app_with(|c| {
        c["clients"][0]["backchannel_logout_uri"] = json!(receiver);
        c["clients"][0]["allow_insecure_redirects"] = json!(true);
    })
    .await;
    let b = Browser::new(&t);
    let visit = b.sign_in(Account::Friend, &grafana(&t, "")).await;
    let tokens = exchange(&t, &code_of(&visit.location)).await;
    let sid = jwt_claims(tokens["id_token"].as_str().unwrap())["sid"].clone();

    let out = b.get(&t.url("/logout")).await;
    assert_eq!(out.status, 200);

    let body = tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .expect("delivered within 5 s")
        .unwrap();
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .expect("a logout_token form field");
    let claims = jwt_claims(&token);
    assert_eq!(claims["aud"], "grafana");
    assert_eq!(claims["iss"], t.base);
    assert_eq!(claims["sub"], Account::Friend.id().to_string());
    assert_eq!(claims["sid"], sid);
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none());
}

#[tokio::test]
async fn revocation_and_introspection_work_for_the_clients_own_tokens() {
    let t = app().await;
    let b = Browser::new(&t);
    let tokens = offline_tokens(&t, &b).await;
    let access = tokens["access_token"].as_str().unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();
    let introspect = |token: String| {
        let t = &t;
        async move {
            let res = t
                .http
                .post(t.url("/introspect"))
                .basic_auth("grafana", Some(GRAFANA_SECRET))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    let info = introspect(access.to_owned()).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["sub"], Account::Friend.id().to_string());
    assert_eq!(introspect(rt.to_owned()).await["active"], true);
    assert_eq!(introspect("junk".into()).await["active"], false);

    let res = t
        .http
        .post(t.url("/revoke"))
        .basic_auth("grafana", Some(GRAFANA_SECRET))
        .form(&[("token", rt), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(introspect(rt.to_owned()).await["active"], false);
    assert_eq!(
        introspect(access.to_owned()).await["active"],
        false,
        "the grant's access token too"
    );

    let res = t
        .http
        .post(t.url("/revoke"))
        .form(&[("token", rt), ("client_id", "mobile")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "public clients may not use it");
}
