//! What a client or a person gets when something is wrong: RFC 6749 codes, pages instead of redirects to
//! unverified URIs, and codes that cannot be used twice.

use serde_json::Value;

use crate::oidc_flow::urlencode;
use crate::support::app::{
    GRAFANA_REDIRECT, GRAFANA_SECRET, STRICT_REDIRECT, STRICT_SECRET, TestApp, attribute,
    query_param, spawn_app,
};
use crate::support::fake_plex::Account;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

async fn grafana_code(t: &TestApp) -> String {
    let url = t.authorize_url(&format!(
        "client_id=grafana&redirect_uri={}&response_type=code&scope=openid+email",
        urlencode(GRAFANA_REDIRECT)
    ));
    let (status, location) = t.login_as(Account::Friend, &url).await;
    assert_eq!(status, 303, "{location}");
    query_param(&location, "code").unwrap()
}

async fn strict_code(t: &TestApp) -> String {
    let url = t.authorize_url(&format!(
        "client_id=strict&redirect_uri={}&response_type=code&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=S256",
        urlencode(STRICT_REDIRECT)
    ));
    let (status, location) = t.login_as(Account::Owner, &url).await;
    assert_eq!(status, 303, "{location}");
    query_param(&location, "code").unwrap()
}

async fn token(
    t: &TestApp,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, Value, Option<String>) {
    let mut req = t.http.post(t.url("/token")).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, res.json().await.unwrap(), challenge)
}

fn exchange(code: &str) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", GRAFANA_REDIRECT),
    ]
}

