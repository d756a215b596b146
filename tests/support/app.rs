//! Starts the real server on loopback, pointed at a fake plex.tv, and walks logins over HTTP.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use plex_oidc::clock::OffsetClock;
use plex_oidc::config::Config;
use plex_oidc::random::SystemRandom;
use plex_oidc::startup::{Application, Dependencies};
use serde_json::{Value, json};

use super::fake_plex::{Account, FakePlex, SERVER_ID};

pub const GRAFANA_SECRET: &str = "grafana-secret-0123456789abcdefghijklmnop";
pub const GRAFANA_REDIRECT: &str = "https://grafana.example.com/login/generic_oauth";
pub const MOBILE_REDIRECT: &str = "app.immich:///oauth-callback";
pub const STRICT_SECRET: &str = "strict-secret-0123456789abcdefghijklmnopq";
pub const STRICT_REDIRECT: &str = "https://strict.example.com/cb";

pub struct TestApp {
    pub app: Application,
    pub base: String,
    pub plex: FakePlex,
    pub clock: Arc<OffsetClock>,
    pub http: reqwest::Client,
    pub state_dir: PathBuf,
    pub config: Value,
}

/// A unique scratch directory under the system temp dir.
pub fn temp_dir(label: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "plex-oidc-test-{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The injected clock, and back-channel retries fast enough for tests.
fn test_dependencies(clock: Arc<OffsetClock>) -> Dependencies {
    Dependencies {
        clock,
        random: Arc::new(SystemRandom),
        discard_corrupt_store: false,
        backchannel_backoff: std::time::Duration::from_millis(50),
    }
}

pub fn base_config(port: u16, plex: &FakePlex, state_dir: &std::path::Path) -> Value {
    json!({
        "issuer": format!("http://127.0.0.1:{port}"),
        "listen": format!("127.0.0.1:{port}"),
        "state_dir": state_dir,
        "plex": {
            "server_id": SERVER_ID,
            "server_name": "Test Server",
            "product": "plex-oidc tests",
            "api_url": plex.base_url(),
            "app_url": plex.base_url(),
            "request_timeout": "2s"
        },
        "clients": [
            { "client_id": "grafana", "name": "Grafana", "client_secret": GRAFANA_SECRET,
              "redirect_uris": [GRAFANA_REDIRECT, "https://grafana.example.com/other"] },
            { "client_id": "mobile", "public": true, "redirect_uris": [MOBILE_REDIRECT] },
            { "client_id": "strict", "client_secret": STRICT_SECRET, "require_pkce": true,
              "redirect_uris": [STRICT_REDIRECT] }
        ]
    })
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server whose config `adjust` may change (after the defaults above are filled in).
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Value)) -> TestApp {
    let plex = FakePlex::start().await;
    let state_dir = temp_dir("state");
    spawn_app_on(plex, state_dir, adjust).await
}

pub async fn spawn_app_on(
    plex: FakePlex,
    state_dir: PathBuf,
    adjust: impl FnOnce(&mut Value),
) -> TestApp {
    let port = free_port();
    let mut config = base_config(port, &plex, &state_dir);
    adjust(&mut config);
    let parsed = Config::from_json(&config.to_string(), &state_dir, None)
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    let clock = Arc::new(OffsetClock::default());
    let app = Application::build(parsed, test_dependencies(clock.clone()))
        .await
        .expect("server starts");
    let base = format!("http://{}", app.local_addr());
    TestApp {
        app,
        base,
        plex,
        clock,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        state_dir,
        config,
    }
}

/// A browser's view of one login: the page's id and the cookie that binds it.
#[derive(Debug, Clone)]
pub struct PageLogin {
    pub login_id: String,
    pub cookie: String,
}

