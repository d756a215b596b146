//! Issue 4, seen from outside as an operator sees it: `/metrics` after scripted sign-ins, the probes,
//! request ids, the logs, and what none of them may ever show.
//!
//! The metrics recorder is global to a process, and tests run in parallel. Counters are therefore
//! asserted exactly either against the real binary (its own process: the scrape moves by what the test
//! did and nothing else) or in-process under a thread-local recorder (`#[tokio::test]` runs the server
//! on the test's one thread).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::oidc_flow::urlencode;
use crate::support::app::{
    GRAFANA_REDIRECT, GRAFANA_SECRET, attribute, base_config, pin_code_of, query_param, spawn_app,
    spawn_app_with, temp_dir,
};
use crate::support::browser::Browser;
use crate::support::fake_plex::{Account, FakePlex, Fault};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/observability/plex-oidc-dashboard.json"
);
const ALERTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/observability/alerts.yml"
);
/// The `X-Request-Id` the scripted browser sends when it comes back for the code.
const CONTINUE_REQUEST_ID: &str = "continue-4f2a";

/// Where the scripted run leaves its final scrape for `.ci/observability-checks.sh` (promtool).
fn scrape_artifact() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("metrics-scrape.txt")
}

// ---------------------------------------------------------------------------------------------------
// A scrape, parsed.

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Clone)]
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| parse_sample(line).unwrap_or_else(|| panic!("unparsable sample: {line}")))
            .collect();
        Scrape {
            text: text.to_owned(),
            samples,
        }
    }

    /// The sum over series named `name` whose labels include all of `labels` (0 when none exist).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}')?;
            let mut labels = BTreeMap::new();
            for pair in body.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once("=\"")?;
                labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
            }
            (name, labels)
        }
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// Every listed series moved by exactly its delta between two scrapes.
fn assert_moved(step: &str, before: &Scrape, after: &Scrape, expected: &[Expected<'_>]) {
    let wrong: Vec<String> = expected
        .iter()
        .filter_map(|(name, labels, delta)| {
            let moved = after.value(name, labels) - before.value(name, labels);
            (moved != *delta).then(|| format!("{name}{labels:?}: moved {moved}, expected {delta}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{step}:\n  {}\n--- scrape after ---\n{}",
        wrong.join("\n  "),
        after.text
    );
}

fn gauge(scrape: &Scrape, name: &str) -> f64 {
    assert!(scrape.has(name), "{name} missing:\n{}", scrape.text);
    scrape.value(name, &[])
}

// ---------------------------------------------------------------------------------------------------
// The real binary, and a browser with a cookie jar to drive it.

struct Binary {
    child: Child,
    base: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Binary {
    async fn start(
        plex: &FakePlex,
        env: &[(&str, &str)],
        adjust: impl FnOnce(&mut Value),
    ) -> Binary {
        let dir = temp_dir("observability");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = base_config(port, plex, &dir.join("state"));
        adjust(&mut config);
        let config_path = dir.join("config.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            let private = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(&config_path, private).unwrap();
        }
        let log = dir.join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_plex-oidc"))
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env_remove("PLEX_OIDC_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file, not a pipe: a full pipe nobody reads would stall the server mid-log.
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("the binary starts");
        let mut server = Binary {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        server.wait_until_up().await;
        server
    }

    async fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(res) = self.http.get(self.url("/healthz")).send().await
                && res.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "no /healthz within a minute:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the process and returns everything it logged.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.logs()
    }

    async fn scrape(&self) -> Scrape {
        let res = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        Scrape::parse(&res.text().await.unwrap())
    }

    fn browser(&self) -> Jar<'_> {
        Jar {
            server: self,
            cookies: Mutex::new(HashMap::new()),
        }
    }

    fn grafana_authorize(&self, extra: &str) -> String {
        self.url(&format!(
            "/authorize?client_id=grafana&redirect_uri={}&response_type=code&scope=openid+profile{extra}",
            urlencode(GRAFANA_REDIRECT)
        ))
    }

    /// POST /token as Grafana; the request carries `request_id`.
    async fn token(&self, form: &[(&str, &str)], request_id: &str) -> (u16, Value) {
        let res = self
            .http
            .post(self.url("/token"))
            .basic_auth("grafana", Some(GRAFANA_SECRET))
            .header("x-request-id", request_id)
            .form(form)
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser against the binary: keeps cookies like `support::browser::Browser` does in-process.
struct Jar<'a> {
    server: &'a Binary,
    cookies: Mutex<HashMap<String, String>>,
}

impl Jar<'_> {
    fn cookie_header(&self) -> String {
        let jar = self.cookies.lock().unwrap();
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&self, res: &reqwest::Response) {
        let mut jar = self.cookies.lock().unwrap();
        for v in res.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (name, value) = v.split(';').next().unwrap().split_once('=').unwrap();
            jar.insert(name.to_owned(), value.to_owned());
        }
    }

    fn cookie_values(&self) -> Vec<String> {
        self.cookies.lock().unwrap().values().cloned().collect()
    }

    /// GET as a navigation: (status, Location, body).
    async fn get(&self, url: &str) -> (u16, Option<String>, String) {
        self.get_as(url, "").await
    }

    /// GET with this `X-Request-Id` (as a proxy in front would send), unless empty.
    async fn get_as(&self, url: &str, request_id: &str) -> (u16, Option<String>, String) {
        let mut request = self
            .server
            .http
            .get(url)
            .header("cookie", self.cookie_header());
        if !request_id.is_empty() {
            request = request.header("x-request-id", request_id);
        }
        let res = request.send().await.unwrap();
        self.keep(&res);
        let location = res
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (res.status().as_u16(), location, res.text().await.unwrap())
    }

    async fn api(&self, path: &str, login: &str) -> (u16, Value) {
        let res = self
            .server
            .http
            .post(self.server.url(path))
            .header("cookie", self.cookie_header())
            .json(&json!({ "login": login }))
            .send()
            .await
            .unwrap();
        self.keep(&res);
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    /// Opens the sign-in page; returns the login id.
    async fn open(&self, authorize_url: &str) -> String {
        let (status, _, body) = self.get(authorize_url).await;
        assert_eq!(status, 200, "the sign-in page is served");
        attribute(&body, "data-login").expect("a login id on the page")
    }

    /// Start, approve at the fake Plex as `account`, poll once: the page's state and the PIN code.
    async fn approve(&self, plex: &FakePlex, login: &str, account: Account) -> (String, String) {
        let (status, started) = self.api("/login/start", login).await;
        assert_eq!(status, 200, "{started}");
        let pin = pin_code_of(started["popup_url"].as_str().unwrap());
        assert!(plex.approve(&pin, account));
        let (_, polled) = self.api("/login/poll", login).await;
        (polled["state"].as_str().unwrap_or_default().to_owned(), pin)
    }

    /// The whole sign-in as a shared account: returns the code and the PIN code it went through.
    async fn sign_in(&self, plex: &FakePlex, authorize_url: &str) -> (String, String) {
        let login = self.open(authorize_url).await;
        let (state, pin) = self.approve(plex, &login, Account::Friend).await;
        assert_eq!(state, "approved");
        let continue_url = self.server.url(&format!("/login/continue?login={login}"));
        let (status, location, _) = self.get_as(&continue_url, CONTINUE_REQUEST_ID).await;
        assert_eq!(status, 303);
        let location = location.expect("a redirect to the client");
        (query_param(&location, "code").expect("a code"), pin)
    }
}

// ---------------------------------------------------------------------------------------------------
// Metrics after scripted sign-ins (the real binary).

#[tokio::test]
async fn scripted_sign_ins_move_the_metrics_by_exactly_what_happened() {
    let plex = FakePlex::start().await;
    // A small token budget (a burst of 10), so the last step can exhaust it.
    let server = Binary::start(&plex, &[], |c| {
        c["limits"] = json!({ "token_requests_per_minute": 20 });
    })
    .await;
    let alice = server.browser();
    let start = server.scrape().await;
    assert_eq!(gauge(&start, "plex_oidc_pending_logins"), 0.0);

    // Success: sign-in, code exchange, refresh.
    let (code, _) = alice
        .sign_in(&plex, &server.grafana_authorize("+offline_access"))
        .await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", GRAFANA_REDIRECT),
    ];
    let (status, tokens) = server.token(&exchange, "scripted-exchange").await;
    assert_eq!(status, 200, "{tokens}");
    let refresh_token = tokens["refresh_token"].as_str().expect("a refresh token");
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    let (status, _) = server.token(&refresh, "scripted-refresh").await;
    assert_eq!(status, 200);
    let (status, _) = server.token(&exchange, "scripted-replay").await;
    assert_eq!(status, 400, "a code is single-use");
    let success = server.scrape().await;
    assert_moved(
        "a successful sign-in",
        &start,
        &success,
        &[
            ("plex_oidc_logins_total", &[("result", "success")], 1.0),
            ("plex_oidc_logins_total", &[], 1.0),
            (
                "plex_oidc_login_duration_seconds_count",
                &[("result", "success")],
                1.0,
            ),
            ("plex_oidc_login_failures_total", &[], 0.0),
            (
                "plex_oidc_token_requests_total",
                &[("grant_type", "authorization_code"), ("result", "success")],
                1.0,
            ),
            (
                "plex_oidc_token_requests_total",
                &[("grant_type", "refresh_token"), ("result", "success")],
                1.0,
            ),
            (
                "plex_oidc_token_requests_total",
                &[
                    ("grant_type", "authorization_code"),
                    ("result", "invalid_grant"),
                ],
                1.0,
            ),
            ("plex_oidc_token_duration_seconds_count", &[], 3.0),
            (
                "plex_oidc_plex_request_duration_seconds_count",
                &[("call", "pin_create"), ("outcome", "ok")],
                1.0,
            ),
            (
                "plex_oidc_plex_request_duration_seconds_count",
                &[("call", "pin_check"), ("outcome", "ok")],
                1.0,
            ),
            (
                "plex_oidc_plex_request_duration_seconds_count",
                &[("call", "user"), ("outcome", "ok")],
                1.0,
            ),
            (
                "plex_oidc_plex_request_duration_seconds_count",
                &[("call", "resources"), ("outcome", "ok")],
                1.0,
            ),
            (
                "plex_oidc_http_requests_total",
                &[("route", "/token"), ("status", "200")],
                2.0,
            ),
            (
                "plex_oidc_http_requests_total",
                &[("route", "/token"), ("status", "400")],
                1.0,
            ),
            (
                "plex_oidc_http_request_duration_seconds_count",
                &[("route", "/login/start")],
                1.0,
            ),
        ],
    );
    assert_eq!(gauge(&success, "plex_oidc_live_sessions"), 1.0);
    assert_eq!(gauge(&success, "plex_oidc_refresh_grants"), 1.0);
    assert_eq!(gauge(&success, "plex_oidc_pending_logins"), 0.0);

    // Denial: an account without access to the server.
    let mallory = server.browser();
    let login = mallory.open(&server.grafana_authorize("")).await;
    let (state, _) = mallory.approve(&plex, &login, Account::Outsider).await;
    assert_eq!(state, "denied");
    let denied = server.scrape().await;
    assert_moved(
        "a denial",
        &success,
        &denied,
        &[
            ("plex_oidc_logins_total", &[("result", "denied")], 1.0),
            ("plex_oidc_logins_total", &[("result", "success")], 0.0),
            (
                "plex_oidc_login_duration_seconds_count",
                &[("result", "denied")],
                1.0,
            ),
            (
                "plex_oidc_login_failures_total",
                &[("reason", "no_server_access")],
                1.0,
            ),
            ("plex_oidc_login_failures_total", &[], 1.0),
        ],
    );

    // Plex outage (a proxy's 502), then rate limiting, while creating the PIN of one page.
    let bob = server.browser();
    let login = bob.open(&server.grafana_authorize("")).await;
    plex.set_fault(Fault::ServerError(502));
    let (status, body) = bob.api("/login/start", &login).await;
    assert_eq!((status, body["state"].as_str()), (503, Some("unavailable")));
    plex.set_fault(Fault::RateLimited);
    let (status, _) = bob.api("/login/start", &login).await;
    assert_eq!(status, 503);
    let outage = server.scrape().await;
    assert_moved(
        "a plex.tv outage",
        &denied,
        &outage,
        &[
            (
                "plex_oidc_logins_total",
                &[("result", "plex_unavailable")],
                2.0,
            ),
            (
                "plex_oidc_login_failures_total",
                &[("reason", "plex_5xx")],
                1.0,
            ),
            (
                "plex_oidc_login_failures_total",
                &[("reason", "plex_rate_limited")],
                1.0,
            ),
            (
                "plex_oidc_plex_request_duration_seconds_count",
                &[("call", "pin_create"), ("outcome", "unavailable")],
                1.0,
            ),
            (
                "plex_oidc_plex_request_duration_seconds_count",
                &[("call", "pin_create"), ("outcome", "rate_limited")],
                1.0,
            ),
            (
                "plex_oidc_plex_rate_limited_total",
                &[("call", "pin_create")],
                1.0,
            ),
            (
                "plex_oidc_http_requests_total",
                &[("route", "/login/start"), ("status", "503")],
                2.0,
            ),
        ],
    );
    assert_eq!(
        gauge(&outage, "plex_oidc_pending_logins"),
        1.0,
        "the page may still retry"
    );

    // Plex is back; the PIN expires at plex.tv before anyone approves it.
    plex.set_fault(Fault::None);
    let (status, _) = bob.api("/login/start", &login).await;
    assert_eq!(status, 200);
    plex.expire_all_pins();
    let (_, polled) = bob.api("/login/poll", &login).await;
    assert_eq!(polled["state"], "expired");
    // Another browser (with a cookie of its own) tries to continue Bob's sign-in.
    let eve = server.browser();
    let _own_page = eve.open(&server.grafana_authorize("")).await;
    let (status, _) = eve.api("/login/poll", &login).await;
    assert_eq!(status, 403);
    let end = server.scrape().await;
    assert_moved(
        "an expired PIN and a foreign browser",
        &outage,
        &end,
        &[
            ("plex_oidc_logins_total", &[("result", "expired")], 1.0),
            (
                "plex_oidc_login_failures_total",
                &[("reason", "pin_not_found")],
                1.0,
            ),
            (
                "plex_oidc_login_failures_total",
                &[("reason", "wrong_browser")],
                1.0,
            ),
            (
                "plex_oidc_plex_request_duration_seconds_count",
                &[("call", "pin_check"), ("outcome", "not_found")],
                1.0,
            ),
        ],
    );
    assert_eq!(
        gauge(&end, "plex_oidc_pending_logins"),
        1.0,
        "only Eve's own page is in progress"
    );
    assert_eq!(
        end.value(
            "plex_oidc_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // A client hammering the token endpoint runs out of budget.
    let bogus = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "not-a-token"),
    ];
    let mut refused = 0.0;
    for _ in 0..15 {
        let (status, _) = server.token(&bogus, "scripted-hammer").await;
        if status == 429 {
            refused += 1.0;
        }
    }
    assert!(refused > 0.0, "15 requests exceed a burst of 10");
    let end_after_limits = server.scrape().await;
    assert_moved(
        "a client over its token budget",
        &end,
        &end_after_limits,
        &[
            (
                "plex_oidc_rate_limited_total",
                &[("route", "/token")],
                refused,
            ),
            (
                "plex_oidc_http_requests_total",
                &[("route", "/token"), ("status", "429")],
                refused,
            ),
            (
                "plex_oidc_token_requests_total",
                &[("grant_type", "refresh_token"), ("result", "invalid_grant")],
                15.0 - refused,
            ),
        ],
    );
    let end = end_after_limits;

    assert_well_formed(&end);
    std::fs::write(scrape_artifact(), &end.text).unwrap();
    assert_dashboard_and_rules_use_only_scraped_metrics(&end);
}

/// What `promtool check metrics` also insists on: HELP and TYPE for every family, before its samples,
/// and histograms whose buckets climb to `+Inf` = `_count`.
fn assert_well_formed(scrape: &Scrape) {
    let mut typed: HashMap<&str, &str> = HashMap::new();
    let mut helped = Vec::new();
    for line in scrape.text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(typed.insert(name, kind).is_none(), "{name} typed twice");
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.trim().is_empty(), "{name} has an empty help text");
            helped.push(name);
        } else if !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| typed.get(f) == Some(&"histogram"))
                })
                .unwrap_or(name);
            assert!(typed.contains_key(family), "{name} sampled before its TYPE");
            assert!(helped.contains(&family), "{family} has no HELP");
        }
    }
    for (name, kind) in &typed {
        if *kind == "histogram" {
            for sample in scrape
                .samples
                .iter()
                .filter(|s| s.name == format!("{name}_count"))
            {
                let inf: Vec<(&str, &str)> = sample
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .chain([("le", "+Inf")])
                    .collect();
                assert_eq!(scrape.value(&format!("{name}_bucket"), &inf), sample.value);
            }
        }
    }
    for name in [
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(gauge(scrape, name) > 0.0, "{name}");
    }
}

