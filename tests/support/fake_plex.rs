//! A faithful fake of plex.tv (API and auth app) on loopback, following `PLEX_API.md` §2–§8.
//!
//! Self-contained on purpose: benches and examples include this file with
//! `#[path = "../tests/support/fake_plex.rs"] mod fake_plex;`, so it imports nothing from the crate or
//! its siblings.
//!
//! What it reproduces: JSON with `Accept: application/json` (or a `.json` suffix), XML otherwise;
//! `X-Plex-*` values as headers, query parameters or form fields; 201 on PIN creation; 400/1000 without
//! a client identifier; 404/1020 for another client identifier or after expiry; 401/1001 for unknown
//! tokens; plex.tv's error envelope and headers; an auth page that sends
//! `Cross-Origin-Opener-Policy: same-origin`. Test switches inject faults and latency.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use salvo::conn::tcp::TcpAcceptor;
use salvo::http::{Method, StatusCode};
use salvo::server::ServerHandle;
use salvo::{Depot, FlowCtrl, Handler, Request, Response, Router, Server};
use serde_json::{Value, json};

/// The operator's server (`machineIdentifier`) that tests configure as `plex.server_id`.
pub const SERVER_ID: &str = "5a1f0e8c3b2d4e6f7a8b9c0d1e2f3a4b5c6d7e8f";
/// A server the operator does not own; only the outsider can use it.
pub const OTHER_SERVER_ID: &str = "9d8c7b6a5f4e3d2c1b0a99887766554433221100";
pub const SERVER_NAME: &str = "Living Room";

const STRONG_PIN_LIFETIME: Duration = Duration::from_secs(1800);
const WEAK_PIN_LIFETIME: Duration = Duration::from_secs(900);
const FIRST_PIN_ID: i64 = 1_272_322_473;

/// The fixtures: one account per way of (not) reaching the operator's server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Account {
    /// Owns the server (and is the Plex Home admin).
    Owner,
    /// The server is shared with them (accepted invite).
    Friend,
    /// A member of the owner's Plex Home.
    HomeMember,
    /// A managed Home user: no username, no email, unconfirmed.
    Managed,
    /// A Plex user without access: owns another server and has a client that carries our server's id.
    Outsider,
}

impl Account {
    pub const ALL: [Account; 5] = [
        Account::Owner,
        Account::Friend,
        Account::HomeMember,
        Account::Managed,
        Account::Outsider,
    ];

    pub fn id(self) -> i64 {
        match self {
            Account::Owner => 13_692_262,
            Account::Friend => 24_810_035,
            Account::HomeMember => 31_415_926,
            Account::Managed => 27_182_818,
            Account::Outsider => 66_600_666,
        }
    }

    pub fn username(self) -> Option<&'static str> {
        match self {
            Account::Owner => Some("alice"),
            Account::Friend => Some("bob"),
            Account::HomeMember => Some("carol"),
            Account::Managed => None,
            Account::Outsider => Some("mallory"),
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Account::Managed => "Kids",
            other => other.username().unwrap_or("unknown"),
        }
    }

    pub fn email(self) -> Option<&'static str> {
        match self {
            Account::Owner => Some("alice@example.com"),
            Account::Friend => Some("bob@example.com"),
            Account::HomeMember => Some("carol@example.org"),
            Account::Managed => None,
            Account::Outsider => Some("mallory@example.net"),
        }
    }

    pub fn uuid(self) -> &'static str {
        match self {
            Account::Owner => "dae343c1f45beb4f",
            Account::Friend => "b0b5e1f2a3c4d5e6",
            Account::HomeMember => "ca401e55b7d9f1a3",
            Account::Managed => "4b1d5c0ffee12345",
            Account::Outsider => "ba5eba11deadbeef",
        }
    }

    /// Opaque, like plex.tv's: classic 20-character tokens and one long JWT-shaped one, so nothing
    /// may assume a format.
    pub fn token(self) -> &'static str {
        match self {
            Account::Owner => "CxoUzBTSV5hsxjTpFKaf",
            Account::Friend => "bobTokenQw3rtyUiop12",
            Account::HomeMember => {
                "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyIjoiY2Fyb2wiLCJob21lIjp0cnVlLCJleHAiOjE5OTk5OTk5OTl9.c2lnbmF0dXJlLW9mLXRoZS1ob21lLW1lbWJlci10b2tlbi1mb3ItdGhlLWZha2U"
            }
            Account::Managed => "kidsManagedTok3n0000",
            Account::Outsider => "ma11oryOutsid3rT0ken",
        }
    }

    /// The `friendlyName` plex.tv reports; often empty.
    pub fn friendly_name(self) -> &'static str {
        match self {
            Account::Owner => "Alice Owner",
            Account::HomeMember => "Carol",
            _ => "",
        }
    }

    /// What the auth page's buttons (`approve-<slug>`) and `/__fake/approve` call the account.
    pub fn slug(self) -> &'static str {
        match self {
            Account::Owner => "owner",
            Account::Friend => "friend",
            Account::HomeMember => "home",
            Account::Managed => "managed",
            Account::Outsider => "outsider",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Account> {
        Account::ALL.into_iter().find(|a| a.slug() == slug)
    }

    pub fn from_token(token: &str) -> Option<Account> {
        Account::ALL.into_iter().find(|a| a.token() == token)
    }

    /// Whether the fixture (with its share in place) may use the operator's server.
    pub fn has_access(self) -> bool {
        !matches!(self, Account::Outsider)
    }

    fn thumb(self) -> String {
        format!("https://plex.tv/users/{}/avatar?c=1556281940", self.uuid())
    }
}

