//! The file's shape as serde sees it. Defaults live here (and, for editors, in the schema; a test keeps
//! the two equal). Values that need checking stay strings until `check` turns them into typed settings.

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::secret::Secret;
use super::{LogFormat, LoginMode};

pub(super) const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub(super) const DEFAULT_STATE_DIR: &str = "/var/lib/plex-oidc";
pub(super) const DEFAULT_PRODUCT: &str = "plex-oidc";
pub(super) const DEFAULT_API_URL: &str = "https://plex.tv";
pub(super) const DEFAULT_APP_URL: &str = "https://app.plex.tv";
pub(super) const DEFAULT_REQUEST_TIMEOUT: &str = "10s";
pub(super) const DEFAULT_ACCESS_TOKEN_TTL: &str = "1h";
pub(super) const DEFAULT_ID_TOKEN_TTL: &str = "1h";
pub(super) const DEFAULT_REFRESH_TOKEN_TTL: &str = "30d";
pub(super) const DEFAULT_SESSION_TTL: &str = "7d";
pub(super) const DEFAULT_RECHECK_INTERVAL: &str = "5m";
pub(super) const DEFAULT_OUTAGE_GRACE: &str = "1h";

fn owned(s: &str) -> String {
    s.to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// Editors' schema reference; accepted and ignored.
    #[serde(rename = "$schema", default)]
    _schema: Option<IgnoredAny>,
    pub issuer: String,
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    pub plex: RawPlex,
    pub clients: Vec<RawClient>,
    #[serde(default)]
    pub exposed_secret_files: ExposedSecretFiles,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub theme: RawTheme,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub access: RawAccess,
    #[serde(default)]
    pub limits: RawLimits,
}

pub(super) fn default_listen() -> String {
    owned(DEFAULT_LISTEN)
}

pub(super) fn default_state_dir() -> String {
    owned(DEFAULT_STATE_DIR)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlex {
    pub server_id: String,
    pub server_name: Option<String>,
    #[serde(default = "default_product")]
    pub product: String,
    #[serde(default = "default_api_url")]
    pub api_url: String,
    #[serde(default = "default_app_url")]
    pub app_url: String,
    pub client_identifier: Option<String>,
    #[serde(default = "default_login_mode")]
    pub login_mode: LoginMode,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
}

fn default_product() -> String {
    owned(DEFAULT_PRODUCT)
}

fn default_api_url() -> String {
    owned(DEFAULT_API_URL)
}

fn default_app_url() -> String {
    owned(DEFAULT_APP_URL)
}

fn default_login_mode() -> LoginMode {
    LoginMode::Auto
}

fn default_request_timeout() -> String {
    owned(DEFAULT_REQUEST_TIMEOUT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub client_id: String,
    pub name: Option<String>,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<String>,
    pub client_secret_hash: Option<String>,
    #[serde(default)]
    pub public: bool,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub allow_insecure_redirects: bool,
    #[serde(default)]
    pub require_pkce: bool,
    #[serde(default = "default_access_token_ttl")]
    pub access_token_ttl: String,
    #[serde(default = "default_id_token_ttl")]
    pub id_token_ttl: String,
    #[serde(default)]
    pub refresh_tokens: bool,
    #[serde(default = "default_refresh_token_ttl")]
    pub refresh_token_ttl: String,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
}

fn default_access_token_ttl() -> String {
    owned(DEFAULT_ACCESS_TOKEN_TTL)
}

fn default_id_token_ttl() -> String {
    owned(DEFAULT_ID_TOKEN_TTL)
}

fn default_refresh_token_ttl() -> String {
    owned(DEFAULT_REFRESH_TOKEN_TTL)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub level: Option<String>,
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
}

fn default_log_format() -> LogFormat {
    LogFormat::Text
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: None,
            format: default_log_format(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTheme {
    pub dir: Option<String>,
    pub title: Option<String>,
    pub logo: Option<String>,
    pub background: Option<String>,
    pub accent: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSession {
    #[serde(default = "default_session_ttl")]
    pub ttl: String,
}

impl Default for RawSession {
    fn default() -> Self {
        RawSession {
            ttl: default_session_ttl(),
        }
    }
}

fn default_session_ttl() -> String {
    owned(DEFAULT_SESSION_TTL)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccess {
    #[serde(default = "default_recheck_interval")]
    pub recheck_interval: String,
    #[serde(default = "default_outage_grace")]
    pub outage_grace: String,
}

impl Default for RawAccess {
    fn default() -> Self {
        RawAccess {
            recheck_interval: default_recheck_interval(),
            outage_grace: default_outage_grace(),
        }
    }
}

fn default_recheck_interval() -> String {
    owned(DEFAULT_RECHECK_INTERVAL)
}

fn default_outage_grace() -> String {
    owned(DEFAULT_OUTAGE_GRACE)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    #[serde(default = "default_login_rate")]
    pub login_requests_per_minute: u32,
    #[serde(default = "default_token_rate")]
    pub token_requests_per_minute: u32,
    #[serde(default = "default_new_logins")]
    pub new_logins_per_ip: u32,
    #[serde(default = "default_max_pending")]
    pub max_pending_logins: u32,
    #[serde(default = "default_trusted_proxies")]
    pub trusted_proxies: Vec<String>,
    #[serde(default = "default_client_ip_header")]
    pub client_ip_header: String,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            login_requests_per_minute: default_login_rate(),
            token_requests_per_minute: default_token_rate(),
            new_logins_per_ip: default_new_logins(),
            max_pending_logins: default_max_pending(),
            trusted_proxies: default_trusted_proxies(),
            client_ip_header: default_client_ip_header(),
        }
    }
}

fn default_login_rate() -> u32 {
    300
}

fn default_token_rate() -> u32 {
    600
}

fn default_new_logins() -> u32 {
    60
}

fn default_max_pending() -> u32 {
    10_000
}

fn default_trusted_proxies() -> Vec<String> {
    vec![owned("127.0.0.0/8"), owned("::1/128")]
}

fn default_client_ip_header() -> String {
    owned("X-Forwarded-For")
}

/// What a world-readable `client_secret_file` means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ExposedSecretFiles {
    #[default]
    Warn,
    Refuse,
}
