//! The whole sign-in with a strict relying-party library: discovery, code + PKCE, ID token with nonce and
//! at_hash, userinfo.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};

use crate::support::app::{
    GRAFANA_REDIRECT, GRAFANA_SECRET, MOBILE_REDIRECT, query_param, spawn_app,
};
use crate::support::fake_plex::Account;

/// openidconnect's HTTP client, over our reqwest (no redirects, as a relying party must).
async fn rp_http(
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, std::io::Error> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(std::io::Error::other)?;
    let (parts, body) = request.into_parts();
    let mut builder = client
        .request(parts.method, parts.uri.to_string())
        .body(body);
    for (name, value) in &parts.headers {
        builder = builder.header(name, value);
    }
    let res = builder.send().await.map_err(std::io::Error::other)?;
    let mut out = http::Response::builder().status(res.status());
    for (name, value) in res.headers() {
        out = out.header(name, value);
    }
    let body = res.bytes().await.map_err(std::io::Error::other)?.to_vec();
    out.body(body).map_err(std::io::Error::other)
}

#[tokio::test]
async fn a_shared_user_signs_in_through_a_strict_relying_party() {
    let t = spawn_app().await;
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(t.base.clone()).unwrap(), &rp_http)
            .await
            .expect("discovery document accepted");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("grafana".into()),
        Some(ClientSecret::new(GRAFANA_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(GRAFANA_REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();

    let (status, location) = t.login_as(Account::Friend, auth_url.as_str()).await;

    assert_eq!(status, 303, "{location}");
    assert!(location.starts_with(GRAFANA_REDIRECT), "{location}");
    assert_eq!(
        query_param(&location, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    assert_eq!(
        query_param(&location, "iss").as_deref(),
        Some(t.base.as_str())
    );
    let code = query_param(&location, "code").expect("a code");
    assert!(code.len() >= 22, "at least 128 bits");

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&rp_http)
        .await
        .expect("token response accepted");
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("ID token verifies");
    assert_eq!(claims.subject().as_str(), Account::Friend.id().to_string());
    assert_eq!(
        claims.preferred_username().map(|u| u.as_str()),
        Account::Friend.username()
    );
    assert_eq!(claims.email().map(|e| e.as_str()), Account::Friend.email());
    assert_eq!(claims.email_verified(), Some(true));
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));

    let userinfo: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&rp_http)
        .await
        .expect("userinfo accepted");
    assert_eq!(userinfo.subject(), claims.subject());
    assert_eq!(
        userinfo.email().map(|e| e.as_str()),
        Account::Friend.email()
    );
    let _: Option<&CoreGenderClaim> = userinfo.gender();
}

#[tokio::test]
async fn every_kind_of_member_gets_in_and_an_outsider_does_not() {
    let t = spawn_app().await;
    let url = t.authorize_url(&format!(
        "client_id=grafana&redirect_uri={}&response_type=code&scope=openid+email+profile&state=s1",
        urlencode(GRAFANA_REDIRECT)
    ));
    for account in [
        Account::Owner,
        Account::Friend,
        Account::HomeMember,
        Account::Managed,
    ] {
        let (status, location) = t.login_as(account, &url).await;
        assert_eq!(status, 303, "{account:?}: {location}");
        assert!(query_param(&location, "code").is_some(), "{account:?}");
    }
    let (status, body) = t.login_as(Account::Outsider, &url).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("state:denied"), "{body}");
    assert!(
        body.contains(Account::Outsider.username().unwrap()),
        "{body}"
    );
}

#[tokio::test]
async fn a_managed_user_without_email_gets_no_email_claims() {
    let t = spawn_app().await;
    let url = t.authorize_url(&format!(
        "client_id=grafana&redirect_uri={}&response_type=code&scope=openid+email+profile",
        urlencode(GRAFANA_REDIRECT)
    ));
    let (_, location) = t.login_as(Account::Managed, &url).await;
    let code = query_param(&location, "code").unwrap();
    let body = t.grafana_tokens(&code).await;
    let info = t.userinfo(body["access_token"].as_str().unwrap()).await;
    assert_eq!(info["sub"], Account::Managed.id().to_string());
    assert!(info.get("email").is_none(), "{info}");
    assert!(info.get("email_verified").is_none(), "{info}");
    assert_eq!(info["preferred_username"], Account::Managed.title());
}

#[tokio::test]
async fn a_public_client_signs_in_with_pkce_to_a_custom_scheme() {
    let t = spawn_app().await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let url = t.authorize_url(&format!(
        "client_id=mobile&redirect_uri={}&response_type=code&scope=openid&code_challenge={challenge}&code_challenge_method=S256",
        urlencode(MOBILE_REDIRECT)
    ));
    let (status, location) = t.login_as(Account::Owner, &url).await;
    assert_eq!(status, 303);
    assert!(
        location.starts_with("app.immich:///oauth-callback?code="),
        "{location}"
    );
    let code = query_param(&location, "code").unwrap();
    let res = t
        .http
        .post(t.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", MOBILE_REDIRECT),
            ("client_id", "mobile"),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn the_groups_claim_says_how_the_account_reaches_the_server() {
    let t = spawn_app().await;
    let url = t.authorize_url(&format!(
        "client_id=grafana&redirect_uri={}&response_type=code&scope=openid+groups",
        urlencode(GRAFANA_REDIRECT)
    ));
    for (account, relation) in [
        (Account::Owner, "plex:owner"),
        (Account::HomeMember, "plex:home"),
        (Account::Friend, "plex:shared"),
    ] {
        let (_, location) = t.login_as(account, &url).await;
        let code = query_param(&location, "code").unwrap();
        let body = t.grafana_tokens(&code).await;
        let info = t.userinfo(body["access_token"].as_str().unwrap()).await;
        assert_eq!(
            info["groups"],
            serde_json::json!(["plex:user", relation]),
            "{account:?}"
        );
    }
}