/// The dashboard and the alert rules query only series a real scrape has (a renamed metric would
/// otherwise leave an empty panel or an alert that can never fire).
fn assert_dashboard_and_rules_use_only_scraped_metrics(scrape: &Scrape) {
    for path in [DASHBOARD, ALERTS] {
        let text = std::fs::read_to_string(path).unwrap();
        let names = metric_names(&text);
        assert!(names.len() >= 5, "{path} uses hardly any metric: {names:?}");
        let missing: Vec<&String> = names.iter().filter(|n| !scrape.has(n)).collect();
        assert!(
            missing.is_empty(),
            "{path} uses metrics no scrape has: {missing:?}"
        );
    }
}

fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for prefix in ["plex_oidc_", "process_"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let preceded_by_word = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if !preceded_by_word {
                names.insert(tail[..end].to_owned());
            }
            rest = &tail[end..];
        }
    }
    names
}

// ---------------------------------------------------------------------------------------------------
// Secrets (the real binary, JSON logs at the most verbose level).

#[tokio::test]
async fn no_secret_code_or_token_appears_in_metrics_or_logs_during_a_full_flow() {
    let plex = FakePlex::start().await;
    let server = Binary::start(&plex, &[("RUST_LOG", "trace")], |c| {
        c["log"] = json!({ "format": "json" });
    })
    .await;
    let browser = server.browser();
    let (code, pin) = browser
        .sign_in(&plex, &server.grafana_authorize("+offline_access"))
        .await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", GRAFANA_REDIRECT),
    ];
    let (status, tokens) = server.token(&exchange, "secrets-exchange").await;
    assert_eq!(status, 200, "{tokens}");
    let text = |key: &str| tokens[key].as_str().unwrap().to_owned();
    let (access, id_token, refresh) = (
        text("access_token"),
        text("id_token"),
        text("refresh_token"),
    );
    let (status, rotated) = server
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            "secrets-refresh",
        )
        .await;
    assert_eq!(status, 200);
    let rotated_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    let userinfo = server
        .http
        .get(server.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 200);
    // A wrong secret is logged as a failed authentication, never with the secret tried.
    let wrong_secret = "wrong-secret-0123456789abcdefghijklmnopqrs";
    let refused = server
        .http
        .post(server.url("/token"))
        .basic_auth("grafana", Some(wrong_secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rotated_refresh),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let metrics = server.scrape().await.text;
    let cookies = browser.cookie_values();
    let logs = server.stop();

    let mut secrets = vec![
        ("client secret", GRAFANA_SECRET.to_owned()),
        ("wrong client secret", wrong_secret.to_owned()),
        ("authorization code", code),
        ("access token", access),
        ("ID token", id_token),
        ("refresh token", refresh),
        ("rotated refresh token", rotated_refresh),
        ("Plex token", Account::Friend.token().to_owned()),
        ("PIN code", pin),
    ];
    secrets.extend(cookies.into_iter().map(|c| ("cookie value", c)));
    for (what, secret) in &secrets {
        assert!(secret.len() >= 8, "{what} is too short to search for");
        assert!(
            !metrics.contains(secret.as_str()),
            "the {what} is in /metrics"
        );
        assert!(!logs.contains(secret.as_str()), "the {what} is in the logs");
    }

    // The logs were written, as JSON, with the audit event and the request ids: the absence above is
    // not an empty log.
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 10, "only {} lines were logged", lines.len());
    let audit = lines
        .iter()
        .find(|l| l["target"] == "plex_oidc::audit" && l["event"] == "login")
        .expect("an audit event for the sign-in");
    assert_eq!(audit["result"], "success");
    assert_eq!(audit["client_id"], "grafana");
    assert_eq!(audit["plex_user_id"], Account::Friend.id().to_string());
    assert_eq!(audit["plex_username"], "bob");
    assert!(audit["duration_ms"].is_u64(), "{audit}");
    assert_eq!(
        (&audit["span"]["request_id"], &audit["span"]["route"]),
        (&json!(CONTINUE_REQUEST_ID), &json!("/login/continue")),
        "a line logged while serving a request carries its id and route: {audit}"
    );
}

