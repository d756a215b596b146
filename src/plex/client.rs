//! The HTTP side: one `reqwest` client per process, identity headers on every call, bounded time and
//! memory per call, and one place that turns statuses and transport failures into `PlexError`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::redirect::Policy;
use reqwest::{RequestBuilder, Response, StatusCode};
use url::Url;

use super::error::PlexError;
use super::model::{self, Pin, PinId, PlexToken, PlexUser, Resource};
use crate::clock::{Clock, SystemClock};

/// A hostile or broken upstream cannot make us buffer more than this per response.
const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const POOL_MAX_IDLE_PER_HOST: usize = 8;

const REQUEST_DURATION: &str = "plex_oidc_plex_request_duration_seconds";
const RATE_LIMITED: &str = "plex_oidc_plex_rate_limited_total";

const X_PLEX_TOKEN: HeaderName = HeaderName::from_static("x-plex-token");

/// Registers help texts for this module's metrics with whatever recorder is installed.
pub fn describe_metrics() {
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Duration of plex.tv calls by call and outcome"
    );
    metrics::describe_counter!(
        RATE_LIMITED,
        "plex.tv calls answered with 429 (rate limited), by call"
    );
}

#[derive(Clone, Debug)]
pub struct PlexClientSettings {
    /// `https://plex.tv` in production; a fake on loopback in tests.
    pub api_url: Url,
    /// `https://app.plex.tv`, where the user approves a PIN.
    pub app_url: Url,
    /// One stable `X-Plex-Client-Identifier` per installation, so users' accounts don't fill with devices.
    pub client_identifier: String,
    /// Shown on Plex's consent screen and in "Authorized Devices".
    pub product: String,
    pub version: String,
    /// Upper bound for one call, connection included.
    pub request_timeout: Duration,
}

/// A plex.tv client. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct PlexClient {
    inner: Arc<Inner>,
    clock: Arc<dyn Clock>,
}

struct Inner {
    http: reqwest::Client,
    pins_url: Url,
    user_url: Url,
    resources_url: Url,
    app_base: String,
    client_identifier: String,
    product: String,
    request_timeout: Duration,
}

impl fmt::Debug for PlexClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlexClient")
            .field("api", &self.inner.pins_url.origin().ascii_serialization())
            .field("app", &self.inner.app_base)
            .field("client_identifier", &self.inner.client_identifier)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug)]
enum Call {
    PinCreate,
    PinCheck,
    User,
    Resources,
}

impl Call {
    fn label(self) -> &'static str {
        match self {
            Call::PinCreate => "pin_create",
            Call::PinCheck => "pin_check",
            Call::User => "user",
            Call::Resources => "resources",
        }
    }
}