/// A misbehaviour of plex.tv, applied to every `/api/v2/*` route until switched back to `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// 429, code 1003.
    RateLimited,
    /// This status with a small HTML body, as a proxy in front of plex.tv would send.
    ServerError(u16),
    /// 200 with JSON cut off halfway.
    MalformedJson,
    /// The route's normal answer, but as XML although JSON was asked for.
    XmlInsteadOfJson,
    /// The connection is dropped without any response.
    ResetConnection,
    /// 302 to this URL.
    RedirectTo(String),
}

/// The `/api/v2` routes plex-oidc uses, for counting calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    PinCreate,
    PinCheck,
    User,
    Resources,
}

pub struct FakePlex {
    shared: Arc<Shared>,
    base_url: String,
    addr: SocketAddr,
    server: ServerHandle,
}

impl FakePlex {
    /// Binds 127.0.0.1 on a free port and serves on the current tokio runtime.
    pub async fn start() -> FakePlex {
        FakePlex::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(addr: SocketAddr) -> FakePlex {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("fake plex.tv cannot bind {addr}: {e}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has a local address");
        let acceptor =
            TcpAcceptor::try_from(listener).expect("a bound listener becomes an acceptor");
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            base_url: base_url.clone(),
            state: Mutex::new(State::default()),
        });
        let handler = FakeHandler {
            shared: shared.clone(),
        };
        let router = Router::new()
            .goal(handler.clone())
            .push(Router::with_path("{**rest}").goal(handler));
        let server = Server::new(acceptor);
        let handle = server.handle();
        tokio::spawn(async move {
            if let Err(e) = server.try_serve(router).await {
                eprintln!("fake plex.tv stopped: {e}");
            }
        });
        FakePlex {
            shared,
            base_url,
            addr,
            server: handle,
        }
    }

    /// `http://127.0.0.1:PORT`, to be used as both `api_url` and `app_url`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the user does in the auth app: approve the PIN with this code as `account`. False when
    /// the code is unknown or expired.
    pub fn approve(&self, pin_code: &str, account: Account) -> bool {
        self.shared.approve(pin_code, None, account).is_some()
    }

    /// Approves the newest PIN created.
    pub fn approve_latest(&self, account: Account) -> bool {
        let mut state = self.shared.lock();
        let Some(id) = state.latest_pin else {
            return false;
        };
        match state.pins.get_mut(&id) {
            Some(pin) if pin.is_alive() => {
                pin.approved_by = Some(account);
                true
            }
            _ => false,
        }
    }

    /// The code of the newest PIN created, as the auth app would receive it.
    pub fn latest_pin_code(&self) -> Option<String> {
        let state = self.shared.lock();
        let id = state.latest_pin?;
        state.pins.get(&id).map(|pin| pin.code.clone())
    }

    /// The `X-Plex-Product` the newest PIN was created with (what Plex shows on its consent screen).
    pub fn latest_pin_product(&self) -> Option<String> {
        let state = self.shared.lock();
        let id = state.latest_pin?;
        state.pins.get(&id).and_then(|pin| pin.product.clone())
    }

    pub fn set_fault(&self, fault: Fault) {
        self.shared.lock().fault = fault;
    }

    /// Added before every `/api/v2/*` response (faults included).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// `Retry-After` seconds sent with `Fault::RateLimited`; plex.tv's own behaviour is unknown, so by
    /// default none is sent.
    pub fn set_rate_limit_retry_after(&self, retry_after: Option<Duration>) {
        self.shared.lock().retry_after = retry_after;
    }

    /// The owner revokes the account's access: the operator's server leaves its resources.
    pub fn remove_share(&self, account: Account) {
        self.shared.lock().removed_shares.insert(account);
    }

    pub fn restore_share(&self, account: Account) {
        self.shared.lock().removed_shares.remove(&account);
    }

    /// Every PIN expires now; checks answer 404/1020 from here on.
    pub fn expire_all_pins(&self) {
        for pin in self.shared.lock().pins.values_mut() {
            pin.expired = true;
        }
    }

    /// Requests received for `call`, whether answered, faulted or refused.
    pub fn calls(&self, call: Call) -> usize {
        self.shared.lock().calls.get(&call).copied().unwrap_or(0)
    }

    pub fn reset_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// Distinct `X-Plex-Client-Identifier` values seen on `/api/v2/*`, in order of first appearance.
    pub fn client_identifiers_seen(&self) -> Vec<String> {
        self.shared.lock().client_ids.clone()
    }

    /// Requests that carried `X-Plex-Token` as a query parameter (where it would end up in logs).
    pub fn tokens_seen_in_queries(&self) -> usize {
        self.shared.lock().tokens_in_queries
    }
}

