//! A bounded flood on loopback: junk and valid requests against /authorize, the page API and the token
//! endpoints from many addresses at once, while people sign in normally from addresses of their own.
//! Afterwards: no 5xx, memory bounded, every normal sign-in completed, and /readyz stayed green.
//!
//! Bounded in time (`PLEX_OIDC_LOAD_SECS`, 5 s by default) and in requests (`MAX_REQUESTS`); only
//! 127.0.0.0/8 is ever addressed. The figures are printed: run
//! `cargo test --test integration load -- --nocapture` to read them (alone, so other tests don't share
//! the process's memory and CPU).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::oidc_flow::urlencode;
use crate::support::app::{
    GRAFANA_REDIRECT, GRAFANA_SECRET, TestApp, attribute, pin_code_of, query_param, spawn_app,
    spawn_app_with,
};
use crate::support::fake_plex::Account;

const FLOOD_TASKS: usize = 12;
/// Distinct source addresses the flood rotates through (127.0.2.1 and up), so per-address limits alone
/// cannot absorb it and the global bounds are what is tested.
const FLOOD_ADDRESSES: u8 = 32;
const LEGIT_TASKS: usize = 4;
const MAX_REQUESTS: usize = 250_000;
/// Growth of this process's resident memory that would mean something is unbounded. Generous: other
/// tests run in the same process at the same time.
const RSS_GROWTH_LIMIT_KIB: u64 = 256 * 1024;
/// Between seeing the page and clicking "Sign in with Plex".
const THINK_TIME: Duration = Duration::from_secs(1);
/// How long one normal sign-in may take, waits for `Retry-After` included.
const LOGIN_DEADLINE: Duration = Duration::from_secs(20);

fn flood_duration() -> Duration {
    let secs = std::env::var("PLEX_OIDC_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5u64)
        .clamp(1, 120);
    Duration::from_secs(secs)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn client_from(addr: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(addr))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// xorshift64*: junk needs variety, not quality, and a seed per task keeps runs comparable.
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = (self.next() as usize) % (max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn text(&mut self, max: usize) -> String {
        url::form_urlencoded::byte_serialize(&self.bytes(max)).collect()
    }
}

#[derive(Default)]
struct Tally {
    sent: AtomicUsize,
    server_errors: AtomicUsize,
    throttled: AtomicUsize,
    transport_errors: AtomicUsize,
    by_status: Mutex<BTreeMap<u16, usize>>,
    first_server_error: Mutex<Option<String>>,
}

impl Tally {
    async fn record(&self, what: &str, result: Result<reqwest::Response, reqwest::Error>) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(res) => {
                let status = res.status().as_u16();
                *self.by_status.lock().await.entry(status).or_default() += 1;
                if status == 429 {
                    self.throttled.fetch_add(1, Ordering::Relaxed);
                }
                if status >= 500 {
                    self.server_errors.fetch_add(1, Ordering::Relaxed);
                    let body = res.text().await.unwrap_or_default();
                    self.first_server_error
                        .lock()
                        .await
                        .get_or_insert_with(|| format!("{what}: {status} {body}"));
                } else {
                    // Read the body, as a client would, so the server finishes the exchange.
                    let _ = res.bytes().await;
                }
            }
            Err(_) => {
                self.transport_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn valid_authorize(base: &str, state: u64) -> String {
    format!(
        "{base}/authorize?client_id=grafana&redirect_uri={}&response_type=code&scope=openid+email&state=s{state}",
        urlencode(GRAFANA_REDIRECT)
    )
}

/// One flood request of the kind `n` picks.
async fn flood_once(t: &TestApp, http: &reqwest::Client, junk: &mut Junk, n: u64, tally: &Tally) {
    let base = &t.base;
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("grafana:{GRAFANA_SECRET}"))
    );
    let cookie = format!("plex-oidc-login={}", "c".repeat(32));
    let (what, result) = match n % 12 {
        0 | 1 => (
            "valid authorize",
            http.get(valid_authorize(base, junk.next())).send().await,
        ),
        2 => (
            "junk authorize",
            http.get(format!(
                "{base}/authorize?{}={}&client_id=grafana",
                junk.text(32),
                junk.text(256)
            ))
            .send()
            .await,
        ),
        3 => (
            "oversized state",
            http.get(format!(
                "{}&state={}",
                valid_authorize(base, 0),
                "s".repeat(40 * 1024)
            ))
            .send()
            .await,
        ),
        4 => (
            "junk authorize form",
            http.post(format!("{base}/authorize"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(junk.bytes(8 * 1024))
                .send()
                .await,
        ),
        5 => (
            "junk start",
            http.post(format!("{base}/login/start"))
                .header("cookie", &cookie)
                .json(&json!({ "login": junk.text(40) }))
                .send()
                .await,
        ),
        6 => (
            "junk poll",
            http.post(format!("{base}/login/poll"))
                .header("content-type", "application/json")
                .header("cookie", &cookie)
                .body(junk.bytes(512))
                .send()
                .await,
        ),
        7 => (
            "junk continue",
            http.get(format!("{base}/login/continue?login={}", junk.text(64)))
                .header("cookie", &cookie)
                .send()
                .await,
        ),
        8 => (
            "junk code",
            http.post(format!("{base}/token"))
                .header("authorization", &basic)
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &junk.text(64)),
                ])
                .send()
                .await,
        ),
        9 => (
            "wrong secret",
            http.post(format!("{base}/token"))
                .basic_auth("grafana", Some("wrong"))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
                .send()
                .await,
        ),
        10 => (
            "junk bearer",
            http.get(format!("{base}/userinfo"))
                .bearer_auth(junk.text(64))
                .send()
                .await,
        ),
        _ => {
            // A sign-in that is started and abandoned: creates a real PIN upstream.
            let page = http.get(valid_authorize(base, junk.next())).send().await;
            let Ok(page) = page else {
                return tally.record("abandoned sign-in page", page).await;
            };
            let set_cookie = page
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|v| v.starts_with("plex-oidc-login="))
                .and_then(|v| v.split(';').next())
                .map(str::to_owned);
            let status = page.status().as_u16();
            let html = page.text().await.unwrap_or_default();
            tally.sent.fetch_add(1, Ordering::Relaxed);
            *tally.by_status.lock().await.entry(status).or_default() += 1;
            if status >= 500 {
                tally.server_errors.fetch_add(1, Ordering::Relaxed);
            }
            if status == 429 {
                tally.throttled.fetch_add(1, Ordering::Relaxed);
            }
            let (Some(login), Some(set_cookie)) = (attribute(&html, "data-login"), set_cookie)
            else {
                return;
            };
            (
                "abandoned sign-in start",
                http.post(format!("{base}/login/start"))
                    .header("cookie", set_cookie)
                    .json(&json!({ "login": login }))
                    .send()
                    .await,
            )
        }
    };
    tally.record(what, result).await;
}