async fn userinfo_status(t: &TestApp, access_token: &str) -> u16 {
    t.http
        .get(t.url("/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_replayed_code_fails_and_revokes_what_the_first_use_issued() {
    let t = spawn_app().await;
    let code = grafana_code(&t).await;
    let (status, first, _) = token(&t, Some(("grafana", GRAFANA_SECRET)), &exchange(&code)).await;
    assert_eq!(status, 200, "{first}");
    let access = first["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo_status(&t, &access).await, 200);

    let (status, second, _) = token(&t, Some(("grafana", GRAFANA_SECRET)), &exchange(&code)).await;

    assert_eq!(status, 400);
    assert_eq!(second["error"], "invalid_grant");
    assert_eq!(
        userinfo_status(&t, &access).await,
        401,
        "tokens of a replayed code are revoked"
    );
}

#[tokio::test]
async fn a_replay_is_recognised_whatever_redirect_uri_it_claims() {
    let t = spawn_app().await;
    let code = grafana_code(&t).await;
    let (status, first, _) = token(&t, Some(("grafana", GRAFANA_SECRET)), &exchange(&code)).await;
    assert_eq!(status, 200, "{first}");
    let access = first["access_token"].as_str().unwrap().to_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://grafana.example.com/other"),
    ];
    let (status, body, _) = token(&t, Some(("grafana", GRAFANA_SECRET)), &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(body["error_description"], "the code was already used");
    assert_eq!(
        userinfo_status(&t, &access).await,
        401,
        "the first tokens are revoked"
    );
}

#[tokio::test]
async fn a_wrong_pkce_verifier_is_an_invalid_grant() {
    let t = spawn_app().await;
    let code = strict_code(&t).await;
    let wrong = "x".repeat(43);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", STRICT_REDIRECT),
        ("code_verifier", wrong.as_str()),
    ];
    let (status, body, _) = token(&t, Some(("strict", STRICT_SECRET)), &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", STRICT_REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let (status, body, _) = token(&t, Some(("strict", STRICT_SECRET)), &form).await;
    assert_eq!(status, 200, "the right verifier still works: {body}");
}

#[tokio::test]
async fn a_missing_verifier_for_a_pkce_code_is_refused() {
    let t = spawn_app().await;
    let code = strict_code(&t).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", STRICT_REDIRECT),
    ];
    let (status, body, _) = token(&t, Some(("strict", STRICT_SECRET)), &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn a_different_redirect_uri_at_the_token_endpoint_is_an_invalid_grant() {
    let t = spawn_app().await;
    let code = grafana_code(&t).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://grafana.example.com/other"),
    ];
    let (status, body, _) = token(&t, Some(("grafana", GRAFANA_SECRET)), &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn a_wrong_basic_secret_gets_401_with_a_challenge_and_does_not_burn_the_code() {
    let t = spawn_app().await;
    let code = grafana_code(&t).await;
    let (status, body, challenge) = token(&t, Some(("grafana", "wrong")), &exchange(&code)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(challenge.unwrap().starts_with("Basic"));

    // golang/oauth2 retries the same code with client_secret_post after a Basic 401.
    let mut form = exchange(&code);
    form.extend([("client_id", "grafana"), ("client_secret", GRAFANA_SECRET)]);
    let (status, body, _) = token(&t, None, &form).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_wrong_post_secret_gets_invalid_client_without_a_basic_challenge() {
    let t = spawn_app().await;
    let code = grafana_code(&t).await;
    let mut form = exchange(&code);
    form.extend([("client_id", "grafana"), ("client_secret", "wrong")]);
    let (status, body, challenge) = token(&t, None, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(challenge.is_none());
}

#[tokio::test]
async fn a_confidential_client_cannot_skip_its_secret_and_unknown_clients_are_refused() {
    let t = spawn_app().await;
    let code = grafana_code(&t).await;
    let mut form = exchange(&code);
    form.push(("client_id", "grafana"));
    let (status, body, _) = token(&t, None, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    let (status, body, _) = token(&t, Some(("nobody", "x")), &exchange(&code)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test]
async fn token_requests_that_are_not_forms_or_not_code_grants_are_refused() {
    let t = spawn_app().await;
    let res = t
        .http
        .post(t.url("/token"))
        .basic_auth("grafana", Some(GRAFANA_SECRET))
        .json(&serde_json::json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );

    let (status, body, _) = token(
        &t,
        Some(("grafana", GRAFANA_SECRET)),
        &[("grant_type", "password"), ("username", "a")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );

    let (status, body, _) = token(
        &t,
        Some(("grafana", GRAFANA_SECRET)),
        &[
            ("grant_type", "authorization_code"),
            ("code", "a"),
            ("code", "b"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn an_unknown_client_or_unregistered_redirect_uri_gets_a_page_never_a_redirect() {
    let t = spawn_app().await;
    for query in [
        format!(
            "client_id=nobody&redirect_uri={}&response_type=code&scope=openid",
            urlencode(GRAFANA_REDIRECT)
        ),
        format!(
            "client_id=grafana&redirect_uri={}&response_type=code&scope=openid",
            urlencode("https://evil.example/cb")
        ),
        "response_type=code&scope=openid".to_owned(),
    ] {
        let res = t.http.get(t.authorize_url(&query)).send().await.unwrap();
        assert_eq!(res.status(), 400, "{query}");
        assert!(res.headers().get("location").is_none());
        let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let html = res.text().await.unwrap();
        assert_eq!(attribute(&html, "data-state").as_deref(), Some("invalid"));
        assert!(html.contains(&request_id), "the page shows the request id");
    }
}

#[tokio::test]
async fn protocol_errors_are_redirected_with_state_and_issuer() {
    let t = spawn_app().await;
    let query = format!(
        "client_id=grafana&redirect_uri={}&response_type=token&scope=openid&state=st",
        urlencode(GRAFANA_REDIRECT)
    );
    let res = t.http.get(t.authorize_url(&query)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(GRAFANA_REDIRECT));
    assert_eq!(
        query_param(location, "error").as_deref(),
        Some("unsupported_response_type")
    );
    assert_eq!(query_param(location, "state").as_deref(), Some("st"));
    assert_eq!(
        query_param(location, "iss").as_deref(),
        Some(t.base.as_str())
    );
}

#[tokio::test]
async fn prompt_none_without_a_session_is_login_required() {
    let t = spawn_app().await;
    let query = format!(
        "client_id=grafana&redirect_uri={}&response_type=code&scope=openid&prompt=none",
        urlencode(GRAFANA_REDIRECT)
    );
    let res = t.http.get(t.authorize_url(&query)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap();
    assert_eq!(
        query_param(location, "error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn an_oversized_state_gets_a_clean_400_by_get_and_by_post() {
    let t = spawn_app().await;
    // http::Uri caps a URI near 64 KiB, so the GET carries 60 KB and the POST the full 100 KB.
    let query = format!(
        "client_id=grafana&redirect_uri={}&response_type=code&scope=openid&state={}",
        urlencode(GRAFANA_REDIRECT),
        "a".repeat(60 * 1024)
    );
    let res = t
        .http
        .get(t.authorize_url(&query))
        .send()
        .await
        .expect("GET sent");
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());

    let state = "a".repeat(100 * 1024);
    let res = t
        .http
        .post(t.url("/authorize"))
        .form(&[
            ("client_id", "grafana"),
            ("redirect_uri", GRAFANA_REDIRECT),
            ("response_type", "code"),
            ("scope", "openid"),
            ("state", state.as_str()),
        ])
        .send()
        .await
        .expect("POST sent");
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
}

#[tokio::test]
async fn discovery_publishes_the_issuer_exactly_and_jwks_matches_the_token_kid() {
    let t = spawn_app().await;
    let doc: Value = t
        .http
        .get(t.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], t.base);
    assert_eq!(doc["token_endpoint"], format!("{}/token", t.base));
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert!(doc.get("pushed_authorization_request_endpoint").is_none());

    let jwks: Value = t
        .http
        .get(t.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    let code = grafana_code(&t).await;
    let (_, body, _) = token(&t, Some(("grafana", GRAFANA_SECRET)), &exchange(&code)).await;
    let id_token = body["id_token"].as_str().unwrap();
    use base64::Engine as _;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id_token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], kid);
    assert_eq!(header["alg"], "RS256");
}

#[tokio::test]
async fn a_login_cannot_be_continued_from_another_browser() {
    let t = spawn_app().await;
    let url = t.authorize_url(&format!(
        "client_id=grafana&redirect_uri={}&response_type=code&scope=openid",
        urlencode(GRAFANA_REDIRECT)
    ));
    let page = t.open_page(&url).await;
    let (_, started) = t.start(&page).await;
    let pin = crate::support::app::pin_code_of(started["popup_url"].as_str().unwrap());
    assert!(t.plex.approve(&pin, Account::Outsider));
    let mut attacker_page = page.clone();
    attacker_page.cookie = "plex-oidc-login=someone-elses-browser-cookie".into();
    let (status, body) = t.poll(&attacker_page).await;
    assert_eq!(status, 403, "{body}");
    let (status, location) = t.finish(&attacker_page).await;
    assert_eq!(status, 200);
    assert!(!location.contains("code="));
}
