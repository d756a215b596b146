//! A browser's cookie jar over the test HTTP client: enough to carry the login binding and the session
//! cookie across requests, as a real browser would.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::app::{TestApp, attribute, pin_code_of};
use super::fake_plex::{Account, FakePlex};

/// A server the browser can talk to: in-process ([`TestApp`]) or a spawned binary.
pub trait Target {
    fn url(&self, path: &str) -> String;
    fn http(&self) -> &reqwest::Client;
    fn plex(&self) -> &FakePlex;
}

impl Target for TestApp {
    fn url(&self, path: &str) -> String {
        TestApp::url(self, path)
    }
    fn http(&self) -> &reqwest::Client {
        &self.http
    }
    fn plex(&self) -> &FakePlex {
        &self.plex
    }
}

pub struct Browser<'a> {
    pub t: &'a dyn Target,
    cookies: Mutex<HashMap<String, String>>,
}

/// What the browser saw for one navigation.
#[derive(Debug)]
pub struct Visit {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Visit {
    /// The page state, for a page.
    pub fn state(&self) -> Option<String> {
        attribute(&self.body, "data-state")
    }
}

impl<'a> Browser<'a> {
    pub fn new(t: &'a dyn Target) -> Browser<'a> {
        Browser {
            t,
            cookies: Mutex::new(HashMap::new()),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&self, res: &reqwest::Response) {
        let mut jar = self.cookies.lock().unwrap();
        for v in res.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || v.contains("Max-Age=0") {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub fn cookie(&self, name_part: &str) -> Option<String> {
        self.cookies
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| k.contains(name_part))
            .map(|(_, v)| v.clone())
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies
            .lock()
            .unwrap()
            .insert(name.to_owned(), value.to_owned());
    }

    pub async fn get(&self, url: &str) -> Visit {
        let res = self
            .t
            .http()
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep_cookies(&res);
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        Visit {
            status,
            location,
            body: res.text().await.unwrap(),
        }
    }

    pub async fn api(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .t
            .http()
            .post(self.t.url(path))
            .header("cookie", self.cookie_header())
            .json(&body)
            .send()
            .await
            .unwrap();
        self.keep_cookies(&res);
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    /// The sign-in page dance as `account`, from an authorize URL to the final redirect.
    pub async fn sign_in(&self, account: Account, authorize_url: &str) -> Visit {
        let page = self.get(authorize_url).await;
        assert_eq!(page.status, 200, "the page is shown: {:?}", page.location);
        let login = attribute(&page.body, "data-login").expect("login id");
        let (status, started) = self.api("/login/start", json!({ "login": login })).await;
        assert_eq!(status, 200, "{started}");
        let pin = pin_code_of(started["popup_url"].as_str().unwrap());
        assert!(self.t.plex().approve(&pin, account));
        let (_, polled) = self.api("/login/poll", json!({ "login": login })).await;
        assert_eq!(polled["state"], "approved", "{polled}");
        self.get(&self.t.url(&format!("/login/continue?login={login}")))
            .await
    }
}