impl PlexClient {
    pub fn new(settings: PlexClientSettings) -> Result<Self, PlexError> {
        let PlexClientSettings {
            api_url,
            app_url,
            client_identifier,
            product,
            version,
            request_timeout,
        } = settings;
        if client_identifier.trim().is_empty() {
            return Err(PlexError::Client("the client identifier is empty".into()));
        }
        if request_timeout.is_zero() {
            return Err(PlexError::Client("the request timeout is zero".into()));
        }
        check_base(&api_url, "api_url")?;
        check_base(&app_url, "app_url")?;

        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        for (name, value) in [
            ("x-plex-client-identifier", client_identifier.as_str()),
            ("x-plex-product", product.as_str()),
            ("x-plex-version", version.as_str()),
            ("x-plex-platform", "Web"),
            ("x-plex-device-name", product.as_str()),
        ] {
            let value = HeaderValue::from_str(value).map_err(|_| {
                PlexError::Client(format!(
                    "{name} contains characters not allowed in a header"
                ))
            })?;
            headers.insert(HeaderName::from_static(name), value);
        }

        let http = reqwest::Client::builder()
            .user_agent(concat!("plex-oidc/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            // Redirects are never followed (SSRF): whatever answers for plex.tv must not be able to point
            // us, with a user's token in hand, at another host.
            .redirect(Policy::none())
            .referer(false)
            .connect_timeout(request_timeout.min(MAX_CONNECT_TIMEOUT))
            .timeout(request_timeout)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build()
            .map_err(|e| PlexError::Client(error_chain(&e.without_url())))?;

        Ok(PlexClient {
            inner: Arc::new(Inner {
                http,
                pins_url: endpoint(&api_url, &["api", "v2", "pins"])?,
                user_url: endpoint(&api_url, &["api", "v2", "user"])?,
                resources_url: endpoint(&api_url, &["api", "v2", "resources"])?,
                app_base: app_url.as_str().trim_end_matches('/').to_owned(),
                client_identifier,
                product,
                request_timeout,
            }),
            clock: Arc::new(SystemClock),
        })
    }

    /// Uses `clock` for PIN expiry instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// `POST /api/v2/pins?strong=true`: a PIN the auth app can approve.
    pub async fn create_pin(&self) -> Result<Pin, PlexError> {
        let request = self
            .inner
            .http
            .post(self.inner.pins_url.clone())
            .query(&[("strong", "true")]);
        let now = self.clock.now();
        self.execute(Call::PinCreate, request, |body| model::parse_pin(body, now))
            .await
    }

    /// `GET /api/v2/pins/{id}`: carries `auth_token` once the user approved the PIN.
    pub async fn check_pin(&self, pin_id: PinId) -> Result<Pin, PlexError> {
        let mut url = self.inner.pins_url.clone();
        url.path_segments_mut()
            .map_err(|()| PlexError::Client("api_url cannot carry a path".into()))?
            .push(&pin_id.get().to_string());
        let request = self.inner.http.get(url);
        let now = self.clock.now();
        self.execute(Call::PinCheck, request, |body| model::parse_pin(body, now))
            .await
    }

    /// `GET /api/v2/user`: the account behind `token`; also plex.tv's token check.
    pub async fn user(&self, token: &PlexToken) -> Result<PlexUser, PlexError> {
        let request = self
            .inner
            .http
            .get(self.inner.user_url.clone())
            .header(X_PLEX_TOKEN, token_header(token)?);
        self.execute(Call::User, request, model::parse_user).await
    }

    /// `GET /api/v2/resources`: servers and devices the account can use.
    pub async fn resources(&self, token: &PlexToken) -> Result<Vec<Resource>, PlexError> {
        let request = self
            .inner
            .http
            .get(self.inner.resources_url.clone())
            .query(&[
                ("includeHttps", "1"),
                ("includeRelay", "1"),
                ("includeIPv6", "1"),
            ])
            .header(X_PLEX_TOKEN, token_header(token)?);
        self.execute(Call::Resources, request, model::parse_resources)
            .await
    }

    /// `app_url + "/auth#?"` + URL-encoded `clientID`, `code`, `context[device][product]` and, when
    /// given, `forwardUrl` (where the auth app sends the window once the PIN is approved).
    pub fn auth_app_url(&self, pin_code: &str, forward_url: Option<&str>) -> String {
        let mut params = vec![
            ("clientID", self.inner.client_identifier.as_str()),
            ("code", pin_code),
            ("context[device][product]", self.inner.product.as_str()),
        ];
        if let Some(forward_url) = forward_url {
            params.push(("forwardUrl", forward_url));
        }
        let query: Vec<String> = params
            .into_iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        format!("{}/auth#?{}", self.inner.app_base, query.join("&"))
    }

    async fn execute<T>(
        &self,
        call: Call,
        request: RequestBuilder,
        parse: impl FnOnce(&[u8]) -> Result<T, PlexError>,
    ) -> Result<T, PlexError> {
        let started = Instant::now();
        // reqwest's own timeout covers the body too; this outer bound also covers our reading loop.
        let (status, body) =
            match tokio::time::timeout(self.inner.request_timeout, exchange(call, request)).await {
                Ok(done) => done,
                Err(_) => (
                    None,
                    Err(PlexError::Unavailable(
                        "no answer within the request timeout".into(),
                    )),
                ),
            };
        let result = body.and_then(|body| parse(&body));
        observe(call, status, &result, started.elapsed());
        result
    }
}

async fn exchange(
    call: Call,
    request: RequestBuilder,
) -> (Option<u16>, Result<Vec<u8>, PlexError>) {
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return (None, Err(transport_error(e))),
    };
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = read_capped(response).await;
    let result = if status.is_success() {
        body
    } else {
        // The status decides; an error body that breaks off halfway must not mask it.
        let body = body.unwrap_or_default();
        Err(status_error(call, status, retry_after, &body))
    };
    (Some(status.as_u16()), result)
}

fn status_error(
    call: Call,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> PlexError {
    let code = model::error_code(body);
    match status.as_u16() {
        429 => PlexError::RateLimited { retry_after },
        408 | 500..=599 => PlexError::Unavailable(format!("plex.tv answered {}", status.as_u16())),
        401 | 422 if matches!(call, Call::User | Call::Resources) => PlexError::Unauthorized,
        // A 404 without plex.tv's error envelope is a missed route (wrong api_url), not a missing PIN.
        404 if matches!(call, Call::PinCheck) && code.is_some() => PlexError::PinNotFound,
        300..=399 => PlexError::UnexpectedResponse(format!(
            "plex.tv answered {} (a redirect, not followed)",
            status.as_u16()
        )),
        other => PlexError::UnexpectedResponse(match code {
            Some(code) => format!("plex.tv answered {other} with error code {code}"),
            None => format!("plex.tv answered {other}"),
        }),
    }
}

async fn read_capped(mut response: Response) -> Result<Vec<u8>, PlexError> {
    let too_large =
        || PlexError::UnexpectedResponse(format!("body exceeds {MAX_BODY_BYTES} bytes"));
    if response
        .content_length()
        .is_some_and(|len| len > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Only the delta-seconds form; plex.tv has not been seen sending a date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse().ok().map(Duration::from_secs)
}

fn transport_error(e: reqwest::Error) -> PlexError {
    let e = e.without_url();
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    PlexError::Unavailable(format!("{what}: {}", error_chain(&e)))
}

/// The error and its sources in one line: reqwest's own message alone ("error sending request") hides
/// whether DNS, TCP or TLS failed.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let message = inner.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = inner.source();
    }
    text
}

fn observe<T>(call: Call, status: Option<u16>, result: &Result<T, PlexError>, elapsed: Duration) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => e.outcome(),
    };
    metrics::histogram!(REQUEST_DURATION, "call" => call.label(), "outcome" => outcome)
        .record(elapsed.as_secs_f64());
    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    let call = call.label();
    match result {
        Ok(_) => tracing::debug!(call, status, elapsed_ms, "plex.tv call succeeded"),
        Err(e @ (PlexError::PinNotFound | PlexError::Unauthorized)) => {
            tracing::debug!(call, status, elapsed_ms, error = %e, "plex.tv refused the call");
        }
        Err(e) => {
            if matches!(e, PlexError::RateLimited { .. }) {
                metrics::counter!(RATE_LIMITED, "call" => call).increment(1);
            }
            tracing::warn!(call, status, elapsed_ms, error = %e, "plex.tv call failed");
        }
    }
}