/// How one normal sign-in ended, and how long it took.
type Outcome = (Result<(), String>, Duration);

/// Sends a request, and on 429 waits as `Retry-After` says (as the page does) until `deadline`.
async fn patiently(
    deadline: Instant,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, String> {
    loop {
        let res = build()
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        if res.status() != 429 {
            return Ok(res);
        }
        let wait = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .map_or(Duration::from_secs(1), Duration::from_secs)
            .max(Duration::from_millis(100));
        if Instant::now() + wait > deadline {
            return Err(format!(
                "throttled past the deadline (Retry-After {wait:?})"
            ));
        }
        tokio::time::sleep(wait).await;
    }
}

/// A person's whole sign-in, from their own address: page, start, approve at Plex, poll, continue, and
/// the client's code exchange.
async fn legitimate_login(t: &TestApp, http: &reqwest::Client, n: u64) -> Result<(), String> {
    let deadline = Instant::now() + LOGIN_DEADLINE;
    let url = valid_authorize(&t.base, n);
    let page = patiently(deadline, || http.get(&url)).await?;
    if page.status() != 200 {
        return Err(format!("the page answered {}", page.status()));
    }
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("plex-oidc-login="))
        .and_then(|v| v.split(';').next())
        .ok_or("no binding cookie")?
        .to_owned();
    let html = page.text().await.map_err(|e| e.to_string())?;
    let login = attribute(&html, "data-login").ok_or("no login id on the page")?;
    let body = json!({ "login": login });
    let api = |path: &'static str| {
        let body = body.clone();
        let cookie = cookie.clone();
        move || http.post(t.url(path)).header("cookie", &cookie).json(&body)
    };

    // A person reads the page before clicking; the flood goes on meanwhile.
    tokio::time::sleep(THINK_TIME).await;
    let started = patiently(deadline, api("/login/start")).await?;
    let status = started.status();
    let started: Value = started.json().await.map_err(|e| e.to_string())?;
    let popup = started["popup_url"]
        .as_str()
        .ok_or_else(|| format!("start answered {status}: {started}"))?;
    if !t.plex.approve(&pin_code_of(popup), Account::Friend) {
        return Err("fake Plex does not know the PIN".into());
    }
    loop {
        let polled: Value = patiently(deadline, api("/login/poll"))
            .await?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match polled["state"].as_str() {
            Some("approved") => break,
            Some("waiting" | "checking" | "ready") if Instant::now() < deadline => {
                let wait = polled["retry_after_ms"].as_u64().unwrap_or(1000);
                tokio::time::sleep(Duration::from_millis(wait.min(2000))).await;
            }
            _ => return Err(format!("poll answered {polled}")),
        }
    }
    let continue_url = t.url(&format!("/login/continue?login={login}"));
    let done = patiently(deadline, || {
        http.get(&continue_url).header("cookie", &cookie)
    })
    .await?;
    let location = done
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| format!("continue answered {} without a redirect", done.status()))?;
    let code = query_param(&location, "code").ok_or_else(|| format!("no code in {location}"))?;
    let token = patiently(deadline, || {
        http.post(t.url("/token"))
            .basic_auth("grafana", Some(GRAFANA_SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", GRAFANA_REDIRECT),
            ])
    })
    .await?;
    let status = token.status();
    let token: Value = token.json().await.map_err(|e| e.to_string())?;
    if status != 200 || token["id_token"].as_str().is_none() {
        return Err(format!("the code exchange answered {status}: {token}"));
    }
    Ok(())
}

