//! plex.tv misbehaving at each step of a sign-in: creating the PIN (/login/start), checking it
//! (/login/poll), and reading the account and its resources once approved. Whatever the failure, the
//! person is told Plex is unavailable (or asked to wait while we back off), never that they are denied;
//! every answer comes within the plex.tv timeout plus a margin; and the same sign-in completes as soon as
//! plex.tv is healthy again.
//!
//! The time bounds are liveness checks (nothing hangs on a dead upstream), not performance assertions.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::oidc_flow::urlencode;
use crate::support::app::{
    GRAFANA_REDIRECT, PageLogin, TestApp, attribute, pin_code_of, query_param, spawn_app_on,
    spawn_app_with, temp_dir,
};
use crate::support::fake_plex::{Account, Call, FakePlex, Fault};

/// The plex.tv timeout these tests configure: short, so a slow plex.tv costs little test time.
const PLEX_TIMEOUT: Duration = Duration::from_secs(1);
/// Consecutive failed PIN checks before the page says "unavailable" (`flow::login`).
const CHECKS_BEFORE_UNAVAILABLE: usize = 5;

fn answer_bound() -> Duration {
    PLEX_TIMEOUT + Duration::from_secs(2)
}

/// One way plex.tv fails.
#[derive(Clone, Debug)]
enum Upstream {
    Fails(Fault),
    /// Answers, but only after the request timeout.
    Slow,
}

impl Upstream {
    fn all() -> Vec<Upstream> {
        vec![
            Upstream::Slow,
            Upstream::Fails(Fault::ServerError(500)),
            Upstream::Fails(Fault::ServerError(502)),
            Upstream::Fails(Fault::ServerError(503)),
            Upstream::Fails(Fault::RateLimited),
            Upstream::Fails(Fault::MalformedJson),
            Upstream::Fails(Fault::XmlInsteadOfJson),
            Upstream::Fails(Fault::ResetConnection),
            // Somewhere a followed redirect would leak the user's token to.
            Upstream::Fails(Fault::RedirectTo(
                "http://127.0.0.1:9/api/v2/user?stolen=1".into(),
            )),
        ]
    }

    fn apply(&self, plex: &FakePlex) {
        match self {
            Upstream::Fails(fault) => plex.set_fault(fault.clone()),
            Upstream::Slow => plex.set_latency(PLEX_TIMEOUT * 3),
        }
    }

    fn clear(&self, plex: &FakePlex) {
        plex.set_fault(Fault::None);
        plex.set_latency(Duration::ZERO);
    }
}

async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let value = f.await;
    (value, started.elapsed())
}

fn with_short_timeout(config: &mut Value) {
    config["plex"]["request_timeout"] = json!(format!("{}s", PLEX_TIMEOUT.as_secs()));
}

fn grafana(t: &TestApp) -> String {
    t.authorize_url(&format!(
        "client_id=grafana&redirect_uri={}&response_type=code&scope=openid&state=faulty",
        urlencode(GRAFANA_REDIRECT)
    ))
}

/// After recovery: the sign-in that was interrupted reaches the client with a code and its state.
async fn assert_completes(t: &TestApp, page: &PageLogin, what: &str) {
    let (status, polled) = t.poll(page).await;
    assert_eq!(
        (status, polled["state"].as_str()),
        (200, Some("approved")),
        "{what}: after recovery: {polled}"
    );
    let (status, location) = t.finish(page).await;
    assert_eq!(status, 303, "{what}: {location}");
    assert!(location.starts_with(GRAFANA_REDIRECT), "{what}: {location}");
    assert!(
        query_param(&location, "code").is_some(),
        "{what}: {location}"
    );
    assert_eq!(query_param(&location, "state").as_deref(), Some("faulty"));
}

