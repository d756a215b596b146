//! Request budgets: 429 with Retry-After past the limit, per client address (a trusted proxy's
//! X-Forwarded-For counts) and per client at the token endpoint.

use serde_json::{Value, json};

use crate::oidc_flow::urlencode;
use crate::support::app::{GRAFANA_REDIRECT, GRAFANA_SECRET, TestApp, spawn_app_with};

async fn tight() -> TestApp {
    spawn_app_with(|c| {
        c["limits"] = json!({
            "login_requests_per_minute": 20,
            "token_requests_per_minute": 20,
            "new_logins_per_ip": 3
        });
    })
    .await
}

fn authorize(t: &TestApp) -> String {
    t.authorize_url(&format!(
        "client_id=grafana&redirect_uri={}&response_type=code&scope=openid",
        urlencode(GRAFANA_REDIRECT)
    ))
}

async fn get_as(t: &TestApp, url: &str, client_ip: &str) -> reqwest::Response {
    t.http
        .get(url)
        .header("x-forwarded-for", client_ip)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn starting_too_many_sign_ins_from_one_address_gets_429_with_retry_after() {
    let t = tight().await;
    for _ in 0..3 {
        assert_eq!(
            get_as(&t, &authorize(&t), "203.0.113.7").await.status(),
            200
        );
    }
    let refused = get_as(&t, &authorize(&t), "203.0.113.7").await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(
        get_as(&t, &authorize(&t), "203.0.113.8").await.status(),
        200,
        "another client behind the trusted proxy has its own budget"
    );
}

#[tokio::test]
async fn the_page_api_is_limited_per_address_with_a_json_answer() {
    let t = tight().await;
    let mut statuses = Vec::new();
    let mut last = Value::Null;
    for _ in 0..12 {
        let res = t
            .http
            .post(t.url("/login/poll"))
            .header("x-forwarded-for", "198.51.100.1")
            .json(&json!({"login": "nothing"}))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
        last = res.json().await.unwrap();
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(last["state"], "rate_limited");
    assert!(last["retry_after_ms"].as_u64().unwrap() >= 1000);
}

#[tokio::test]
async fn the_token_endpoint_is_limited_per_client() {
    let t = tight().await;
    let mut statuses = Vec::new();
    let mut last = Value::Null;
    for _ in 0..11 {
        let res = t
            .http
            .post(t.url("/token"))
            .basic_auth("grafana", Some(GRAFANA_SECRET))
            .form(&[("grant_type", "authorization_code"), ("code", "nope")])
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
        last = res.json().await.unwrap();
    }
    assert_eq!(statuses[..10], [400; 10], "{statuses:?}");
    assert_eq!(statuses[10], 429);
    assert_eq!(last["error"], "temporarily_unavailable");
}

#[tokio::test]
async fn an_untrusted_peer_cannot_pick_its_address_with_x_forwarded_for() {
    let t = spawn_app_with(|c| {
        c["limits"] = json!({ "new_logins_per_ip": 2, "trusted_proxies": ["192.0.2.1"] });
    })
    .await;
    // Loopback is not trusted now, so every forged address is still 127.0.0.1.
    assert_eq!(get_as(&t, &authorize(&t), "10.0.0.1").await.status(), 200);
    assert_eq!(get_as(&t, &authorize(&t), "10.0.0.2").await.status(), 200);
    assert_eq!(get_as(&t, &authorize(&t), "10.0.0.3").await.status(), 429);
}

#[tokio::test]
async fn oversized_headers_are_refused_and_the_server_keeps_serving() {
    let t = tight().await;
    let res = t
        .http
        .get(t.url("/healthz"))
        .header("x-junk", "a".repeat(1024 * 1024))
        .send()
        .await;
    // hyper answers 431, or closes the connection before reqwest finished sending.
    if let Ok(res) = res {
        assert_eq!(res.status(), 431, "too large headers");
    }
    let ok = t.http.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_full_table_refuses_newcomers_and_keeps_sign_ins_in_progress() {
    use crate::support::browser::Browser;
    use crate::support::fake_plex::Account;
    let t = spawn_app_with(|c| {
        c["limits"] = json!({ "max_pending_logins": 100, "new_logins_per_ip": 100000,
                              "login_requests_per_minute": 100000 });
    })
    .await;
    // Two people open the page and their page asks for a PIN, as ours does on load.
    let people = [Browser::new(&t), Browser::new(&t)];
    let mut logins = Vec::new();
    for b in &people {
        let page = b.get(&authorize(&t)).await;
        let login = crate::support::app::attribute(&page.body, "data-login").unwrap();
        let (status, started) = b.api("/login/start", json!({ "login": login })).await;
        assert_eq!(status, 200);
        logins.push((login, started));
    }
    // A flood from many addresses fills the table.
    let mut refused = 0;
    for i in 0..300 {
        let res = get_as(&t, &authorize(&t), &format!("203.0.113.{}", i % 250)).await;
        match res.status().as_u16() {
            200 => {}
            429 => {
                assert!(res.headers().contains_key("retry-after"));
                refused += 1;
            }
            other => panic!("the flood got {other}"),
        }
    }
    assert!(
        refused >= 150,
        "newcomers are refused once the table is full ({refused})"
    );
    // The people already signing in finish.
    for (b, (login, started)) in people.iter().zip(logins) {
        let pin = crate::support::app::pin_code_of(started["popup_url"].as_str().unwrap());
        assert!(t.plex.approve(&pin, Account::Friend));
        let (_, polled) = b.api("/login/poll", json!({ "login": login })).await;
        assert_eq!(polled["state"], "approved", "{polled}");
        let done = b
            .get(&t.url(&format!("/login/continue?login={login}")))
            .await;
        assert_eq!(done.status, 303);
    }
    // Once the flood's never-started pages are old, the table makes room again.
    t.clock.advance(std::time::Duration::from_secs(11));
    assert_eq!(
        get_as(&t, &authorize(&t), "198.51.100.9").await.status(),
        200
    );
}