impl Drop for FakePlex {
    fn drop(&mut self) {
        self.server.stop_forceful();
    }
}

struct Shared {
    base_url: String,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Approves a live PIN by code (and client identifier, when the auth page passes one).
    fn approve(&self, code: &str, client_id: Option<&str>, account: Account) -> Option<i64> {
        let mut state = self.lock();
        let pin = state.pins.values_mut().find(|pin| {
            pin.code == code && pin.is_alive() && client_id.is_none_or(|id| id == pin.client_id)
        })?;
        pin.approved_by = Some(account);
        Some(pin.id)
    }
}

struct State {
    pins: HashMap<i64, PinRecord>,
    latest_pin: Option<i64>,
    next_pin_id: i64,
    fault: Fault,
    latency: Duration,
    retry_after: Option<Duration>,
    removed_shares: HashSet<Account>,
    calls: HashMap<Call, usize>,
    client_ids: Vec<String>,
    tokens_in_queries: usize,
}

impl Default for State {
    fn default() -> Self {
        State {
            pins: HashMap::new(),
            latest_pin: None,
            next_pin_id: FIRST_PIN_ID,
            fault: Fault::None,
            latency: Duration::ZERO,
            retry_after: None,
            removed_shares: HashSet::new(),
            calls: HashMap::new(),
            client_ids: Vec::new(),
            tokens_in_queries: 0,
        }
    }
}

struct PinRecord {
    id: i64,
    code: String,
    client_id: String,
    product: Option<String>,
    created: Instant,
    created_at: SystemTime,
    lifetime: Duration,
    approved_by: Option<Account>,
    expired: bool,
}

impl PinRecord {
    fn is_alive(&self) -> bool {
        !self.expired && self.created.elapsed() < self.lifetime
    }