// ---------------------------------------------------------------------------------------------------
// In-process: listeners, probes, request ids, abandoned sign-ins.

#[tokio::test]
async fn a_separate_metrics_listener_serves_metrics_and_the_main_listener_then_does_not() {
    let t = spawn_app_with(|c| c["metrics"] = json!({ "listen": "127.0.0.1:0" })).await;
    let metrics_addr = t.app.metrics_addr().expect("a metrics listener");
    assert_ne!(metrics_addr, t.app.local_addr());

    let res = t
        .http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let scrape = Scrape::parse(&res.text().await.unwrap());
    assert!(scrape.has("plex_oidc_build_info"), "{}", scrape.text);
    assert!(scrape.has("plex_oidc_pending_logins"), "{}", scrape.text);

    let main = t.http.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(
        main.status(),
        404,
        "public listener must not expose metrics"
    );
    let other = t
        .http
        .get(format!("http://{metrics_addr}/authorize"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        404,
        "the metrics listener serves metrics only"
    );
}

#[tokio::test]
async fn healthz_and_readyz_pass_and_readyz_names_every_check() {
    let t = spawn_app().await;
    let res = t.http.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ok");

    let res = t.http.get(t.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "status": "ready", "checks": {
            "config": "ok", "keys": "ok", "store": "ok", "state_dir": "ok"
        } })
    );
}

