//! The sign-in page in real headless Chromium (tests/browser/run.mjs, playwright-core driving Debian's
//! chromium) against the real server and the fake plex.tv. Needs `npm ci --prefix tests/browser` and
//! /usr/bin/chromium; `.ci/run` installs both. A missing browser fails the test: it never passes silently.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::oidc_flow::urlencode;
use crate::support::app::{GRAFANA_REDIRECT, TestApp, spawn_app_with, temp_dir};
use crate::support::fake_plex::{Account, Fault};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Screenshots land in test-artifacts/browser/<name>/ (kept by CI as artifacts).
fn artifacts(name: &str) -> PathBuf {
    let dir = repo().join("test-artifacts").join("browser").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs one scenario and returns its JSON result line; panics with the script's output on failure.
async fn scenario(name: &str, t: &TestApp, args: &[(&str, String)]) -> Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(repo().join("tests/browser/run.mjs"))
        .arg("--scenario")
        .arg(name)
        .arg("--screenshots")
        .arg(artifacts(name));
    if !args.iter().any(|(k, _)| *k == "--authorize-url") {
        cmd.arg("--authorize-url")
            .arg(authorize_url(t, "s-browser"));
    }
    for (k, v) in args {
        cmd.arg(k).arg(v);
    }
    cmd.kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("the browser scenario finishes within 90 s")
        .expect("node runs (install Node.js and `npm ci --prefix tests/browser`)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    assert!(
        output.status.success() && result["ok"] == true,
        "scenario {name} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert_eq!(result["csp_violations"], json!([]), "no CSP violations");
    result
}

fn authorize_url(t: &TestApp, state: &str) -> String {
    t.authorize_url(&format!(
        "client_id=grafana&redirect_uri={}&response_type=code&scope=openid+profile+email&state={state}",
        urlencode(GRAFANA_REDIRECT)
    ))
}

fn expect_app() -> (&'static str, String) {
    ("--expect-redirect-prefix", GRAFANA_REDIRECT.to_owned())
}

async fn app() -> TestApp {
    spawn_app_with(|_| {}).await
}

fn report(name: &str, result: &Value) {
    if let Some(ms) = result["approve_to_redirect_ms"].as_f64() {
        println!("browser {name}: approve in Plex -> back at the app: {ms:.0} ms");
    }
}

#[tokio::test]
async fn in_popup_mode_a_shared_user_lands_back_at_the_app_with_a_code() {
    let t = app().await;
    let result = scenario("popup-approve", &t, &[expect_app()]).await;
    assert!(
        result["final_url"].as_str().unwrap().contains("code="),
        "{result}"
    );
    report("popup", &result);
}

#[tokio::test]
async fn clicking_before_the_pin_is_ready_still_opens_plex_in_the_popup() {
    let t = app().await;
    scenario("popup-early-click", &t, &[expect_app()]).await;
}

#[tokio::test]
async fn on_a_phone_the_whole_page_goes_to_plex_and_comes_back_with_a_code() {
    let t = app().await;
    let result = scenario("redirect-approve", &t, &[expect_app()]).await;
    assert!(
        result["final_url"].as_str().unwrap().contains("code="),
        "{result}"
    );
    report("redirect", &result);
}

#[tokio::test]
async fn a_blocked_popup_falls_back_to_the_redirect() {
    let t = app().await;
    scenario("popup-blocked", &t, &[expect_app()]).await;
}

#[tokio::test]
async fn a_user_without_access_sees_the_denial_and_can_switch_accounts() {
    let t = app().await;
    let account = Account::Outsider.username().unwrap().to_owned();
    scenario("denied", &t, &[("--expect-account", account), expect_app()]).await;
}

#[tokio::test]
async fn a_denial_after_a_redirect_is_rendered_by_the_server() {
    let t = app().await;
    let account = Account::Outsider.username().unwrap().to_owned();
    scenario("denied-redirect", &t, &[("--expect-account", account)]).await;
}

#[tokio::test]
async fn when_plex_is_down_the_page_says_so_instead_of_denying() {
    let t = app().await;
    t.plex.set_fault(Fault::ServerError(503));
    scenario(
        "reach-state",
        &t,
        &[("--expect-state", "unavailable".to_owned())],
    )
    .await;
}

#[tokio::test]
async fn every_state_renders_accessibly_on_desktop_and_phone() {
    let t = app().await;
    let result = scenario("states", &t, &[]).await;
    assert!(
        result["screenshots"]
            .as_array()
            .is_some_and(|s| s.len() >= 8),
        "{result}"
    );
}

#[tokio::test]
async fn accept_language_picks_german() {
    let t = app().await;
    let result = scenario("inspect", &t, &[("--locale", "de-DE".to_owned())]).await;
    let text = result.to_string();
    assert!(
        text.contains("Mit Plex anmelden") || text.contains("Anmelden"),
        "{text}"
    );
}

#[tokio::test]
async fn a_theme_directory_overrides_one_css_and_one_html_file() {
    let theme = temp_dir("theme");
    std::fs::write(
        theme.join("custom.css"),
        "body { background-color: rgb(1, 2, 3) !important; }\n",
    )
    .unwrap();
    let html = std::fs::read_to_string(repo().join("assets/login.html"))
        .unwrap()
        .replace("{{t:ready_title}}", "Welcome to the Lab");
    std::fs::write(theme.join("login.html"), html).unwrap();
    let dir = theme.clone();
    let t = spawn_app_with(move |c| {
        c["theme"] = json!({ "dir": dir, "accent": "#123456", "title": "Lab Sign-in" });
    })
    .await;
    let result = scenario("inspect", &t, &[]).await;
    let text = result.to_string();
    assert!(
        text.contains("Welcome to the Lab"),
        "the HTML override shows: {text}"
    );
    assert!(
        text.contains("rgb(1, 2, 3)"),
        "the CSS override applies: {text}"
    );
    assert!(
        text.contains("Lab Sign-in"),
        "theme.title fills the page: {text}"
    );
}

#[tokio::test]
async fn preview_serves_every_state_with_sample_data_and_no_plex() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_plex-oidc"))
        .args(["preview", "--config"])
        .arg(repo().join("examples/config.json"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("plex-oidc preview starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if client.get(format!("{base}/ready")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "preview answers");
    let t = app().await;
    scenario(
        "preview",
        &t,
        &[("--preview-url", format!("{base}/{{state}}"))],
    )
    .await;
    let signed_out = client
        .get(format!("{base}/signed-out"))
        .send()
        .await
        .unwrap();
    assert!(
        signed_out
            .text()
            .await
            .unwrap()
            .contains("data-state=\"signed-out\"")
    );
    let _ = child.kill().await;
}