    fn to_json(&self, base_url: &str) -> Value {
        let remaining = self.lifetime.saturating_sub(self.created.elapsed());
        json!({
            "id": self.id,
            "code": self.code,
            "product": self.product,
            "trusted": false,
            "qr": format!("{base_url}/api/v2/pins/qr/{}", self.code),
            "clientIdentifier": self.client_id,
            "location": {
                "code": "US",
                "european_union_member": false,
                "continent_code": "NA",
                "country": "United States",
                "city": "Austin",
                "time_zone": "America/Chicago",
                "postal_code": "78701",
                "in_privacy_restricted_country": false,
                "in_privacy_restricted_region": false,
                "subdivisions": "Texas",
                "coordinates": "30.2713, -97.7426"
            },
            "expiresIn": remaining.as_secs(),
            "createdAt": rfc3339(self.created_at),
            "expiresAt": rfc3339(self.created_at + self.lifetime),
            "authToken": self.approved_by.map(Account::token),
            "newRegistration": self.approved_by.map(|_| false),
        })
    }
}

#[derive(Clone)]
struct FakeHandler {
    shared: Arc<Shared>,
}

#[salvo::async_trait]
impl Handler for FakeHandler {
    async fn handle(
        &self,
        req: &mut Request,
        _depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        res.add_header("x-request-id", random_hex(16), true).ok();
        res.add_header("vary", "Origin", true).ok();
        let path = req.uri().path().to_owned();
        if path == "/api/v2" || path.starts_with("/api/v2/") {
            self.api(req, res, ctrl, &path).await;
        } else if (path == "/auth" || path == "/auth/") && req.method() == Method::GET {
            auth_page(res);
        } else if path == "/__fake/approve" && req.method() == Method::POST {
            self.approve_from_page(req, res).await;
        } else {
            route_not_found(res);
        }
    }
}

enum Route {
    PinCreate,
    PinCheck(String),
    User,
    Resources,
    Unknown,
}

impl FakeHandler {
    async fn api(&self, req: &mut Request, res: &mut Response, ctrl: &mut FlowCtrl, path: &str) {
        let (path, json_suffix) = match path.strip_suffix(".json") {
            Some(stripped) => (stripped, true),
            None => (path, false),
        };
        let accepts_json = req
            .headers()
            .get_all("accept")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("application/json"));
        let mut json = json_suffix || accepts_json;

        let route = match (req.method().clone(), path) {
            (Method::POST, "/api/v2/pins") => Route::PinCreate,
            (Method::GET, "/api/v2/user") => Route::User,
            (Method::GET, "/api/v2/resources") => Route::Resources,
            (Method::GET, other) => match other.strip_prefix("/api/v2/pins/") {
                Some(id) if !id.is_empty() && !id.contains('/') => Route::PinCheck(id.to_owned()),
                _ => Route::Unknown,
            },
            _ => Route::Unknown,
        };