/// `plex_oidc_plex_request_duration_seconds_count` for one call and outcome, as /metrics shows it now.
async fn plex_calls_counted(t: &TestApp, call: &str, outcome: &str) -> f64 {
    let text = t
        .http
        .get(t.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("plex_oidc_plex_request_duration_seconds_count{"))
        .filter(|l| {
            l.contains(&format!("call=\"{call}\"")) && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn when_plex_fails_to_create_a_pin_the_page_says_unavailable_quickly_and_a_retry_succeeds() {
    let t = spawn_app_with(with_short_timeout).await;
    for upstream in Upstream::all() {
        let what = format!("{upstream:?}");
        let page = t.open_page(&grafana(&t)).await;
        upstream.apply(&t.plex);

        let ((status, body), took) = timed(t.start(&page)).await;

        assert_eq!(status, 503, "{what}: {body}");
        assert_eq!(body["state"], "unavailable", "{what}: {body}");
        assert!(
            body.get("popup_url").is_none(),
            "{what}: no PIN, no link to Plex"
        );
        assert!(took < answer_bound(), "{what}: answered after {took:?}");

        upstream.clear(&t.plex);
        let (status, body) = t.start(&page).await;
        assert_eq!(status, 200, "{what}: the retry: {body}");
        let pin = pin_code_of(body["popup_url"].as_str().unwrap());
        assert!(t.plex.approve(&pin, Account::Friend));
        assert_completes(&t, &page, &what).await;
    }
}

#[tokio::test]
async fn failed_pin_creation_is_counted_by_call_and_outcome() {
    let t = spawn_app_with(with_short_timeout).await;
    for (fault, outcome) in [
        (Fault::ServerError(502), "unavailable"),
        (Fault::RateLimited, "rate_limited"),
        (Fault::MalformedJson, "unexpected"),
    ] {
        let before = plex_calls_counted(&t, "pin_create", outcome).await;
        let page = t.open_page(&grafana(&t)).await;
        t.plex.set_fault(fault.clone());
        let (status, _) = t.start(&page).await;
        t.plex.set_fault(Fault::None);
        assert_eq!(status, 503);
        let after = plex_calls_counted(&t, "pin_create", outcome).await;
        assert!(
            after > before,
            "{fault:?}: {outcome} went from {before} to {after}"
        );
    }
}

#[tokio::test]
async fn when_plex_fails_to_check_the_pin_the_page_waits_with_growing_backoff_then_says_unavailable()
 {
    let t = spawn_app_with(with_short_timeout).await;
    for upstream in Upstream::all() {
        let what = format!("{upstream:?}");
        let page = t.open_page(&grafana(&t)).await;
        let (status, started) = t.start(&page).await;
        assert_eq!(status, 200, "{what}: {started}");
        let pin = pin_code_of(started["popup_url"].as_str().unwrap());
        // The person approves in Plex's app; only plex.tv's API is in trouble.
        assert!(t.plex.approve(&pin, Account::Friend));
        upstream.apply(&t.plex);

        let mut last_wait = Duration::ZERO;
        for check in 1..=CHECKS_BEFORE_UNAVAILABLE {
            let before = t.plex.calls(Call::PinCheck);
            let ((status, polled), took) = timed(t.poll(&page)).await;
            assert_eq!(status, 200, "{what}: check {check}: {polled}");
            assert!(
                took < answer_bound(),
                "{what}: check {check} answered after {took:?}"
            );
            assert_eq!(
                t.plex.calls(Call::PinCheck),
                before + 1,
                "{what}: check {check} asked plex.tv"
            );
            if check == CHECKS_BEFORE_UNAVAILABLE {
                assert_eq!(polled["state"], "unavailable", "{what}: {polled}");
                break;
            }
            assert_eq!(
                polled["state"], "waiting",
                "{what}: check {check}: {polled}"
            );
            let wait = Duration::from_millis(polled["retry_after_ms"].as_u64().unwrap_or(0));
            // Twice the 1 s poll interval at least (less the moments that passed since the answer).
            assert!(
                wait >= Duration::from_millis(1900),
                "{what}: check {check} backs off only {wait:?}"
            );
            assert!(
                wait > last_wait,
                "{what}: the backoff grows: {last_wait:?} then {wait:?}"
            );
            last_wait = wait;

            // Polling again before the backoff is over does not touch plex.tv.
            let (_, early) = t.poll(&page).await;
            assert_eq!(early["state"], "waiting", "{what}: {early}");
            assert_eq!(
                t.plex.calls(Call::PinCheck),
                before + 1,
                "{what}: polled plex.tv early"
            );
            t.clock.advance(wait + Duration::from_millis(100));
        }
        let shown = t.finish(&page).await.1;
        assert_eq!(
            attribute(&shown, "data-state").as_deref(),
            Some("unavailable"),
            "{what}"
        );

        upstream.clear(&t.plex);
        // The page's "try again" starts once more: the same PIN, now checked at once.
        let (status, body) = t.start(&page).await;
        assert_eq!(status, 200, "{what}: the retry: {body}");
        assert_completes(&t, &page, &what).await;
    }
}

#[tokio::test]
async fn a_rate_limited_pin_check_waits_at_least_as_long_as_plex_asks() {
    let t = spawn_app_with(with_short_timeout).await;
    let page = t.open_page(&grafana(&t)).await;
    let (_, started) = t.start(&page).await;
    let pin = pin_code_of(started["popup_url"].as_str().unwrap());
    t.plex
        .set_rate_limit_retry_after(Some(Duration::from_secs(20)));
    t.plex.set_fault(Fault::RateLimited);

    let (status, polled) = t.poll(&page).await;

    assert_eq!(
        (status, polled["state"].as_str()),
        (200, Some("waiting")),
        "{polled}"
    );
    let wait = polled["retry_after_ms"].as_u64().unwrap();
    assert!(wait >= 19_000, "Retry-After: 20 ignored, waiting {wait} ms");

    t.plex.set_fault(Fault::None);
    assert!(t.plex.approve(&pin, Account::Owner));
    t.clock.advance(Duration::from_millis(wait + 100));
    assert_completes(&t, &page, "rate limited").await;
}

/// On one thread (the test runtime runs the server, the fake and the clients): anything that blocked
/// the thread while waiting on plex.tv would stall every other request here.
#[tokio::test]
async fn while_sign_ins_wait_on_a_slow_plex_every_other_request_is_answered_at_once() {
    let t = spawn_app_with(with_short_timeout).await;
    let pages = open_pages(&t, 8).await;
    t.plex.set_latency(PLEX_TIMEOUT * 3);

    let began = Instant::now();
    let stuck: Vec<_> = pages
        .into_iter()
        .map(|page| {
            let (http, url, cookie, login) = (
                t.http.clone(),
                t.url("/login/start"),
                page.cookie,
                page.login_id,
            );
            tokio::spawn(async move {
                let res = http
                    .post(url)
                    .header("cookie", cookie)
                    .json(&json!({ "login": login }))
                    .send()
                    .await
                    .unwrap();
                (res.status().as_u16(), began.elapsed())
            })
        })
        .collect();
    // Give the sign-ins time to reach plex.tv and hang there.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for path in [
        "/healthz",
        "/readyz",
        "/.well-known/openid-configuration",
        "/jwks",
    ] {
        let (res, took) = timed(t.http.get(t.url(path)).send()).await;
        assert_eq!(res.unwrap().status(), 200, "{path}");
        // Answered before any of the stuck plex.tv calls could have given up.
        assert!(
            took < PLEX_TIMEOUT / 2,
            "{path} waited {took:?} behind a slow plex.tv"
        );
    }
    let (page, took) = timed(t.open_page(&grafana(&t))).await;
    assert!(!page.login_id.is_empty());
    assert!(
        took < PLEX_TIMEOUT / 2,
        "a new sign-in page waited {took:?}"
    );

    for task in stuck {
        let (status, after) = task.await.unwrap();
        assert_eq!(
            status, 503,
            "a start that timed out upstream is unavailable"
        );
        assert!(
            after >= PLEX_TIMEOUT,
            "gave up after {after:?}, before the timeout"
        );
        assert!(after < answer_bound(), "answered after {after:?}");
    }
}

async fn open_pages(t: &TestApp, n: usize) -> Vec<PageLogin> {
    let mut pages = Vec::new();
    for _ in 0..n {
        pages.push(t.open_page(&grafana(t)).await);
    }
    pages
}

/// A plex.tv stand-in on loopback that sends the account calls (`/api/v2/user`, `/api/v2/resources`)
/// to one fake and everything else to another, so the account step can fail while PINs work. Each
/// request gets a connection of its own (`Connection: close`), so each is routed by its own path.
async fn split_plex(pins: SocketAddr, account: SocketAddr) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(forward(client, pins, account));
        }
    });
    url
}