/// What a flood did, for the assertions and the closing note.
struct Report {
    elapsed: Duration,
    sent: usize,
    server_errors: usize,
    first_server_error: Option<String>,
    throttled: usize,
    transport_errors: usize,
    by_status: BTreeMap<u16, usize>,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    rss_after_kib: u64,
    logins: usize,
    login_failures: Vec<String>,
    slowest_login: Duration,
    readyz_checks: usize,
    readyz_failures: usize,
}

impl Report {
    fn print(&self, label: &str) {
        let secs = self.elapsed.as_secs_f64();
        println!(
            "{label}: {} flood requests in {secs:.1} s ({:.0}/s) from {FLOOD_TASKS} tasks over {FLOOD_ADDRESSES} addresses",
            self.sent,
            self.sent as f64 / secs
        );
        println!(
            "{label}: 5xx {}, 429 {}, transport errors {}, by status {:?}",
            self.server_errors, self.throttled, self.transport_errors, self.by_status
        );
        println!(
            "{label}: RSS before {} MiB, peak {} MiB, after {} MiB",
            self.rss_before_kib / 1024,
            self.rss_peak_kib / 1024,
            self.rss_after_kib / 1024
        );
        let succeeded = self.logins - self.login_failures.len();
        println!(
            "{label}: legitimate logins {succeeded}/{} succeeded ({:.1}%), slowest {:.2} s; /readyz {} checks, {} not 200",
            self.logins,
            100.0 * succeeded as f64 / self.logins.max(1) as f64,
            self.slowest_login.as_secs_f64(),
            self.readyz_checks,
            self.readyz_failures
        );
    }
}