        let client_id = plex_value(req, "X-Plex-Client-Identifier").await;
        let header_token = header(req, "X-Plex-Token");
        let query_token = req.query::<String>("X-Plex-Token");
        let (fault, latency, retry_after) = {
            let mut state = self.shared.lock();
            let call = match &route {
                Route::PinCreate => Some(Call::PinCreate),
                Route::PinCheck(_) => Some(Call::PinCheck),
                Route::User => Some(Call::User),
                Route::Resources => Some(Call::Resources),
                Route::Unknown => None,
            };
            if let Some(call) = call {
                *state.calls.entry(call).or_default() += 1;
            }
            if let Some(id) = &client_id
                && !state.client_ids.contains(id)
            {
                state.client_ids.push(id.clone());
            }
            if query_token.is_some() {
                state.tokens_in_queries += 1;
            }
            (state.fault.clone(), state.latency, state.retry_after)
        };

        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match fault {
            Fault::None => {}
            Fault::RateLimited => {
                if let Some(after) = retry_after {
                    res.add_header("retry-after", after.as_secs().to_string(), true)
                        .ok();
                }
                return plex_error(res, 429, 1003, "API rate limit exceeded", json);
            }
            Fault::ServerError(status) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let body = format!(
                    "<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center></body></html>\n"
                );
                return send(res, status, "text/html; charset=utf-8", body);
            }
            Fault::MalformedJson => {
                let body = r#"{"id":1272322473,"code":"3patfx1a78ukcbr7x0n9bl26t","product":"plex-oidc","trusted":fal"#;
                return send(res, StatusCode::OK, JSON_TYPE, body.to_owned());
            }
            Fault::XmlInsteadOfJson => json = false,
            Fault::ResetConnection => {
                ctrl.conn().abort();
                // Never produce a response: the connection task drops this future when it aborts.
                std::future::pending::<()>().await;
                return;
            }
            Fault::RedirectTo(location) => {
                res.add_header("location", location, true).ok();
                return send(
                    res,
                    StatusCode::FOUND,
                    "text/plain; charset=utf-8",
                    String::new(),
                );
            }
        }

        let token = header_token.or(query_token);
        match route {
            Route::Unknown => route_not_found(res),
            Route::PinCreate => {
                let Some(client_id) = client_id else {
                    return missing_client_id(res, json);
                };
                let strong = matches!(
                    req.form_or_query::<String>("strong").await.as_deref(),
                    Some("true" | "1")
                );
                let product = plex_value(req, "X-Plex-Product").await;
                let body = {
                    let mut state = self.shared.lock();
                    let id = state.next_pin_id;
                    state.next_pin_id += 1;
                    let pin = PinRecord {
                        id,
                        code: if strong {
                            random_code(25, false)
                        } else {
                            random_code(4, true)
                        },
                        client_id,
                        product,
                        created: Instant::now(),
                        created_at: SystemTime::now(),
                        lifetime: if strong {
                            STRONG_PIN_LIFETIME
                        } else {
                            WEAK_PIN_LIFETIME
                        },
                        approved_by: None,
                        expired: false,
                    };
                    let body = pin.to_json(&self.shared.base_url);
                    state.pins.insert(id, pin);
                    state.latest_pin = Some(id);
                    body
                };
                render(res, StatusCode::CREATED, "pin", &body, json);
            }
            Route::PinCheck(id) => {
                let Some(client_id) = client_id else {
                    return missing_client_id(res, json);
                };
                let body = {
                    let state = self.shared.lock();
                    id.parse::<i64>()
                        .ok()
                        .and_then(|id| state.pins.get(&id))
                        .filter(|pin| pin.is_alive() && pin.client_id == client_id)
                        .map(|pin| pin.to_json(&self.shared.base_url))
                };
                match body {
                    Some(body) => render(res, StatusCode::OK, "pin", &body, json),
                    None => plex_error(res, 404, 1020, "Code not found or expired", json),
                }
            }
            Route::User | Route::Resources if client_id.is_none() => missing_client_id(res, json),
            Route::User => match token.as_deref().and_then(Account::from_token) {
                Some(account) => render(res, StatusCode::OK, "user", &user_json(account), json),
                None => unauthenticated(res, json),
            },
            Route::Resources => match token.as_deref().and_then(Account::from_token) {
                Some(account) => {
                    let removed = self.shared.lock().removed_shares.contains(&account);
                    let body = resources_json(account, removed);
                    render(res, StatusCode::OK, "resources", &body, json);
                }
                None => unauthenticated(res, json),
            },
        }
    }

    async fn approve_from_page(&self, req: &mut Request, res: &mut Response) {
        #[derive(serde::Deserialize)]
        struct Approval {
            code: String,
            account: String,
            #[serde(default, rename = "clientID")]
            client_id: Option<String>,
        }
        let approval = match req.parse_json_with_max_size::<Approval>(64 * 1024).await {
            Ok(approval) => approval,
            Err(_) => return plex_error(res, 400, 1000, "Expected {code, account}", true),
        };
        let Some(account) = Account::from_slug(&approval.account) else {
            return plex_error(res, 400, 1000, "Unknown account", true);
        };
        let client_id = approval.client_id.as_deref().filter(|id| !id.is_empty());
        match self.shared.approve(&approval.code, client_id, account) {
            Some(id) => send(
                res,
                StatusCode::OK,
                JSON_TYPE,
                json!({"approved": true, "pinId": id}).to_string(),
            ),
            None => plex_error(res, 404, 1020, "Code not found or expired", true),
        }
    }
}

const JSON_TYPE: &str = "application/json; charset=utf-8";
const XML_TYPE: &str = "application/xml; charset=utf-8";

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// `X-Plex-*` values count as header, query parameter or form field, in that order.
async fn plex_value(req: &mut Request, name: &str) -> Option<String> {
    if let Some(value) = header(req, name) {
        return Some(value);
    }
    req.form_or_query::<String>(name)
        .await
        .filter(|v| !v.trim().is_empty())
}