async fn forward(mut client: TcpStream, pins: SocketAddr, account: SocketAddr) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let Some(line_end) = head.windows(2).position(|w| w == b"\r\n") else {
        return;
    };
    let request_line = String::from_utf8_lossy(&head[..line_end]).into_owned();
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let upstream = if path.starts_with("/api/v2/user") || path.starts_with("/api/v2/resources") {
        account
    } else {
        pins
    };
    let mut rewritten = head[..line_end + 2].to_vec();
    rewritten.extend_from_slice(b"Connection: close\r\n");
    rewritten.extend_from_slice(&head[line_end + 2..]);
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    if server.write_all(&rewritten).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

#[tokio::test]
async fn when_plex_fails_to_describe_an_approved_account_the_page_says_unavailable_never_denied() {
    let pins = FakePlex::start().await;
    let accounts = FakePlex::start().await;
    let proxy = split_plex(pins.addr(), accounts.addr()).await;
    let t = spawn_app_on(pins, temp_dir("faults-split"), |c| {
        with_short_timeout(c);
        c["plex"]["api_url"] = json!(proxy);
    })
    .await;

    for upstream in Upstream::all() {
        let what = format!("{upstream:?}");
        let page = t.open_page(&grafana(&t)).await;
        let (status, started) = t.start(&page).await;
        assert_eq!(status, 200, "{what}: {started}");
        let pin = pin_code_of(started["popup_url"].as_str().unwrap());
        assert!(t.plex.approve(&pin, Account::Friend));
        upstream.apply(&accounts);
        let before = accounts.calls(Call::User) + accounts.calls(Call::Resources);

        let ((status, polled), took) = timed(t.poll(&page)).await;

        assert_eq!(
            (status, polled["state"].as_str()),
            (200, Some("unavailable")),
            "{what}: {polled}"
        );
        assert!(took < answer_bound(), "{what}: answered after {took:?}");
        assert!(
            accounts.calls(Call::User) + accounts.calls(Call::Resources) > before,
            "{what}: the account step was reached"
        );
        let ((status, shown), took) = timed(t.finish(&page)).await;
        assert_eq!(status, 200, "{what}");
        assert_eq!(
            attribute(&shown, "data-state").as_deref(),
            Some("unavailable"),
            "{what}"
        );
        assert!(
            !shown.contains("code="),
            "{what}: no code without a confirmed account"
        );
        assert!(
            took < answer_bound(),
            "{what}: the page came after {took:?}"
        );

        upstream.clear(&accounts);
        let (status, body) = t.start(&page).await;
        assert_eq!(status, 200, "{what}: the retry: {body}");
        assert_completes(&t, &page, &what).await;
    }
}