fn token_header(token: &PlexToken) -> Result<HeaderValue, PlexError> {
    // A token that cannot be a header value cannot be valid either.
    let mut value = HeaderValue::from_str(token.expose()).map_err(|_| PlexError::Unauthorized)?;
    value.set_sensitive(true);
    Ok(value)
}

fn check_base(url: &Url, name: &str) -> Result<(), PlexError> {
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(PlexError::Client(format!("{name} must be an http(s) URL")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(PlexError::Client(format!(
            "{name} must not have a query or fragment"
        )));
    }
    Ok(())
}

fn endpoint(base: &Url, segments: &[&str]) -> Result<Url, PlexError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| PlexError::Client("api_url cannot carry a path".into()))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// RFC 3986 percent-encoding of everything but unreserved characters (so spaces become `%20`, not `+`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PlexClientSettings {
        PlexClientSettings {
            api_url: Url::parse("https://plex.tv").unwrap(),
            app_url: Url::parse("https://app.plex.tv").unwrap(),
            client_identifier: "c0ffee".into(),
            product: "Example Auth".into(),
            version: "1.0".into(),
            request_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn endpoints_keep_a_path_prefix_of_the_api_url() {
        let base = Url::parse("https://proxy.example/plex/").unwrap();
        assert_eq!(
            endpoint(&base, &["api", "v2", "user"]).unwrap().as_str(),
            "https://proxy.example/plex/api/v2/user"
        );
        let bare = Url::parse("https://plex.tv").unwrap();
        assert_eq!(
            endpoint(&bare, &["api", "v2", "pins"]).unwrap().as_str(),
            "https://plex.tv/api/v2/pins"
        );
    }

    #[test]
    fn percent_encoding_leaves_only_unreserved_characters() {
        assert_eq!(
            percent_encode("context[device][product]"),
            "context%5Bdevice%5D%5Bproduct%5D"
        );
        assert_eq!(percent_encode("a b&c=d/é~"), "a%20b%26c%3Dd%2F%C3%A9~");
    }

    #[test]
    fn the_auth_app_url_carries_client_id_code_and_product_in_the_fragment() {
        let client = PlexClient::new(settings()).unwrap();
        assert_eq!(
            client.auth_app_url("abc123", None),
            "https://app.plex.tv/auth#?clientID=c0ffee&code=abc123&context%5Bdevice%5D%5Bproduct%5D=Example%20Auth"
        );
        assert!(
            client
                .auth_app_url("abc123", Some("https://auth.example.com/plex/continue?x=1"))
                .ends_with("&forwardUrl=https%3A%2F%2Fauth.example.com%2Fplex%2Fcontinue%3Fx%3D1")
        );
    }

    #[test]
    fn settings_that_cannot_work_are_rejected_when_building() {
        let empty_id = PlexClientSettings {
            client_identifier: " ".into(),
            ..settings()
        };
        let zero_timeout = PlexClientSettings {
            request_timeout: Duration::ZERO,
            ..settings()
        };
        let not_http = PlexClientSettings {
            api_url: Url::parse("file:///etc/passwd").unwrap(),
            ..settings()
        };
        let with_query = PlexClientSettings {
            app_url: Url::parse("https://app.plex.tv/?x=1").unwrap(),
            ..settings()
        };
        let bad_header = PlexClientSettings {
            product: "line\nbreak".into(),
            ..settings()
        };
        for bad in [empty_id, zero_timeout, not_http, with_query, bad_header] {
            assert!(matches!(PlexClient::new(bad), Err(PlexError::Client(_))));
        }
    }

    #[test]
    fn statuses_map_to_errors_by_call() {
        let plex_404 =
            br#"{"errors":[{"code":1020,"message":"Code not found or expired","status":404}]}"#;
        let route_404 = br#"{"status":404,"error":"Not Found"}"#;
        let map = |call, status: u16, body: &[u8]| {
            status_error(call, StatusCode::from_u16(status).unwrap(), None, body)
        };
        assert!(matches!(
            map(Call::PinCheck, 404, plex_404),
            PlexError::PinNotFound
        ));
        assert!(matches!(
            map(Call::PinCheck, 404, route_404),
            PlexError::UnexpectedResponse(_)
        ));
        assert!(matches!(
            map(Call::PinCreate, 404, plex_404),
            PlexError::UnexpectedResponse(_)
        ));
        assert!(matches!(map(Call::User, 401, b""), PlexError::Unauthorized));
        assert!(matches!(
            map(Call::Resources, 422, b""),
            PlexError::Unauthorized
        ));
        assert!(matches!(
            map(Call::PinCheck, 401, b""),
            PlexError::UnexpectedResponse(_)
        ));
        assert!(matches!(
            map(Call::User, 429, b""),
            PlexError::RateLimited { .. }
        ));
        for status in [500, 502, 503, 504, 408] {
            assert!(matches!(
                map(Call::User, status, b""),
                PlexError::Unavailable(_)
            ));
        }
        assert!(matches!(
            map(Call::User, 302, b""),
            PlexError::UnexpectedResponse(_)
        ));
        let bad_request = map(
            Call::PinCreate,
            400,
            br#"{"errors":[{"code":1000,"message":"X-Plex-Client-Identifier is missing"}]}"#,
        );
        assert!(
            matches!(&bad_request, PlexError::UnexpectedResponse(m) if m.contains("1000")),
            "{bad_request:?}"
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn the_client_debug_output_shows_where_it_points() {
        let client = PlexClient::new(settings()).unwrap();
        let debug = format!("{client:?}");
        assert!(debug.contains("https://plex.tv"), "{debug}");
    }
}