fn send(res: &mut Response, status: StatusCode, content_type: &'static str, body: String) {
    res.status_code(status);
    res.add_header("content-type", content_type, true).ok();
    res.body(body);
}

fn render(res: &mut Response, status: StatusCode, root: &str, body: &Value, json: bool) {
    if json {
        send(res, status, JSON_TYPE, body.to_string());
    } else {
        send(res, status, XML_TYPE, to_xml(root, body));
    }
}

/// `{"errors":[{"code":N,"message":"…","status":N}]}`, or `<errors><error …/></errors>` in XML.
fn plex_error(res: &mut Response, status: u16, code: i64, message: &str, json: bool) {
    let errors = json!([{"code": code, "message": message, "status": status}]);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if json {
        send(
            res,
            status,
            JSON_TYPE,
            json!({ "errors": errors }).to_string(),
        );
    } else {
        send(res, status, XML_TYPE, to_xml("errors", &errors));
    }
}

fn missing_client_id(res: &mut Response, json: bool) {
    plex_error(res, 400, 1000, "X-Plex-Client-Identifier is missing", json);
}

fn unauthenticated(res: &mut Response, json: bool) {
    plex_error(res, 401, 1001, "User could not be authenticated", json);
}

/// plex.tv's answer for a route it does not have, always JSON.
fn route_not_found(res: &mut Response) {
    send(
        res,
        StatusCode::NOT_FOUND,
        JSON_TYPE,
        json!({"status": 404, "error": "Not Found"}).to_string(),
    );
}

fn user_json(account: Account) -> Value {
    let managed = account == Account::Managed;
    json!({
        "id": account.id(),
        "uuid": account.uuid(),
        "username": account.username(),
        "title": account.title(),
        "email": account.email(),
        "friendlyName": account.friendly_name(),
        "locale": null,
        "confirmed": !managed,
        "joinedAt": 1_556_281_940,
        "emailOnlyAuth": false,
        "hasPassword": !managed,
        "protected": managed,
        "thumb": account.thumb(),
        "authToken": account.token(),
        "mailingListStatus": if managed { Value::Null } else { json!("active") },
        "mailingListActive": false,
        "scrobbleTypes": "",
        "country": "US",
        "subscription": {"active": false, "subscribedAt": null, "status": "Inactive", "paymentService": null, "plan": null, "features": []},
        "subscriptionDescription": null,
        "restricted": managed,
        "anonymous": null,
        "home": matches!(account, Account::Owner | Account::HomeMember | Account::Managed),
        "guest": false,
        "homeSize": if account == Account::Outsider { 1 } else { 4 },
        "homeAdmin": account == Account::Owner,
        "maxHomeSize": 15,
        "rememberExpiresAt": 1_767_225_600,
        "profile": {"autoSelectAudio": true, "defaultAudioLanguage": null, "defaultSubtitleLanguage": null, "autoSelectSubtitle": 0, "defaultSubtitleAccessibility": 0, "defaultSubtitleForced": 0},
        "entitlements": [],
        "roles": [],
        "services": [],
        "adsConsent": null,
        "adsConsentSetAt": null,
        "adsConsentReminderAt": null,
        "experimentalFeatures": false,
        "twoFactorEnabled": false,
        "backupCodesCreated": false
    })
}

fn server_entry(
    name: &str,
    client_identifier: &str,
    owned: bool,
    home: bool,
    owner: Option<Account>,
    access_token: Option<&str>,
) -> Value {
    json!({
        "name": name,
        "product": "Plex Media Server",
        "productVersion": "1.41.3.9314-a0bfb8370",
        "platform": "Linux",
        "platformVersion": "6.1.0",
        "device": "PC",
        "clientIdentifier": client_identifier,
        "createdAt": "2019-04-26T12:32:20Z",
        "lastSeenAt": "2026-01-02T08:15:00Z",
        "provides": "server",
        "ownerId": owner.map(Account::id),
        "sourceTitle": owner.map(Account::title),
        "publicAddress": "203.0.113.7",
        "accessToken": access_token,
        "owned": owned,
        "home": home,
        "synced": false,
        "relay": true,
        "presence": true,
        "httpsRequired": false,
        "publicAddressMatches": false,
        "dnsRebindingProtection": false,
        "natLoopbackSupported": false,
        "connections": [
            {"protocol": "https", "address": "10.0.0.5", "port": 32400,
             "uri": "https://10-0-0-5.0123456789abcdef0123456789abcdef.plex.direct:32400",
             "local": true, "relay": false, "IPv6": false},
            {"protocol": "https", "address": "203.0.113.7", "port": 32400,
             "uri": "https://203-0-113-7.0123456789abcdef0123456789abcdef.plex.direct:32400",
             "local": false, "relay": false, "IPv6": false}
        ]
    })
}

