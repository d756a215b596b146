//! The real binary: SIGHUP reloads the config atomically (a broken one is refused and the old keeps
//! serving), SIGTERM drains and exits, and a restart loses no acknowledged token or session.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::oidc_flow::urlencode;
use crate::support::app::{GRAFANA_REDIRECT, GRAFANA_SECRET, base_config, query_param, temp_dir};
use crate::support::browser::{Browser, Target};
use crate::support::fake_plex::{Account, FakePlex};

struct Process {
    child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
    plex: FakePlex,
    config_path: PathBuf,
    state_dir: PathBuf,
    config: Value,
}

impl Target for Process {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
    fn http(&self) -> &reqwest::Client {
        &self.http
    }
    fn plex(&self) -> &FakePlex {
        &self.plex
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(plex: FakePlex, state_dir: PathBuf, config: Value, config_path: PathBuf) -> Process {
    std::fs::write(&config_path, config.to_string()).unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_plex-oidc"))
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let base = config["issuer"].as_str().unwrap().to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(res) = http.get(format!("{base}/readyz")).send().await
            && res.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "the server got ready");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Process {
        child,
        base,
        http,
        plex,
        config_path,
        state_dir,
        config,
    }
}

async fn spawn() -> Process {
    let plex = FakePlex::start().await;
    let state_dir = temp_dir("lifecycle");
    let config = base_config(free_port(), &plex, &state_dir);
    let config_path = state_dir.join("config.json");
    start(plex, state_dir, config, config_path).await
}

fn signal(p: &Process, name: &str) {
    let pid = p.child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

fn authorize(p: &Process, client: &str, redirect: &str) -> String {
    p.url(&format!(
        "/authorize?client_id={client}&redirect_uri={}&response_type=code&scope=openid+offline_access",
        urlencode(redirect)
    ))
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status(p: &Process, url: &str) -> u16 {
    p.http.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn sighup_swaps_in_a_new_config_and_refuses_a_broken_one() {
    let mut p = spawn().await;
    let b = Browser::new(&p);
    // A sign-in that is halfway when the reload happens must still finish.
    let page = b.get(&authorize(&p, "grafana", GRAFANA_REDIRECT)).await;
    assert_eq!(page.status, 200);
    let newcomer = "https://new.example.com/cb";
    assert_eq!(status(&p, &authorize(&p, "newcomer", newcomer)).await, 400);

    // Broken: it would drop grafana's redirect URI if it were half-applied.
    let mut broken = p.config.clone();
    broken["clients"][0]["redirect_uris"] = json!(["javascript:alert(1)"]);
    std::fs::write(&p.config_path, broken.to_string()).unwrap();
    signal(&p, "HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = p.child.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-0", &pid])
            .status()
            .unwrap()
            .success(),
        "still running"
    );
    assert_eq!(
        status(&p, &authorize(&p, "grafana", GRAFANA_REDIRECT)).await,
        200,
        "a broken config is refused, the old one keeps serving"
    );

    let mut config = p.config.clone();
    config["clients"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "client_id": "newcomer", "client_secret": "newcomer-secret-0123456789abcdefghij", "redirect_uris": [newcomer] }));
    std::fs::write(&p.config_path, config.to_string()).unwrap();
    signal(&p, "HUP");
    let url = authorize(&p, "newcomer", newcomer);
    wait_until("the new client is known after SIGHUP", async || {
        status(&p, &url).await == 200
    })
    .await;

    let login = crate::support::app::attribute(&page.body, "data-login").unwrap();
    let (code, started) = b.api("/login/start", json!({ "login": login })).await;
    assert_eq!(
        code, 200,
        "the pending sign-in survived the reload: {started}"
    );
    let pin = crate::support::app::pin_code_of(started["popup_url"].as_str().unwrap());
    assert!(p.plex.approve(&pin, Account::Friend));
    let (_, polled) = b.api("/login/poll", json!({ "login": login })).await;
    assert_eq!(polled["state"], "approved");
    let done = b
        .get(&p.url(&format!("/login/continue?login={login}")))
        .await;
    assert_eq!(done.status, 303);
    assert!(done.location.unwrap().starts_with(GRAFANA_REDIRECT));
    let _ = p.child.kill().await;
}

async fn refresh(p: &Process, token: &str) -> (u16, Value) {
    let res = p
        .http
        .post(p.url("/token"))
        .basic_auth("grafana", Some(GRAFANA_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn sigterm_drains_and_a_restart_keeps_every_acknowledged_token_and_session() {
    let mut p = spawn().await;
    let b = Browser::new(&p);
    let visit = b
        .sign_in(Account::Friend, &authorize(&p, "grafana", GRAFANA_REDIRECT))
        .await;
    let code = query_param(visit.location.as_deref().unwrap(), "code").unwrap();
    let tokens: Value = p
        .http
        .post(p.url("/token"))
        .basic_auth("grafana", Some(GRAFANA_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", GRAFANA_REDIRECT),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Rotate under load: every rotation answered 200 must be the one that survives.
    let mut refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..20 {
        let (status, body) = refresh(&p, &refresh_token).await;
        assert_eq!(status, 200, "{body}");
        refresh_token = body["refresh_token"].as_str().unwrap().to_owned();
    }
    let session = b.cookie("plex-oidc-session").unwrap();

    // Requests in flight while SIGTERM arrives still get answers.
    let load = {
        let http = p.http.clone();
        let url = p.url("/.well-known/openid-configuration");
        tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..200 {
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => panic!("a draining server answered {}", r.status()),
                    Err(_) => break,
                }
            }
            ok
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    signal(&p, "TERM");
    let exit = tokio::time::timeout(Duration::from_secs(15), p.child.wait())
        .await
        .expect("exits within the drain deadline")
        .unwrap();
    assert!(exit.success(), "clean exit: {exit}");
    let answered = load.await.unwrap();
    assert!(answered > 0);

    let Process {
        plex,
        state_dir,
        config,
        config_path,
        ..
    } = p;
    let p = start(plex, state_dir, config, config_path).await;
    let (status, body) = refresh(&p, &refresh_token).await;
    assert_eq!(
        status, 200,
        "the last acknowledged refresh token works after a restart: {body}"
    );
    let b = Browser::new(&p);
    b.set_cookie("plex-oidc-session", &session);
    let again = b.get(&authorize(&p, "grafana", GRAFANA_REDIRECT)).await;
    assert_eq!(again.status, 303, "the session survived");
    assert!(again.location.unwrap().contains("code="));
}