impl TestApp {
    /// Stops the server and starts a new process-equivalent on the same port, config and state_dir.
    pub async fn restart(self) -> TestApp {
        self.app.stop();
        self.app.wait().await;
        let parsed = Config::from_json(&self.config.to_string(), &self.state_dir, None).unwrap();
        let clock = self.clock.clone();
        let app = Application::build(parsed, test_dependencies(clock.clone()))
            .await
            .expect("server restarts");
        TestApp {
            app,
            base: self.base,
            plex: self.plex,
            clock,
            http: self.http,
            state_dir: self.state_dir,
            config: self.config,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Grafana's code exchange (Basic auth); asserts 200 and returns the token response.
    pub async fn grafana_tokens(&self, code: &str) -> Value {
        let res = self
            .http
            .post(self.url("/token"))
            .basic_auth("grafana", Some(GRAFANA_SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", GRAFANA_REDIRECT),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "token exchange");
        res.json().await.unwrap()
    }

    /// Userinfo with a bearer token; asserts 200 and returns the claims.
    pub async fn userinfo(&self, access_token: &str) -> Value {
        let res = self
            .http
            .get(self.url("/userinfo"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "userinfo");
        res.json().await.unwrap()
    }

    pub fn authorize_url(&self, query: &str) -> String {
        format!("{}/authorize?{query}", self.base)
    }

    /// GET /authorize as a browser: returns the page's login id and the binding cookie.
    pub async fn open_page(&self, authorize_url: &str) -> PageLogin {
        let res = self.http.get(authorize_url).send().await.unwrap();
        assert_eq!(res.status(), 200, "the landing page is served");
        let cookie = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.contains("plex-oidc-login="))
            .and_then(|v| v.split(';').next())
            .expect("binding cookie set")
            .to_owned();
        let html = res.text().await.unwrap();
        let login_id = attribute(&html, "data-login").expect("login id on the page");
        PageLogin { login_id, cookie }
    }

    pub async fn api(&self, path: &str, page: &PageLogin, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(self.url(path))
            .header("cookie", &page.cookie)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn start(&self, page: &PageLogin) -> (u16, Value) {
        self.api("/login/start", page, json!({ "login": page.login_id }))
            .await
    }

    pub async fn poll(&self, page: &PageLogin) -> (u16, Value) {
        self.api("/login/poll", page, json!({ "login": page.login_id }))
            .await
    }

    /// GET the continue URL as the browser would; returns status and Location (or the body).
    pub async fn finish(&self, page: &PageLogin) -> (u16, String) {
        let res = self
            .http
            .get(self.url(&format!("/login/continue?login={}", page.login_id)))
            .header("cookie", &page.cookie)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        match res.headers().get("location") {
            Some(l) => (status, l.to_str().unwrap().to_owned()),
            None => (status, res.text().await.unwrap()),
        }
    }

    /// The whole page dance for `account`: start, approve at the fake Plex, poll, continue. Returns the
    /// final response of /login/continue (a redirect to the client on success).
    pub async fn login_as(&self, account: Account, authorize_url: &str) -> (u16, String) {
        let page = self.open_page(authorize_url).await;
        let (status, started) = self.start(&page).await;
        assert_eq!(status, 200, "start: {started}");
        let pin_code = pin_code_of(started["popup_url"].as_str().unwrap());
        assert!(
            self.plex.approve(&pin_code, account),
            "fake Plex knows the PIN"
        );
        let (_, polled) = self.poll(&page).await;
        match polled["state"].as_str() {
            Some("approved") => self.finish(&page).await,
            Some(other) => (200, format!("state:{other}:{polled}")),
            None => panic!("poll answered {polled}"),
        }
    }
}

/// The `code=` of a Plex auth-app URL (it sits in the fragment).
pub fn pin_code_of(auth_url: &str) -> String {
    let fragment = auth_url.split_once("#?").expect("auth app fragment").1;
    url::form_urlencoded::parse(fragment.as_bytes())
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code in the auth URL")
}

/// Value of the first `name="..."` attribute in `html`.
pub fn attribute(html: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let start = html.find(&needle)? + needle.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// Query parameter `name` of a redirect URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