fn client_entry(name: &str, product: &str, client_identifier: &str) -> Value {
    json!({
        "name": name,
        "product": product,
        "productVersion": "4.145.1",
        "platform": "Chrome",
        "platformVersion": "131.0",
        "device": "Linux",
        "clientIdentifier": client_identifier,
        "createdAt": "2024-05-01T10:00:00Z",
        "lastSeenAt": "2026-01-02T08:10:00Z",
        "provides": "client,player,pubsub-player",
        "ownerId": null,
        "sourceTitle": null,
        "publicAddress": "198.51.100.23",
        "accessToken": null,
        "owned": true,
        "home": false,
        "synced": false,
        "relay": false,
        "presence": false,
        "httpsRequired": false,
        "publicAddressMatches": true,
        "dnsRebindingProtection": false,
        "natLoopbackSupported": false,
        "connections": []
    })
}

/// The account's `/api/v2/resources`; `removed` drops the operator's server (share revoked).
fn resources_json(account: Account, removed: bool) -> Value {
    let owner = Some(Account::Owner);
    let mut entries = match account {
        Account::Owner => vec![
            server_entry(
                SERVER_NAME,
                SERVER_ID,
                true,
                false,
                None,
                Some("srvTokenOwner0000001"),
            ),
            client_entry("Chrome", "Plex Web", "o1w2n3e4r5w6e7b8c9l0i1e2"),
        ],
        Account::Friend => vec![
            server_entry(
                SERVER_NAME,
                SERVER_ID,
                false,
                false,
                owner,
                Some("srvTokenFriend000002"),
            ),
            client_entry(
                "Pixel 8",
                "Plex for Android (Mobile)",
                "f1r2i3e4n5d6a7n8d9r0o1i2",
            ),
        ],
        Account::HomeMember => vec![server_entry(
            SERVER_NAME,
            SERVER_ID,
            false,
            true,
            owner,
            Some("srvTokenHome00000003"),
        )],
        Account::Managed => vec![
            server_entry(
                SERVER_NAME,
                SERVER_ID,
                false,
                true,
                owner,
                Some("srvTokenManaged00004"),
            ),
            client_entry("Living Room TV", "Plex for LG", "k1i2d3s4t5v6c7l8i9e0n1t2"),
        ],
        Account::Outsider => vec![
            server_entry(
                "Mallory's NAS",
                OTHER_SERVER_ID,
                true,
                false,
                None,
                Some("srvTokenOutsider0005"),
            ),
            // A device that carries the operator's machine id but is only a player: grants nothing.
            client_entry("Impostor", "Plex HTPC", SERVER_ID),
            // A share from someone else, listed without a token (seen in the wild).
            server_entry(
                "Uncle's Server",
                "0123456789abcdef0123456789abcdef01234567",
                false,
                false,
                Some(Account::Friend),
                None,
            ),
            // An entry missing most fields.
            json!({"clientIdentifier": "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef", "provides": "player"}),
        ],
    };
    if removed {
        entries.retain(|entry| {
            let ours = entry["clientIdentifier"] == SERVER_ID;
            let server = entry["provides"]
                .as_str()
                .is_some_and(|p| p.split(',').any(|role| role == "server"));
            !(ours && server)
        });
    }
    Value::Array(entries)
}

fn auth_page(res: &mut Response) {
    let buttons: String = Account::ALL
        .iter()
        .map(|a| {
            format!(
                r#"<li><button type="button" id="approve-{slug}" data-account="{slug}">Approve as {title}</button></li>"#,
                slug = a.slug(),
                title = a.title()
            )
        })
        .collect();
    let page = AUTH_PAGE.replace("{{buttons}}", &buttons);
    res.add_header("cross-origin-opener-policy", "same-origin", true)
        .ok();
    res.add_header("cache-control", "no-store", true).ok();
    send(res, StatusCode::OK, "text/html; charset=utf-8", page);
}

