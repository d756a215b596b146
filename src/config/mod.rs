//! The configuration file: one JSON document, checked in four stages so every mistake is reported at once
//! with its JSON path: JSON syntax (with line and column, duplicate keys rejected), the embedded JSON Schema,
//! `deny_unknown_fields` serde structs, then semantic checks (URIs, secret files, cross-field rules).

mod check;
mod duration;
mod json;
mod raw;
mod schema;
mod secret;
mod uri;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use duration::parse_duration;
pub use schema::schema_json;
pub use secret::{Secret, hash_client_secret};

/// Environment variable systemd sets for `LoadCredential=`; relative `client_secret_file`s resolve against it.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";

#[derive(Debug, Clone)]
pub struct Config {
    /// Published exactly as written: relying parties compare it byte for byte.
    pub issuer: String,
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub plex: PlexSettings,
    pub clients: Vec<ClientSettings>,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    pub theme: ThemeSettings,
    pub session: SessionSettings,
    pub access: AccessSettings,
    pub limits: LimitsSettings,
    /// Accepted but risky settings, each prefixed with its JSON path; logged at start, printed by `check`.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PlexSettings {
    pub server_id: String,
    pub server_name: Option<String>,
    pub product: String,
    pub api_url: url::Url,
    pub app_url: url::Url,
    pub client_identifier: Option<String>,
    pub login_mode: LoginMode,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginMode {
    Auto,
    Popup,
    Redirect,
}

impl LoginMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginMode::Auto => "auto",
            LoginMode::Popup => "popup",
            LoginMode::Redirect => "redirect",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub client_id: String,
    pub name: Option<String>,
    pub auth: ClientAuth,
    /// Kept exactly as written: redirect URIs are compared as strings (RFC 6749 §3.1.2.3).
    pub redirect_uris: Vec<String>,
    pub allow_insecure_redirects: bool,
    /// Always true for public clients.
    pub require_pkce: bool,
    pub access_token_ttl: Duration,
    pub id_token_ttl: Duration,
    pub refresh_tokens: bool,
    pub refresh_token_ttl: Duration,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// From `client_secret` or the contents of `client_secret_file`.
    Secret(Secret),
    /// An argon2id PHC string, already checked to parse.
    SecretHash(String),
    Public,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: Option<String>,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct ThemeSettings {
    /// Resolved against the config file's directory; checked to be a directory.
    pub dir: Option<PathBuf>,
    pub title: Option<String>,
    /// An http(s) URL, or a path relative to `dir` (checked to exist).
    pub logo: Option<String>,
    pub background: Option<String>,
    pub accent: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct AccessSettings {
    pub recheck_interval: Duration,
    /// Zero disables the grace period.
    pub outage_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct LimitsSettings {
    pub login_requests_per_minute: u32,
    pub token_requests_per_minute: u32,
    pub new_logins_per_ip: u32,
    pub max_pending_logins: usize,
    pub trusted_proxies: Vec<IpNetwork>,
    pub client_ip_header: String,
}

/// An IP address range (`10.0.0.0/8`, `::1/128`; a bare address is a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl IpNetwork {
    pub fn parse(text: &str) -> Option<IpNetwork> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (
                a.parse::<std::net::IpAddr>().ok()?,
                Some(p.parse::<u8>().ok()?),
            ),
            None => (text.parse::<std::net::IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpNetwork { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// One problem in the configuration. `path` is a JSON Pointer (`/clients/0/redirect_uris/1`), `/` for the
/// document as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        let path = path.into();
        ConfigError {
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path
            },
            message: message.into(),
        }
    }
}

/// Every problem found, in the order found; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

struct Lines<'a>(&'a [ConfigError]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and checks the file at `path`. Relative paths inside it resolve against its directory, and
    /// `client_secret_file`s against `$CREDENTIALS_DIRECTORY` when that is set.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError::new(
                "/",
                format!(
                    "cannot read config file \"{}\" ({})",
                    path.display(),
                    secret::io_reason(&e)
                ),
            )])
        })?;
        let base_dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let credentials_dir = std::env::var_os(CREDENTIALS_DIRECTORY_ENV)
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from);
        Config::from_json(&text, base_dir, credentials_dir.as_deref())
    }

    /// Checks a configuration given as text. `base_dir` stands for the config file's directory.
    pub fn from_json(
        text: &str,
        base_dir: &Path,
        credentials_dir: Option<&Path>,
    ) -> Result<Config, ConfigErrors> {
        let mut value = json::parse(text).map_err(|e| ConfigErrors(vec![e]))?;
        let schema = schema::validate(&value);
        let context = check::Context {
            base_dir,
            credentials_dir,
        };
        if !schema.errors.is_empty() {
            // Report what the schema found plus what the semantic checks find in every part that still
            // reads, so fixing this batch does not surface a fresh one.
            for (object, key) in &schema.unknown_keys {
                json::remove_key(&mut value, object, key);
            }
            let mut errors = schema.errors;
            let more = check::check_parts(&value, &errors, &context);
            errors.extend(more);
            sort_for_reading(&mut errors);
            return Err(ConfigErrors(errors));
        }
        let raw: raw::RawConfig = serde_json::from_value(value).map_err(|e| {
            // Unreachable unless schema and structs disagree; still reported, never a panic.
            ConfigErrors(vec![ConfigError::new("/", e.to_string())])
        })?;
        check::resolve(raw, &context).map_err(|mut errors| {
            sort_for_reading(&mut errors);
            ConfigErrors(errors)
        })
    }
}

/// Top-level keys in the order the schema and the docs present them.
const KEY_ORDER: [&str; 12] = [
    "issuer",
    "listen",
    "state_dir",
    "plex",
    "clients",
    "exposed_secret_files",
    "log",
    "metrics",
    "theme",
    "session",
    "access",
    "limits",
];

/// Orders errors the way the file reads: by top-level key as documented, then array indexes numerically,
/// so each client's problems sit together whichever stage found them. The sort is stable, so problems at
/// one path keep the order they were found in.
fn sort_for_reading(errors: &mut [ConfigError]) {
    fn key(path: &str) -> (usize, Vec<Result<u64, &str>>) {
        let mut tokens = path.split('/').filter(|t| !t.is_empty());
        let rank = match tokens.clone().next() {
            None => 0,
            Some(top) => KEY_ORDER
                .iter()
                .position(|k| *k == top)
                .map_or(KEY_ORDER.len() + 1, |i| i + 1),
        };
        let rest = tokens
            .by_ref()
            .map(|t| t.parse::<u64>().map_err(|_| t))
            .collect();
        (rank, rest)
    }
    errors.sort_by(|a, b| key(&a.path).cmp(&key(&b.path)));
}

#[cfg(test)]
pub(crate) mod tests;
