//! Every endpoint against what a broken or hostile client sends: parameters missing, repeated, oversized
//! or of the wrong type, wrong methods, wrong content types. Each gets its RFC error code (or, where the
//! person is in front of us, the readable page), and nothing is ever answered with a 5xx.
//!
//! The matrix runs every case and reports every mismatch at once.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::Value;

use crate::oidc_flow::urlencode;
use crate::support::app::{
    GRAFANA_REDIRECT, GRAFANA_SECRET, MOBILE_REDIRECT, TestApp, attribute, query_param, spawn_app,
};

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// What a case must be answered with.
#[derive(Debug, Clone)]
enum Expect {
    /// An OAuth JSON error (RFC 6749 §5.2 / RFC 6750 §3.1 / RFC 7009 / RFC 7662).
    OAuth(u16, &'static str),
    /// The page, in this state.
    Page(u16, &'static str),
    /// A redirect to the client's registered URI carrying this `error`.
    Redirect(&'static str),
    /// The page's JSON API, naming this state.
    Login(u16, &'static str),
    /// Only this status (405, 404, a 200 that ignores junk).
    Status(u16),
    /// A JSON body with this member set to this value.
    JsonField(u16, &'static str, Value),
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    expect: Expect,
}

fn case(name: impl Into<String>, method: Method, path: impl Into<String>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        content_type: None,
        body: Vec::new(),
        headers: Vec::new(),
        expect,
    }
}

impl Case {
    fn body(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Case {
        self.content_type = Some(content_type);
        self.body = body.into();
        self
    }

    fn raw_body(mut self, body: impl Into<Vec<u8>>) -> Case {
        self.body = body.into();
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.push((name, value.into()));
        self
    }

    fn basic(self, id: &str, secret: &str) -> Case {
        self.header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
        )
    }

    fn grafana(self) -> Case {
        self.basic("grafana", GRAFANA_SECRET)
    }
}

fn get(name: &str, path: impl Into<String>, expect: Expect) -> Case {
    case(name, Method::GET, path, expect)
}

fn post(name: &str, path: impl Into<String>, expect: Expect) -> Case {
    case(name, Method::POST, path, expect)
}

/// A valid authorization query for grafana with `change` applied: `(name, None)` removes a parameter,
/// `(name, Some(v))` sets it, and names already set get a second copy when prefixed with `+`.
fn authorize_query(changes: &[(&str, Option<&str>)]) -> String {
    let mut pairs: Vec<(String, String)> = [
        ("client_id", "grafana"),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid email"),
        ("state", "st"),
        ("nonce", "n-0S6_WzA2Mj"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (name, value) in changes {
        match (name.strip_prefix('+'), value) {
            (Some(name), Some(v)) => pairs.push((name.to_owned(), (*v).to_owned())),
            (None, Some(v)) => match pairs.iter_mut().find(|(k, _)| k == name) {
                Some(pair) => pair.1 = (*v).to_owned(),
                None => pairs.push(((*name).to_owned(), (*v).to_owned())),
            },
            (_, None) => pairs.retain(|(k, _)| k != name),
        }
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn authorize(changes: &[(&str, Option<&str>)]) -> String {
    format!("/authorize?{}", authorize_query(changes))
}

fn many_params(n: usize) -> String {
    (0..n)
        .map(|i| format!("p{i}=x"))
        .collect::<Vec<_>>()
        .join("&")
}

fn discovery_and_jwks() -> Vec<Case> {
    let junk = format!("?a=1&a=2&x={}", "y".repeat(5000));
    let mut cases = Vec::new();
    for path in ["/.well-known/openid-configuration", "/jwks"] {
        cases.push(get(
            "ignores junk in the query",
            format!("{path}{junk}"),
            Expect::Status(200),
        ));
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            cases.push(case(format!("{method}"), method, path, Expect::Status(405)));
        }
    }
    cases
}

fn authorize_get() -> Vec<Case> {
    use Expect::{Page, Redirect};
    let long = "a".repeat(5000);
    vec![
        get("no parameters", "/authorize", Page(400, "invalid")),
        get(
            "client_id missing",
            authorize(&[("client_id", None)]),
            Page(400, "invalid"),
        ),
        get(
            "client_id twice",
            authorize(&[("+client_id", Some("grafana"))]),
            Page(400, "invalid"),
        ),
        get(
            "client_id oversized",
            authorize(&[("client_id", Some(&long))]),
            Page(400, "invalid"),
        ),
        get(
            "client_id unknown",
            authorize(&[("client_id", Some("nobody"))]),
            Page(400, "invalid"),
        ),
        get(
            "client_id not UTF-8",
            "/authorize?client_id=%FF%FE&response_type=code",
            Page(400, "invalid"),
        ),
        get(
            "client_id as an array",
            authorize(&[("client_id", None), ("client_id[]", Some("grafana"))]),
            Page(400, "invalid"),
        ),
        get(
            "redirect_uri twice",
            authorize(&[("+redirect_uri", Some(GRAFANA_REDIRECT))]),
            Page(400, "invalid"),
        ),
        get(
            "redirect_uri unregistered",
            authorize(&[("redirect_uri", Some("https://evil.example/cb"))]),
            Page(400, "invalid"),
        ),
        get(
            "redirect_uri missing with two registered",
            authorize(&[("redirect_uri", None)]),
            Page(400, "invalid"),
        ),
        get(
            "redirect_uri a prefix of a registered one",
            authorize(&[("redirect_uri", Some("https://grafana.example.com/login"))]),
            Page(400, "invalid"),
        ),
        get(
            "response_type missing",
            authorize(&[("response_type", None)]),
            Redirect("invalid_request"),
        ),
        get(
            "response_type twice",
            authorize(&[("+response_type", Some("code"))]),
            Redirect("invalid_request"),
        ),
        get(
            "response_type token",
            authorize(&[("response_type", Some("token"))]),
            Redirect("unsupported_response_type"),
        ),
        get(
            "response_type id_token",
            authorize(&[("response_type", Some("code id_token"))]),
            Redirect("unsupported_response_type"),
        ),
        get(
            "response_mode fragment",
            authorize(&[("response_mode", Some("fragment"))]),
            Redirect("invalid_request"),
        ),
        get(
            "scope missing",
            authorize(&[("scope", None)]),
            Redirect("invalid_scope"),
        ),
        get(
            "scope without openid",
            authorize(&[("scope", Some("email profile"))]),
            Redirect("invalid_scope"),
        ),
        get(
            "scope twice",
            authorize(&[("+scope", Some("openid"))]),
            Redirect("invalid_request"),
        ),
        get(
            "state twice",
            authorize(&[("+state", Some("other"))]),
            Redirect("invalid_request"),
        ),
        get(
            "state oversized",
            authorize(&[("state", Some(&"s".repeat(60 * 1024)))]),
            Page(400, "invalid"),
        ),
        get(
            "nonce oversized",
            authorize(&[("nonce", Some(&long))]),
            Page(400, "invalid"),
        ),
        get(
            "nonce twice",
            authorize(&[("+nonce", Some("x"))]),
            Redirect("invalid_request"),
        ),
        get(
            "max_age not a number",
            authorize(&[("max_age", Some("soon"))]),
            Redirect("invalid_request"),
        ),
        get(
            "max_age negative",
            authorize(&[("max_age", Some("-1"))]),
            Redirect("invalid_request"),
        ),
        get(
            "max_age beyond u64",
            authorize(&[("max_age", Some("99999999999999999999999"))]),
            Redirect("invalid_request"),
        ),
        get(
            "max_age a float",
            authorize(&[("max_age", Some("1.5"))]),
            Redirect("invalid_request"),
        ),
        get(
            "prompt none with login",
            authorize(&[("prompt", Some("none login"))]),
            Redirect("invalid_request"),
        ),
        get(
            "prompt twice",
            authorize(&[("prompt", Some("login")), ("+prompt", Some("login"))]),
            Redirect("invalid_request"),
        ),
        get(
            "code_challenge without method",
            authorize(&[("code_challenge", Some(CHALLENGE))]),
            Redirect("invalid_request"),
        ),
        get(
            "code_challenge_method plain",
            authorize(&[
                ("code_challenge", Some(CHALLENGE)),
                ("code_challenge_method", Some("plain")),
            ]),
            Redirect("invalid_request"),
        ),
        get(
            "code_challenge too short",
            authorize(&[
                ("code_challenge", Some("abc")),
                ("code_challenge_method", Some("S256")),
            ]),
            Redirect("invalid_request"),
        ),
        get(
            "code_challenge_method alone",
            authorize(&[("code_challenge_method", Some("S256"))]),
            Redirect("invalid_request"),
        ),
        get(
            "a request object",
            authorize(&[("request", Some("eyJhbGciOiJub25lIn0.e30."))]),
            Redirect("request_not_supported"),
        ),
        get(
            "a request_uri",
            authorize(&[("request_uri", Some("https://evil.example/r"))]),
            Redirect("request_uri_not_supported"),
        ),
        get(
            "too many parameters",
            format!("{}&{}", authorize(&[]), many_params(70)),
            Page(400, "invalid"),
        ),
        get(
            "broken percent-encoding",
            format!("{}&x=%ZZ%", authorize(&[])),
            Page(200, "ready"),
        ),
        get(
            "a public client without PKCE",
            format!(
                "/authorize?client_id=mobile&redirect_uri={}&response_type=code&scope=openid",
                urlencode(MOBILE_REDIRECT)
            ),
            Redirect("invalid_request"),
        ),
        get(
            "an oversized session cookie is no session",
            authorize(&[]),
            Page(200, "ready"),
        )
        .header(
            "cookie",
            format!("plex-oidc-session={}", "A".repeat(16 * 1024)),
        ),
        get(
            "a garbage session cookie is no session",
            authorize(&[]),
            Page(200, "ready"),
        )
        .header("cookie", "plex-oidc-session=not-sealed; plex-oidc-login=x"),
    ]
}

fn authorize_post() -> Vec<Case> {
    use Expect::{Page, Redirect, Status};
    let form = authorize_query(&[]);
    vec![
        post("a valid form", "/authorize", Page(200, "ready")).body(FORM, form.clone()),
        post(
            "a valid form with a charset",
            "/authorize",
            Page(200, "ready"),
        )
        .body(
            "application/x-www-form-urlencoded; charset=UTF-8",
            form.clone(),
        ),
        post("no body", "/authorize", Page(400, "invalid")).body(FORM, ""),
        post("no content type", "/authorize", Page(400, "invalid")).raw_body(form.clone()),
        post("JSON", "/authorize", Page(400, "invalid")).body(JSON, r#"{"client_id":"grafana"}"#),
        post("text", "/authorize", Page(400, "invalid")).body("text/plain", form.clone()),
        post("multipart", "/authorize", Page(400, "invalid")).body(
            "multipart/form-data; boundary=x",
            "--x\r\nContent-Disposition: form-data; name=\"client_id\"\r\n\r\ngrafana\r\n--x--\r\n",
        ),
        post("a 100 KB state", "/authorize", Page(400, "invalid")).body(
            FORM,
            authorize_query(&[("state", Some(&"s".repeat(100 * 1024)))]),
        ),
        post("a 1 MB body", "/authorize", Page(400, "invalid")).body(FORM, vec![b'a'; 1024 * 1024]),
        post("client_id twice", "/authorize", Page(400, "invalid"))
            .body(FORM, authorize_query(&[("+client_id", Some("grafana"))])),
        post("state twice", "/authorize", Redirect("invalid_request"))
            .body(FORM, authorize_query(&[("+state", Some("x"))])),
        post(
            "query and body together are read from the body only",
            "/authorize?client_id=nobody",
            Page(200, "ready"),
        )
        .body(FORM, form),
        case("PUT", Method::PUT, "/authorize", Status(405)),
        case("DELETE", Method::DELETE, "/authorize", Status(405)),
        case("PATCH", Method::PATCH, "/authorize", Status(405)),
    ]
}

fn token() -> Vec<Case> {
    use Expect::{OAuth, Status};
    let t = |name: &str, form: &str, expect: Expect| {
        post(name, "/token", expect).body(FORM, form.to_owned())
    };
    vec![
        case("GET", Method::GET, "/token", Status(405)),
        case("PUT", Method::PUT, "/token", Status(405)),
        case("DELETE", Method::DELETE, "/token", Status(405)),
        post("JSON", "/token", OAuth(400, "invalid_request"))
            .body(JSON, r#"{"grant_type":"authorization_code","code":"x"}"#)
            .grafana(),
        post("no content type", "/token", OAuth(400, "invalid_request"))
            .raw_body("grant_type=authorization_code&code=x")
            .grafana(),
        post("a 1 MB body", "/token", OAuth(400, "invalid_request"))
            .body(FORM, vec![b'a'; 1024 * 1024])
            .grafana(),
        t(
            "grant_type missing",
            "code=x",
            OAuth(400, "invalid_request"),
        )
        .grafana(),
        t(
            "grant_type twice",
            "grant_type=authorization_code&grant_type=refresh_token&code=x",
            OAuth(400, "invalid_request"),
        )
        .grafana(),
        t(
            "grant_type password",
            "grant_type=password&username=a&password=b",
            OAuth(400, "unsupported_grant_type"),
        )
        .grafana(),
        t(
            "grant_type a number",
            "grant_type=42",
            OAuth(400, "unsupported_grant_type"),
        )
        .grafana(),
        t(
            "grant_type client_credentials",
            "grant_type=client_credentials",
            OAuth(400, "unsupported_grant_type"),
        )
        .grafana(),
        t(
            "code missing",
            "grant_type=authorization_code",
            OAuth(400, "invalid_request"),
        )
        .grafana(),
        t(
            "code twice",
            "grant_type=authorization_code&code=a&code=b",
            OAuth(400, "invalid_request"),
        )
        .grafana(),
        t(
            "code unknown",
            "grant_type=authorization_code&code=not-a-code",
            OAuth(400, "invalid_grant"),
        )
        .grafana(),
        t(
            "code oversized",
            &format!("grant_type=authorization_code&code={}", "c".repeat(5000)),
            OAuth(400, "invalid_request"),
        )
        .grafana(),
        t(
            "refresh_token missing",
            "grant_type=refresh_token",
            OAuth(400, "invalid_request"),
        )
        .grafana(),
        t(
            "refresh_token twice",
            "grant_type=refresh_token&refresh_token=a&refresh_token=b",
            OAuth(400, "invalid_request"),
        )
        .grafana(),
        t(
            "refresh_token garbage",
            "grant_type=refresh_token&refresh_token=garbage",
            OAuth(400, "invalid_grant"),
        )
        .grafana(),
        t(
            "too many parameters",
            &format!("grant_type=authorization_code&code=x&{}", many_params(70)),
            OAuth(400, "invalid_request"),
        )
        .grafana(),
        t(
            "no client authentication",
            "grant_type=authorization_code&code=x",
            OAuth(401, "invalid_client"),
        ),
        t(
            "a bearer token instead of Basic",
            "grant_type=authorization_code&code=x",
            OAuth(401, "invalid_client"),
        )
        .header("authorization", "Bearer abc"),
        t(
            "Basic that is not base64",
            "grant_type=authorization_code&code=x",
            OAuth(401, "invalid_client"),
        )
        .header("authorization", "Basic !!!not-base64!!!"),
        t(
            "Basic without a colon",
            "grant_type=authorization_code&code=x",
            OAuth(401, "invalid_client"),
        )
        .header(
            "authorization",
            format!("Basic {}", STANDARD.encode("grafana")),
        ),
        t(
            "Basic with a wrong secret",
            "grant_type=authorization_code&code=x",
            OAuth(401, "invalid_client"),
        )
        .basic("grafana", "wrong"),
        t(
            "Basic for an unknown client",
            "grant_type=authorization_code&code=x",
            OAuth(401, "invalid_client"),
        )
        .basic("nobody", "x"),
        t(
            "Basic and a body secret",
            &format!("grant_type=authorization_code&code=x&client_secret={GRAFANA_SECRET}"),
            OAuth(400, "invalid_request"),
        )
        .grafana(),
        t(
            "Basic and another body client_id",
            "grant_type=authorization_code&code=x&client_id=strict",
            OAuth(400, "invalid_request"),
        )
        .grafana(),
        t(
            "client_id twice in the body",
            &format!(
                "grant_type=authorization_code&code=x&client_id=grafana&client_id=grafana&client_secret={GRAFANA_SECRET}"
            ),
            OAuth(400, "invalid_request"),
        ),
        t(
            "client_secret oversized",
            &format!(
                "grant_type=authorization_code&code=x&client_id=grafana&client_secret={}",
                "s".repeat(5000)
            ),
            OAuth(400, "invalid_request"),
        ),
        t(
            "a public client presenting a secret",
            "grant_type=authorization_code&code=x&client_id=mobile&client_secret=x",
            OAuth(401, "invalid_client"),
        ),
        t(
            "an oversized Authorization header",
            "grant_type=authorization_code&code=x",
            OAuth(401, "invalid_client"),
        )
        .header("authorization", format!("Basic {}", "A".repeat(20 * 1024))),
    ]
}

fn userinfo() -> Vec<Case> {
    use Expect::{OAuth, Status};
    vec![
        get("no token", "/userinfo", OAuth(401, "invalid_token")),
        get("a garbage token", "/userinfo", OAuth(401, "invalid_token"))
            .header("authorization", "Bearer garbage"),
        get(
            "an oversized token",
            "/userinfo",
            OAuth(401, "invalid_token"),
        )
        .header("authorization", format!("Bearer {}", "t".repeat(20 * 1024))),
        get(
            "Basic instead of Bearer",
            "/userinfo",
            OAuth(401, "invalid_token"),
        )
        .grafana(),
        get(
            "the token in the query is not read",
            "/userinfo?access_token=garbage",
            OAuth(401, "invalid_token"),
        ),
        post(
            "a garbage token in the form",
            "/userinfo",
            OAuth(401, "invalid_token"),
        )
        .body(FORM, "access_token=garbage"),
        post(
            "the token twice in the form",
            "/userinfo",
            OAuth(400, "invalid_request"),
        )
        .body(FORM, "access_token=a&access_token=b"),
        post(
            "the token in header and form",
            "/userinfo",
            OAuth(400, "invalid_request"),
        )
        .body(FORM, "access_token=a")
        .header("authorization", "Bearer b"),
        post("a 1 MB form", "/userinfo", OAuth(400, "invalid_request"))
            .body(FORM, vec![b'a'; 1024 * 1024]),
        post(
            "a JSON body is not read",
            "/userinfo",
            OAuth(401, "invalid_token"),
        )
        .body(JSON, r#"{"access_token":"x"}"#),
        case("PUT", Method::PUT, "/userinfo", Status(405)),
        case("DELETE", Method::DELETE, "/userinfo", Status(405)),
    ]
}

fn revoke_and_introspect() -> Vec<Case> {
    use Expect::{JsonField, OAuth, Status};
    let mut cases = Vec::new();
    for path in ["/revoke", "/introspect"] {
        let f = |name: &str, form: &str, expect: Expect| {
            post(name, path, expect).body(FORM, form.to_owned())
        };
        cases.extend([
            case("GET", Method::GET, path, Status(405)),
            case("PUT", Method::PUT, path, Status(405)),
            post("JSON", path, OAuth(400, "invalid_request"))
                .body(JSON, r#"{"token":"x"}"#)
                .grafana(),
            post("no content type", path, OAuth(400, "invalid_request"))
                .raw_body("token=x")
                .grafana(),
            post("a 1 MB body", path, OAuth(400, "invalid_request"))
                .body(FORM, vec![b'a'; 1024 * 1024])
                .grafana(),
            f(
                "no client authentication",
                "token=x",
                OAuth(401, "invalid_client"),
            ),
            f("a wrong secret", "token=x", OAuth(401, "invalid_client")).basic("grafana", "wrong"),
            f(
                "a public client",
                "token=x&client_id=mobile",
                OAuth(400, "unauthorized_client"),
            ),
            f("token missing", "", OAuth(400, "invalid_request")).grafana(),
            f(
                "token twice",
                "token=a&token=b",
                OAuth(400, "invalid_request"),
            )
            .grafana(),
            f(
                "token oversized",
                &format!("token={}", "t".repeat(5000)),
                OAuth(400, "invalid_request"),
            )
            .grafana(),
            f(
                "too many parameters",
                &format!("token=x&{}", many_params(70)),
                OAuth(400, "invalid_request"),
            )
            .grafana(),
        ]);
    }
    cases.push(
        post(
            "an unknown token is revoked quietly (RFC 7009 §2.2)",
            "/revoke",
            Status(200),
        )
        .body(FORM, "token=garbage&token_type_hint=refresh_token")
        .grafana(),
    );
    cases.push(
        post(
            "an unknown token is inactive",
            "/introspect",
            JsonField(200, "active", Value::Bool(false)),
        )
        .body(FORM, "token=garbage")
        .grafana(),
    );
    cases
}

fn logout() -> Vec<Case> {
    use Expect::{Page, Status};
    let registered = "https://grafana.example.com/login/generic_oauth";
    vec![
        get(
            "no parameters signs out",
            "/logout",
            Page(200, "signed-out"),
        ),
        get(
            "a garbage id_token_hint",
            "/logout?id_token_hint=garbage",
            Page(400, "invalid"),
        ),
        get(
            "an oversized id_token_hint",
            format!("/logout?id_token_hint={}", "h".repeat(5000)),
            Page(400, "invalid"),
        ),
        get(
            "a redirect without a client",
            format!("/logout?post_logout_redirect_uri={}", urlencode(registered)),
            Page(400, "invalid"),
        ),
        get(
            "an unregistered redirect",
            format!(
                "/logout?client_id=grafana&post_logout_redirect_uri={}",
                urlencode("https://evil.example/")
            ),
            Page(400, "invalid"),
        ),
        get(
            "an unknown client",
            "/logout?client_id=nobody",
            Page(400, "invalid"),
        ),
        get(
            "client_id twice",
            "/logout?client_id=grafana&client_id=strict",
            Page(400, "invalid"),
        ),
        get(
            "post_logout_redirect_uri twice",
            format!(
                "/logout?client_id=grafana&post_logout_redirect_uri={0}&post_logout_redirect_uri={0}",
                urlencode("https://evil.example/")
            ),
            Page(400, "invalid"),
        ),
        get(
            "id_token_hint twice",
            "/logout?id_token_hint=a&id_token_hint=b",
            Page(400, "invalid"),
        ),
        get(
            "too many parameters",
            format!("/logout?{}", many_params(70)),
            Page(400, "invalid"),
        ),
        post("JSON", "/logout", Page(400, "invalid")).body(JSON, "{}"),
        post("a 1 MB form", "/logout", Page(400, "invalid")).body(FORM, vec![b'a'; 1024 * 1024]),
        post(
            "an empty form signs out",
            "/logout",
            Page(200, "signed-out"),
        )
        .body(FORM, ""),
        case("PUT", Method::PUT, "/logout", Status(405)),
        case("DELETE", Method::DELETE, "/logout", Status(405)),
    ]
}

fn login_api() -> Vec<Case> {
    use Expect::{Login, Status};
    let mut cases = Vec::new();
    for path in ["/login/start", "/login/poll"] {
        let cookie = "plex-oidc-login=0123456789abcdef0123456789abcdef";
        let j = |name: &str, body: &str, expect: Expect| {
            post(name, path, expect)
                .body(JSON, body.to_owned())
                .header("cookie", cookie)
        };
        cases.extend([
            case("GET", Method::GET, path, Status(405)),
            case("PUT", Method::PUT, path, Status(405)),
            post("a form", path, Login(400, "invalid"))
                .body(FORM, "login=abc")
                .header("cookie", cookie),
            post("no content type", path, Login(400, "invalid"))
                .raw_body(r#"{"login":"abc"}"#)
                .header("cookie", cookie),
            post("text", path, Login(400, "invalid"))
                .body("text/plain", r#"{"login":"abc"}"#)
                .header("cookie", cookie),
            j("no body", "", Login(400, "invalid")),
            j("not JSON", "{", Login(400, "invalid")),
            j("an empty object", "{}", Login(400, "invalid")),
            j("a string", r#""abc""#, Login(400, "invalid")),
            j("login a number", r#"{"login":5}"#, Login(400, "invalid")),
            j("login null", r#"{"login":null}"#, Login(400, "invalid")),
            j("login empty", r#"{"login":""}"#, Login(400, "invalid")),
            j(
                "login oversized",
                &format!(r#"{{"login":"{}"}}"#, "l".repeat(65)),
                Login(400, "invalid"),
            ),
            j(
                "login twice",
                r#"{"login":"abc","login":"def"}"#,
                Login(400, "invalid"),
            ),
            j(
                "restart not a boolean",
                r#"{"login":"abc","restart":"yes"}"#,
                Login(400, "invalid"),
            ),
            post("a 1 MB body", path, Login(400, "invalid"))
                .body(
                    JSON,
                    format!(r#"{{"login":"abc","x":"{}"}}"#, "x".repeat(1024 * 1024)),
                )
                .header("cookie", cookie),
            j(
                "an unknown login",
                r#"{"login":"abc"}"#,
                Login(404, "expired"),
            ),
            post("no binding cookie", path, Login(403, "expired")).body(JSON, r#"{"login":"abc"}"#),
            post(
                "a binding cookie too short to be ours",
                path,
                Login(403, "expired"),
            )
            .body(JSON, r#"{"login":"abc"}"#)
            .header("cookie", "plex-oidc-login=x"),
        ]);
    }
    let expired = Expect::Page(200, "expired");
    cases.extend([
        case("POST", Method::POST, "/login/continue", Status(405)),
        get("no login", "/login/continue", expired.clone()),
        get(
            "an unknown login",
            "/login/continue?login=abc",
            expired.clone(),
        )
        .header("cookie", "plex-oidc-login=0123456789abcdef0123456789abcdef"),
        get(
            "an oversized login",
            format!("/login/continue?login={}", "l".repeat(5000)),
            expired.clone(),
        ),
        get(
            "login twice",
            "/login/continue?login=a&login=b",
            expired.clone(),
        ),
        get("no binding cookie", "/login/continue?login=abc", expired),
    ]);
    cases
}

fn elsewhere() -> Vec<Case> {
    use Expect::Status;
    vec![
        get("an unknown path", "/admin", Status(404)),
        get(
            "a path escaping the assets",
            "/assets/../Cargo.toml",
            Status(404),
        ),
        get(
            "an encoded path escaping the assets",
            "/assets/%2e%2e/%2e%2e/Cargo.toml",
            Status(404),
        ),
        get("an unknown asset", "/assets/nope.js", Status(404)),
        get(
            "the popup landing with a junk login",
            format!("/login/popup-done?login={}", "l".repeat(5000)),
            Status(200),
        ),
        get(
            "the popup landing with no login",
            "/login/popup-done",
            Status(200),
        ),
        case(
            "POST to the popup landing",
            Method::POST,
            "/login/popup-done",
            Status(405),
        ),
        case("POST to healthz", Method::POST, "/healthz", Status(405)),
        case("POST to readyz", Method::POST, "/readyz", Status(405)),
        case("DELETE on metrics", Method::DELETE, "/metrics", Status(405)),
    ]
}

async fn run(t: &TestApp, c: &Case) -> Result<(), String> {
    let mut req = t.http.request(c.method.clone(), t.url(&c.path));
    if let Some(ct) = c.content_type {
        req = req.header("content-type", ct);
    }
    for (name, value) in &c.headers {
        req = req.header(*name, value);
    }
    if !c.body.is_empty() {
        req = req.body(c.body.clone());
    }
    let res = req.send().await.map_err(|e| format!("no answer: {e}"))?;
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = res.text().await.unwrap_or_default();
    let short = || match attribute(&text, "data-state") {
        Some(state) => format!("a page in state {state:?}"),
        None => text.chars().take(200).collect::<String>(),
    };
    if status >= 500 {
        return Err(format!("answered {status}: {}", short()));
    }
    let json = || serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
    let ok = match &c.expect {
        Expect::Status(s) => status == *s,
        Expect::OAuth(s, code) => {
            let body = json();
            let challenged = status != 401
                || c.path != "/userinfo"
                || challenge
                    .as_deref()
                    .is_some_and(|h| h.starts_with("Bearer"));
            status == *s && body["error"] == *code && challenged
        }
        Expect::JsonField(s, field, value) => status == *s && json()[*field] == *value,
        Expect::Login(s, state) => status == *s && json()["state"] == *state,
        Expect::Page(s, state) => {
            status == *s && attribute(&text, "data-state").as_deref() == Some(*state)
        }
        Expect::Redirect(code) => {
            let to = location.as_deref().unwrap_or("");
            status == 303
                && (to.starts_with(GRAFANA_REDIRECT) || to.starts_with(MOBILE_REDIRECT))
                && query_param(to, "error").as_deref() == Some(*code)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected {:?}, got {status} location={location:?} body={}",
            c.expect,
            short()
        ))
    }
}

async fn run_all(cases: Vec<Case>) {
    let t = spawn_app().await;
    let mut failures = Vec::new();
    for c in &cases {
        if let Err(why) = run(&t, c).await {
            failures.push(format!(
                "{} {} ({}): {why}",
                c.method,
                c.path.chars().take(80).collect::<String>(),
                c.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn discovery_and_jwks_ignore_junk_and_refuse_other_methods() {
    run_all(discovery_and_jwks()).await;
}

#[tokio::test]
async fn bad_authorization_requests_get_a_page_or_an_error_redirect_with_the_right_code() {
    run_all(authorize_get()).await;
}

#[tokio::test]
async fn bad_authorization_posts_get_a_page_or_an_error_redirect_with_the_right_code() {
    run_all(authorize_post()).await;
}

#[tokio::test]
async fn bad_token_requests_get_rfc_6749_errors() {
    run_all(token()).await;
}

#[tokio::test]
async fn bad_userinfo_requests_get_rfc_6750_errors_with_a_bearer_challenge() {
    run_all(userinfo()).await;
}

#[tokio::test]
async fn bad_revocation_and_introspection_requests_get_oauth_errors() {
    run_all(revoke_and_introspect()).await;
}

#[tokio::test]
async fn bad_logout_requests_get_the_page_and_never_a_redirect_to_an_unverified_uri() {
    run_all(logout()).await;
}

#[tokio::test]
async fn bad_calls_to_the_page_api_name_the_state_to_show() {
    run_all(login_api()).await;
}

#[tokio::test]
async fn unknown_paths_and_path_tricks_are_not_found() {
    run_all(elsewhere()).await;
}