const AUTH_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Plex (fake) - Sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
</head>
<body>
<main>
<h1>Fake Plex</h1>
<p id="request"><span id="product">An app</span> wants to sign you in with Plex.</p>
<ul id="accounts">{{buttons}}</ul>
<p id="approved" hidden>Signed in. You can close this window.</p>
<p id="error" role="alert" hidden></p>
</main>
<script>
(function () {
  var raw = location.hash.replace(/^#!?\??/, "");
  var params = new URLSearchParams(raw);
  var code = params.get("code");
  var clientID = params.get("clientID");
  var product = params.get("context[device][product]");
  var forwardUrl = params.get("forwardUrl");
  var error = document.getElementById("error");
  var buttons = document.querySelectorAll("button[data-account]");
  if (product) { document.getElementById("product").textContent = product; }
  function fail(message) {
    error.textContent = message;
    error.hidden = false;
  }
  if (!code || !clientID) {
    fail("Missing code or clientID in the URL fragment.");
    buttons.forEach(function (b) { b.disabled = true; });
    return;
  }
  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      buttons.forEach(function (b) { b.disabled = true; });
      fetch("/__fake/approve", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ code: code, clientID: clientID, account: button.dataset.account })
      }).then(function (response) {
        if (!response.ok) {
          fail("This code is unknown or expired.");
          buttons.forEach(function (b) { b.disabled = false; });
          return;
        }
        if (forwardUrl && /^https?:\/\//i.test(forwardUrl)) {
          location.assign(forwardUrl);
          return;
        }
        document.getElementById("accounts").hidden = true;
        document.getElementById("approved").hidden = false;
      }, function () {
        fail("Could not reach Plex.");
        buttons.forEach(function (b) { b.disabled = false; });
      });
    });
  });
})();
</script>
</body>
</html>
"#;

/// XML as plex.tv renders `/api/v2` objects without `Accept: application/json`: the object is the root
/// element, scalars are attributes (booleans `0`/`1`, nulls omitted), arrays wrap singular children.
fn to_xml(root: &str, value: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml_element(&mut out, root, value);
    out.push('\n');
    out
}

fn xml_element(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Array(items) => {
            out.push_str(&format!("<{name} size=\"{}\">", items.len()));
            let child = name.strip_suffix('s').unwrap_or(name);
            for item in items {
                xml_element(out, child, item);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Object(map) => {
            out.push('<');
            out.push_str(name);
            let mut children = Vec::new();
            for (key, field) in map {
                match field {
                    Value::Null => {}
                    Value::Bool(b) => out.push_str(&format!(" {key}=\"{}\"", u8::from(*b))),
                    Value::Number(n) => out.push_str(&format!(" {key}=\"{n}\"")),
                    Value::String(s) => out.push_str(&format!(" {key}=\"{}\"", xml_escape(s))),
                    Value::Array(_) | Value::Object(_) => children.push((key, field)),
                }
            }
            if children.is_empty() {
                out.push_str("/>");
            } else {
                out.push('>');
                for (key, field) in children {
                    xml_element(out, key, field);
                }
                out.push_str(&format!("</{name}>"));
            }
        }
        Value::Null => {}
        scalar => {
            let text = match scalar {
                Value::String(s) => xml_escape(s),
                other => other.to_string(),
            };
            out.push_str(&format!("<{name}>{text}</{name}>"));
        }
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut bytes).expect("the OS random generator works");
    bytes
}

fn random_hex(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

/// Strong codes: lowercase alphanumerics (for the auth app). Weak ones: uppercase (for plex.tv/link).
fn random_code(len: usize, uppercase: bool) -> String {
    const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let alphabet = if uppercase { UPPER } else { LOWER };
    random_bytes(len)
        .into_iter()
        .map(|b| char::from(alphabet[usize::from(b) % alphabet.len()]))
        .collect()
}

/// `2023-04-12T17:00:03Z`, as plex.tv writes dates.
fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