/// Floods `t` for `flood_duration()` while people sign in, and watches memory and /readyz.
async fn run_flood(t: Arc<TestApp>) -> Report {
    let rss_before = rss_kib();
    let started = Instant::now();
    let flood_until = started + flood_duration();
    let tally = Arc::new(Tally::default());

    let flood_clients: Arc<Vec<reqwest::Client>> = Arc::new(
        (1..=FLOOD_ADDRESSES)
            .map(|i| client_from(Ipv4Addr::new(127, 0, 2, i)))
            .collect(),
    );
    let mut flood = Vec::new();
    for task in 0..FLOOD_TASKS {
        let (t, tally, clients) = (t.clone(), tally.clone(), flood_clients.clone());
        flood.push(tokio::spawn(async move {
            let mut junk = Junk(0x9e37_79b9_7f4a_7c15 ^ (task as u64 + 1));
            let mut n = task as u64;
            while Instant::now() < flood_until && tally.sent.load(Ordering::Relaxed) < MAX_REQUESTS
            {
                let http = &clients[(junk.next() % clients.len() as u64) as usize];
                flood_once(&t, http, &mut junk, n, &tally).await;
                n += 1;
            }
        }));
    }

    let peak_rss = Arc::new(AtomicUsize::new(rss_before as usize));
    let readyz_failures = Arc::new(AtomicUsize::new(0));
    let readyz_checks = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (t, peak, failures, checks) = (
            t.clone(),
            peak_rss.clone(),
            readyz_failures.clone(),
            readyz_checks.clone(),
        );
        tokio::spawn(async move {
            let http = client_from(Ipv4Addr::new(127, 0, 0, 1));
            while Instant::now() < flood_until {
                peak.fetch_max(rss_kib() as usize, Ordering::Relaxed);
                let ok = match http.get(t.url("/readyz")).send().await {
                    Ok(res) => res.status() == 200,
                    Err(_) => false,
                };
                checks.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Each person signs in from an address of their own, as people behind different connections do.
    let next_person = Arc::new(AtomicUsize::new(0));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let mut people = Vec::new();
    for _ in 0..LEGIT_TASKS {
        let (t, next, outcomes) = (t.clone(), next_person.clone(), outcomes.clone());
        people.push(tokio::spawn(async move {
            while Instant::now() < flood_until {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let addr = Ipv4Addr::new(127, 0, 1, (n % 250 + 1) as u8);
                let begun = Instant::now();
                let result = legitimate_login(&t, &client_from(addr), n as u64).await;
                outcomes.lock().await.push((result, begun.elapsed()));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }

    for task in flood.into_iter().chain(people).chain([watcher]) {
        task.await.expect("a load task panicked");
    }
    let rss_after = rss_kib();
    let outcomes = outcomes.lock().await;
    Report {
        elapsed: started.elapsed(),
        sent: tally.sent.load(Ordering::Relaxed),
        server_errors: tally.server_errors.load(Ordering::Relaxed),
        first_server_error: tally.first_server_error.lock().await.clone(),
        throttled: tally.throttled.load(Ordering::Relaxed),
        transport_errors: tally.transport_errors.load(Ordering::Relaxed),
        by_status: tally.by_status.lock().await.clone(),
        rss_before_kib: rss_before,
        rss_peak_kib: (peak_rss.load(Ordering::Relaxed) as u64).max(rss_after),
        rss_after_kib: rss_after,
        logins: outcomes.len(),
        login_failures: outcomes
            .iter()
            .filter_map(|(r, _)| r.clone().err())
            .collect(),
        slowest_login: outcomes.iter().map(|(_, d)| *d).max().unwrap_or_default(),
        readyz_checks: readyz_checks.load(Ordering::Relaxed),
        readyz_failures: readyz_failures.load(Ordering::Relaxed),
    }
}

/// The service stayed up: no 5xx, every connection answered, /readyz green, memory bounded.
fn assert_service_held_up(r: &Report) {
    // A flood request that signs in and abandons it counts twice, so the cap may be passed by a few.
    assert!(
        r.sent > 0 && r.sent <= MAX_REQUESTS + 2 * FLOOD_TASKS,
        "{} requests",
        r.sent
    );
    assert_eq!(r.server_errors, 0, "first: {:?}", r.first_server_error);
    assert_eq!(r.transport_errors, 0, "connections failed under load");
    assert!(r.readyz_checks > 0);
    assert_eq!(r.readyz_failures, 0, "/readyz went red");
    assert!(
        r.rss_peak_kib.saturating_sub(r.rss_before_kib) < RSS_GROWTH_LIMIT_KIB,
        "RSS grew from {} KiB to {} KiB",
        r.rss_before_kib,
        r.rss_peak_kib
    );
}

fn assert_everyone_signed_in(r: &Report) {
    assert!(r.logins > 0, "no sign-in ran during the flood");
    assert!(
        r.login_failures.is_empty(),
        "sign-ins failed during the flood: {:?}",
        r.login_failures
    );
}

/// A table of 100 pending logins and no per-address limit on starting them: the flood overflows it.
async fn overflowing_app() -> TestApp {
    spawn_app_with(|c| {
        c["limits"] = json!({ "max_pending_logins": 100, "new_logins_per_ip": 100000 });
    })
    .await
}

/// The flood reached the cap: newcomers were told to come back (429) instead of evicting anyone.
fn assert_overflowed(r: &Report) {
    assert!(
        r.by_status.get(&200).copied().unwrap_or(0) >= 100
            && r.by_status.get(&429).copied().unwrap_or(0) > 0,
        "the flood did not fill the table of 100 pending sign-ins: {:?}",
        r.by_status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_junk_and_valid_requests_leaves_normal_logins_working_memory_bounded_and_readyz_green()
 {
    let report = run_flood(Arc::new(spawn_app().await)).await;
    report.print("load");
    assert_service_held_up(&report);
    assert_everyone_signed_in(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_pending_login_capacity_keeps_memory_bounded_and_the_service_up() {
    let report = run_flood(Arc::new(overflowing_app().await)).await;
    report.print("load (100 pending logins)");
    assert_overflowed(&report);
    assert_service_held_up(&report);
}