#[tokio::test]
async fn a_plex_host_that_does_not_resolve_is_unavailable_within_the_timeout() {
    let t = spawn_app_with(|c| {
        with_short_timeout(c);
        c["plex"]["api_url"] = json!("https://plex-oidc-tests.invalid");
    })
    .await;
    let page = t.open_page(&grafana(&t)).await;

    let ((status, body), took) = timed(t.start(&page)).await;

    assert_eq!(
        (status, body["state"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(took < answer_bound(), "answered after {took:?}");
}

#[tokio::test]
async fn a_plex_that_refuses_connections_is_unavailable_and_recovers_when_it_listens_again() {
    // A port that was free a moment ago: connections are refused until the fake binds it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let placeholder = FakePlex::start().await;
    let t = spawn_app_on(placeholder, temp_dir("faults-refused"), |c| {
        with_short_timeout(c);
        c["plex"]["api_url"] = json!(format!("http://{addr}"));
    })
    .await;
    let page = t.open_page(&grafana(&t)).await;

    let ((status, body), took) = timed(t.start(&page)).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(took < answer_bound(), "answered after {took:?}");

    let revived = FakePlex::start_on(addr).await;
    let (status, body) = t.start(&page).await;
    assert_eq!(status, 200, "{body}");
    let pin = pin_code_of(body["popup_url"].as_str().unwrap());
    assert!(revived.approve(&pin, Account::HomeMember));
    assert_completes(&t, &page, "refused").await;
}