#[tokio::test]
async fn readyz_fails_naming_the_state_dir_once_it_cannot_take_writes() {
    let t = spawn_app().await;
    // Running as root defeats permission bits; a directory that is gone cannot take writes either.
    std::fs::remove_dir_all(&t.state_dir).unwrap();

    let res = t.http.get(t.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["failing"], json!(["state_dir"]), "{body}");
    assert_eq!(
        body["checks"]["state_dir"],
        "the state directory is not writable"
    );
    let live = t.http.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(live.status(), 200, "alive although not ready");
}

#[tokio::test]
async fn a_request_id_is_echoed_or_made_and_shown_on_error_pages() {
    let t = spawn_app().await;
    let id_of =
        |res: &reqwest::Response| res.headers()["x-request-id"].to_str().unwrap().to_owned();

    let res = t
        .http
        .get(t.url("/healthz"))
        .header("x-request-id", "proxy-7f3a.2_b")
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&res), "proxy-7f3a.2_b", "a proxy's id is reused");

    let made = t.http.get(t.url("/healthz")).send().await.unwrap();
    let made = id_of(&made);
    assert_eq!(made.len(), 16);
    assert!(made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");

    let hostile = t
        .http
        .get(t.url("/healthz"))
        .header("x-request-id", "evil\" onload=alert(1)")
        .send()
        .await
        .unwrap();
    assert_ne!(id_of(&hostile), "evil\" onload=alert(1)");
    assert_eq!(id_of(&hostile).len(), 16, "replaced by one of ours");

    let missing = t.http.get(t.url("/no-such-page")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let id = id_of(&missing);
    let body = missing.text().await.unwrap();
    assert!(
        body.contains(&id),
        "the plain error page shows {id}: {body}"
    );

    let invalid = t
        .http
        .get(t.url("/authorize?client_id=nobody&response_type=code"))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    let id = id_of(&invalid);
    let html = invalid.text().await.unwrap();
    assert!(html.contains(&id), "the error page shows {id}");
}

#[tokio::test]
async fn a_sign_in_left_on_the_page_counts_once_as_abandoned_after_its_deadline() {
    // The server runs on this test's thread, so this recorder sees exactly this test's metrics.
    let recorder = plex_oidc::metrics::builder().build_recorder();
    let local = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let t = spawn_app().await;
    let authorize = t.authorize_url(&format!(
        "client_id=grafana&redirect_uri={}&response_type=code&scope=openid",
        urlencode(GRAFANA_REDIRECT)
    ));
    let _never_clicked = t.open_page(&authorize).await;
    let never_approved = t.open_page(&authorize).await;
    let (status, _) = t.start(&never_approved).await;
    assert_eq!(status, 200);
    let scrape_http = || async {
        let res = t.http.get(t.url("/metrics")).send().await.unwrap();
        Scrape::parse(&res.text().await.unwrap())
    };
    assert_eq!(gauge(&scrape_http().await, "plex_oidc_pending_logins"), 2.0);
    let counted = |result: &str| {
        Scrape::parse(&local.render()).value("plex_oidc_logins_total", &[("result", result)])
    };
    assert_eq!(counted("abandoned"), 0.0);

    // Both pages were closed: nobody polls, so nothing but the scrape-time sweep notices.
    t.clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(gauge(&scrape_http().await, "plex_oidc_pending_logins"), 0.0);
    assert_eq!(gauge(&scrape_http().await, "plex_oidc_pending_logins"), 0.0);

    let local_scrape = Scrape::parse(&local.render());
    assert_eq!(
        counted("abandoned"),
        2.0,
        "once each, however often scraped"
    );
    assert_eq!(counted("expired"), 0.0);
    for reason in ["not_started", "not_approved"] {
        assert_eq!(
            local_scrape.value("plex_oidc_login_failures_total", &[("reason", reason)]),
            1.0,
            "{reason}"
        );
    }
    // Back on the page, the person is offered to start again, as for any expired sign-in.
    let (_, polled) = t.poll(&never_approved).await;
    assert_eq!(polled["state"], "expired");
    assert_eq!(counted("expired"), 0.0, "already counted as abandoned");
}

#[tokio::test]
async fn a_pin_that_expires_while_the_page_polls_counts_as_expired() {
    let recorder = plex_oidc::metrics::builder().build_recorder();
    let local = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let t = spawn_app().await;
    let authorize = t.authorize_url(&format!(
        "client_id=grafana&redirect_uri={}&response_type=code&scope=openid",
        urlencode(GRAFANA_REDIRECT)
    ));
    let page = t.open_page(&authorize).await;
    let (status, started) = t.start(&page).await;
    assert_eq!(status, 200);
    let lifetime = started["expires_in"].as_u64().unwrap();

    t.clock.advance(Duration::from_secs(lifetime + 1));
    let (_, polled) = t.poll(&page).await;
    assert_eq!(polled["state"], "expired");

    let scrape = Scrape::parse(&local.render());
    assert_eq!(
        scrape.value("plex_oidc_logins_total", &[("result", "expired")]),
        1.0
    );
    assert_eq!(
        scrape.value(
            "plex_oidc_login_failures_total",
            &[("reason", "pin_expired")]
        ),
        1.0
    );
    assert_eq!(
        scrape.value(
            "plex_oidc_login_duration_seconds_count",
            &[("result", "expired")]
        ),
        1.0
    );
}

// ---------------------------------------------------------------------------------------------------
// The cost of metrics on the token endpoint. Run on demand; prints figures, asserts none:
//   cargo test --test integration observability::measure -- --ignored --nocapture

#[tokio::test]
#[ignore = "a measurement, not a check: run it on demand"]
async fn measure_the_token_endpoint_with_and_without_the_metrics_recorder() {
    const ROUNDS: usize = 20;
    const PER_ROUND: usize = 25;
    let prometheus = plex_oidc::metrics::builder().build_recorder();
    let noop = metrics::NoopRecorder;
    // Budgets far above the loop's pace: the figures are about metrics, not about 429s.
    let t = spawn_app_with(|c| {
        c["limits"] = json!({
            "login_requests_per_minute": 100_000,
            "token_requests_per_minute": 100_000
        });
    })
    .await;
    let browser = Browser::new(&t);
    let authorize = t.authorize_url(&format!(
        "client_id=grafana&redirect_uri={}&response_type=code&scope=openid+profile",
        urlencode(GRAFANA_REDIRECT)
    ));
    let first = browser.sign_in(Account::Friend, &authorize).await;
    assert_eq!(first.status, 303);

    let mut with = Vec::new();
    let mut without = Vec::new();
    for round in 0..ROUNDS * 2 {
        // Alternate so drift (CPU frequency, caches, other load) affects both alike.
        let recording = round % 2 == 0;
        let _guard = if recording {
            metrics::set_default_local_recorder(&prometheus)
        } else {
            metrics::set_default_local_recorder(&noop)
        };
        for _ in 0..PER_ROUND {
            // A returning user: the code comes straight from the session, without Plex.
            let visit = browser.get(&authorize).await;
            let location = visit
                .location
                .as_deref()
                .unwrap_or_else(|| panic!("{visit:?}"));
            let code = query_param(location, "code").unwrap();
            let started = Instant::now();
            let res = t
                .http
                .post(t.url("/token"))
                .basic_auth("grafana", Some(GRAFANA_SECRET))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", GRAFANA_REDIRECT),
                ])
                .send()
                .await
                .unwrap();
            let _ = res.bytes().await.unwrap();
            let elapsed = started.elapsed();
            if recording {
                with.push(elapsed);
            } else {
                without.push(elapsed);
            }
        }
    }
    let stats = |samples: &mut Vec<Duration>| {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        (at(0.5), at(0.9), samples.len())
    };
    let (with_p50, with_p90, n) = stats(&mut with);
    let (without_p50, without_p90, _) = stats(&mut without);
    println!(
        "token endpoint, {n} exchanges each, {} build:\n  with the Prometheus recorder: median {with_p50:?}, p90 {with_p90:?}\n  without (no-op recorder):     median {without_p50:?}, p90 {without_p90:?}\n  median difference: {:?}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        with_p50.checked_sub(without_p50).unwrap_or_default(),
    );
    let exported = Scrape::parse(&prometheus.handle().render());
    assert_eq!(
        exported.value("plex_oidc_token_duration_seconds_count", &[]),
        n as f64,
        "the recorder saw exactly the recorded half"
    );
}

#[test]
fn the_scrape_parser_reads_labels_values_and_infinity() {
    let scrape = Scrape::parse(
        "# TYPE a counter\na_total{x=\"1\",y=\"two words\"} 3\nb 0.5\nh_bucket{le=\"+Inf\"} 7\n",
    );
    assert_eq!(scrape.value("a_total", &[("y", "two words")]), 3.0);
    assert_eq!(scrape.value("a_total", &[("x", "2")]), 0.0);
    assert_eq!(scrape.value("b", &[]), 0.5);
    assert_eq!(scrape.value("h_bucket", &[("le", "+Inf")]), 7.0);
    let names =
        metric_names("sum(rate(plex_oidc_logins_total[5m])) / xplex_oidc_no process_open_fds");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["plex_oidc_logins_total", "process_open_fds"]
    );
}
