//! Semantic checks: what the schema cannot say (URI rules, readable secret files, unique client ids), and
//! the conversion of raw strings into typed settings. Every problem is collected; nothing stops at the
//! first one.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::raw::{
    ExposedSecretFiles, RawAccess, RawClient, RawConfig, RawLimits, RawLog, RawMetrics, RawPlex,
    RawSession, RawTheme,
};
use super::schema::secret_alternatives_message;
use super::secret::{self, SHORT_SECRET_CHARS, io_reason};
use super::uri::{self, UriUse, Verdict};
use super::{
    AccessSettings, ClientAuth, ClientSettings, Config, ConfigError, IpNetwork, LimitsSettings,
    LogSettings, MetricsSettings, PlexSettings, SessionSettings, ThemeSettings, parse_duration,
};

pub(super) struct Context<'a> {
    pub base_dir: &'a Path,
    pub credentials_dir: Option<&'a Path>,
}

/// Turns a schema-valid document into a `Config`, or every semantic problem in it.
pub(super) fn resolve(raw: RawConfig, context: &Context<'_>) -> Result<Config, Vec<ConfigError>> {
    let mut c = Checker::new(context);
    c.refuse_exposed_secrets = raw.exposed_secret_files == ExposedSecretFiles::Refuse;
    let issuer = c.issuer(&raw.issuer);
    let listen = c.socket("/listen", &raw.listen);
    let state_dir = c.state_dir(&raw.state_dir);
    let plex = c.plex(&raw.plex);
    let clients: Vec<Option<ClientSettings>> = raw
        .clients
        .iter()
        .enumerate()
        .map(|(i, client)| c.client(i, client))
        .collect();
    c.unique_client_ids(
        raw.clients
            .iter()
            .map(|client| client.client_id.as_str())
            .enumerate(),
    );
    let log = c.log(&raw.log);
    let metrics = c.metrics(&raw.metrics, listen);
    let theme = c.theme(&raw.theme);
    let session = c.session(&raw.session);
    let access = c.access(&raw.access);
    let limits = c.limits(&raw.limits);

    let built = (|| {
        Some(Config {
            issuer: issuer?,
            listen: listen?,
            state_dir: state_dir?,
            plex: plex?,
            clients: clients.into_iter().collect::<Option<Vec<_>>>()?,
            log: log?,
            metrics: metrics?,
            theme: theme?,
            session: session?,
            access: access?,
            limits: limits?,
            warnings: Vec::new(),
        })
    })();
    match built {
        Some(mut config) if c.errors.is_empty() => {
            config.warnings = c.warnings;
            Ok(config)
        }
        _ if c.errors.is_empty() => Err(vec![ConfigError::new(
            "/",
            "internal error: a setting was rejected without a reason",
        )]),
        _ => Err(c.errors),
    }
}

/// Runs the semantic checks on every part of a schema-invalid document that still deserializes (unknown
/// keys already removed), so the operator sees all problems in one run. A semantic error at a path the
/// schema already faulted is dropped: one message per path, the schema's.
pub(super) fn check_parts(
    document: &Value,
    schema_errors: &[ConfigError],
    context: &Context<'_>,
) -> Vec<ConfigError> {
    let Some(root) = document.as_object() else {
        return Vec::new();
    };
    fn part<T: DeserializeOwned>(root: &serde_json::Map<String, Value>, key: &str) -> Option<T> {
        root.get(key).and_then(|v| T::deserialize(v).ok())
    }

    let mut c = Checker::new(context);
    c.refuse_exposed_secrets = part::<ExposedSecretFiles>(root, "exposed_secret_files")
        == Some(ExposedSecretFiles::Refuse);
    if let Some(issuer) = part::<String>(root, "issuer") {
        c.issuer(&issuer);
    }
    let listen = part::<String>(root, "listen").and_then(|address| c.socket("/listen", &address));
    if let Some(dir) = part::<String>(root, "state_dir") {
        c.state_dir(&dir);
    }
    if let Some(plex) = part::<RawPlex>(root, "plex") {
        c.plex(&plex);
    }
    if let Some(Value::Array(clients)) = root.get("clients") {
        let mut ids = Vec::new();
        for (i, client) in clients.iter().enumerate() {
            if let Ok(client) = RawClient::deserialize(client) {
                c.client(i, &client);
                ids.push((i, client.client_id));
            }
        }
        c.unique_client_ids(ids.iter().map(|(i, id)| (*i, id.as_str())));
    }
    if let Some(log) = part::<RawLog>(root, "log") {
        c.log(&log);
    }
    if let Some(metrics) = part::<RawMetrics>(root, "metrics") {
        c.metrics(&metrics, listen);
    }
    if let Some(theme) = part::<RawTheme>(root, "theme") {
        c.theme(&theme);
    }
    if let Some(session) = part::<RawSession>(root, "session") {
        c.session(&session);
    }
    if let Some(access) = part::<RawAccess>(root, "access") {
        c.access(&access);
    }
    if let Some(limits) = part::<RawLimits>(root, "limits") {
        c.limits(&limits);
    }
    c.errors
        .retain(|e| !schema_errors.iter().any(|s| s.path == e.path));
    c.errors
}

struct Checker<'a> {
    context: &'a Context<'a>,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    /// `"exposed_secret_files": "refuse"`: a world-readable secret file is an error, not a warning.
    refuse_exposed_secrets: bool,
}

impl<'a> Checker<'a> {
    fn new(context: &'a Context<'a>) -> Self {
        Checker {
            context,
            errors: Vec::new(),
            warnings: Vec::new(),
            refuse_exposed_secrets: false,
        }
    }

    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn warn(&mut self, path: &str, message: &str) {
        self.warnings.push(format!("{path}: {message}"));
    }

    fn ok<T>(&mut self, path: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.error(path, message)).ok()
    }

    fn issuer(&mut self, issuer: &str) -> Option<String> {
        self.ok(
            "/issuer",
            uri::check_issuer(issuer).map(|()| issuer.to_owned()),
        )
    }

    fn socket(&mut self, path: &str, address: &str) -> Option<SocketAddr> {
        let parsed = address.parse::<SocketAddr>().map_err(|_| {
            format!("\"{address}\" is not an IP address and port like \"0.0.0.0:8080\" or \"[::1]:8080\"")
        });
        self.ok(path, parsed)
    }

    fn not_blank(&mut self, path: &str, value: &str) -> Option<String> {
        if value.trim().is_empty() {
            self.error(path, "must not be empty");
            return None;
        }
        Some(value.to_owned())
    }

    fn duration(&mut self, path: &str, text: &str, zero_allowed: bool) -> Option<Duration> {
        let duration = self.ok(path, parse_duration(text))?;
        if duration.is_zero() && !zero_allowed {
            self.error(path, format!("\"{text}\" must be longer than zero"));
            return None;
        }
        Some(duration)
    }

    fn state_dir(&mut self, dir: &str) -> Option<PathBuf> {
        self.not_blank("/state_dir", dir).map(PathBuf::from)
    }

    fn plex(&mut self, raw: &RawPlex) -> Option<PlexSettings> {
        let server_id = self.not_blank("/plex/server_id", &raw.server_id);
        if let Some(id) = &server_id
            && !(id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            self.warn(
                "/plex/server_id",
                &format!(
                    "\"{id}\" does not look like a machineIdentifier (40 hexadecimal characters); \
                     the server's http://HOST:32400/identity shows it"
                ),
            );
        }
        let product = self.not_blank("/plex/product", &raw.product);
        let api_url = self.ok("/plex/api_url", uri::check_http_url(&raw.api_url));
        let app_url = self.ok("/plex/app_url", uri::check_http_url(&raw.app_url));
        let request_timeout = self.duration("/plex/request_timeout", &raw.request_timeout, false);
        Some(PlexSettings {
            server_id: server_id?,
            server_name: raw.server_name.clone(),
            product: product?,
            api_url: api_url?,
            app_url: app_url?,
            client_identifier: raw.client_identifier.clone(),
            login_mode: raw.login_mode,
            request_timeout: request_timeout?,
        })
    }

    fn client(&mut self, index: usize, raw: &RawClient) -> Option<ClientSettings> {
        let path = format!("/clients/{index}");
        let auth = self.client_auth(&path, raw);
        let redirect_uris = self.uris(
            &format!("{path}/redirect_uris"),
            &raw.redirect_uris,
            raw.allow_insecure_redirects,
        );
        if raw.redirect_uris.is_empty() {
            self.error(
                &format!("{path}/redirect_uris"),
                "must list at least one entry",
            );
        }
        let post_logout_redirect_uris = self.uris(
            &format!("{path}/post_logout_redirect_uris"),
            &raw.post_logout_redirect_uris,
            raw.allow_insecure_redirects,
        );
        let backchannel_ok = match &raw.backchannel_logout_uri {
            Some(uri) => self.uri(
                &format!("{path}/backchannel_logout_uri"),
                uri,
                raw.allow_insecure_redirects,
                UriUse::Backchannel,
            ),
            None => true,
        };
        let access_token_ttl = self.duration(
            &format!("{path}/access_token_ttl"),
            &raw.access_token_ttl,
            false,
        );
        let id_token_ttl = self.duration(&format!("{path}/id_token_ttl"), &raw.id_token_ttl, false);
        let refresh_token_ttl = self.duration(
            &format!("{path}/refresh_token_ttl"),
            &raw.refresh_token_ttl,
            false,
        );
        let auth = auth?;
        let public = matches!(auth, ClientAuth::Public);
        backchannel_ok.then_some(())?;
        Some(ClientSettings {
            client_id: raw.client_id.clone(),
            name: raw.name.clone(),
            auth,
            redirect_uris: redirect_uris?,
            allow_insecure_redirects: raw.allow_insecure_redirects,
            // A public client cannot prove who it is; PKCE is all that binds the code to it.
            require_pkce: raw.require_pkce || public,
            access_token_ttl: access_token_ttl?,
            id_token_ttl: id_token_ttl?,
            refresh_tokens: raw.refresh_tokens,
            refresh_token_ttl: refresh_token_ttl?,
            post_logout_redirect_uris: post_logout_redirect_uris?,
            backchannel_logout_uri: raw.backchannel_logout_uri.clone(),
        })
    }

    fn client_auth(&mut self, path: &str, raw: &RawClient) -> Option<ClientAuth> {
        let mut found = Vec::new();
        if raw.client_secret.is_some() {
            found.push("client_secret");
        }
        if raw.client_secret_file.is_some() {
            found.push("client_secret_file");
        }
        if raw.client_secret_hash.is_some() {
            found.push("client_secret_hash");
        }
        if raw.public {
            found.push("\"public\": true");
        }
        if found.len() != 1 {
            self.error(path, secret_alternatives_message(&found));
            return None;
        }
        if let Some(secret) = &raw.client_secret {
            let key = format!("{path}/client_secret");
            let length = secret.expose().chars().count();
            if length == 0 {
                self.error(&key, "must not be empty");
                return None;
            }
            if length < SHORT_SECRET_CHARS {
                self.warn(
                    &key,
                    &format!(
                        "is shorter than {SHORT_SECRET_CHARS} characters; make a strong one with: \
                         plex-oidc hash-secret --generate"
                    ),
                );
            }
            return Some(ClientAuth::Secret(secret.clone()));
        }
        if let Some(file) = &raw.client_secret_file {
            let key = format!("{path}/client_secret_file");
            let read =
                secret::read_secret_file(file, self.context.base_dir, self.context.credentials_dir);
            let read = self.ok(&key, read)?;
            if let Some(warning) = &read.warning {
                if self.refuse_exposed_secrets {
                    self.error(
                        &key,
                        format!(
                            "{warning}; refused because \"exposed_secret_files\" is \"refuse\""
                        ),
                    );
                    return None;
                }
                self.warn(&key, warning);
            }
            return Some(ClientAuth::Secret(read.secret));
        }
        if let Some(hash) = &raw.client_secret_hash {
            let key = format!("{path}/client_secret_hash");
            self.ok(&key, secret::check_secret_hash(hash))?;
            return Some(ClientAuth::SecretHash(hash.clone()));
        }
        Some(ClientAuth::Public)
    }

    fn uris(&mut self, path: &str, uris: &[String], allow_insecure: bool) -> Option<Vec<String>> {
        let mut all_ok = true;
        for (i, uri) in uris.iter().enumerate() {
            all_ok &= self.uri(&format!("{path}/{i}"), uri, allow_insecure, UriUse::Browser);
        }
        all_ok.then(|| uris.to_vec())
    }

    fn uri(&mut self, path: &str, uri: &str, allow_insecure: bool, usage: UriUse) -> bool {
        match uri::check_client_uri(uri, allow_insecure, usage) {
            Ok(Verdict::Ok) => true,
            Ok(Verdict::Insecure(warning)) => {
                self.warn(path, &warning);
                true
            }
            Err(message) => {
                self.error(path, message);
                false
            }
        }
    }

    fn unique_client_ids<'i>(&mut self, ids: impl Iterator<Item = (usize, &'i str)>) {
        let mut first_use: Vec<(usize, &str)> = Vec::new();
        for (i, id) in ids {
            match first_use.iter().find(|(_, seen)| *seen == id) {
                Some((first, _)) => self.error(
                    &format!("/clients/{i}/client_id"),
                    format!("\"{id}\" is already the client_id of /clients/{first}"),
                ),
                None => first_use.push((i, id)),
            }
        }
    }

    fn log(&mut self, raw: &RawLog) -> Option<LogSettings> {
        if let Some(level) = &raw.level {
            let parsed = tracing_subscriber::EnvFilter::try_new(level)
                .map(|_| ())
                .map_err(|e| format!("\"{level}\" is not a log filter such as \"info\" or \"info,plex_oidc=debug\" ({e})"));
            self.ok("/log/level", parsed)?;
        }
        Some(LogSettings {
            level: raw.level.clone(),
            format: raw.format,
        })
    }

    fn metrics(&mut self, raw: &RawMetrics, listen: Option<SocketAddr>) -> Option<MetricsSettings> {
        let Some(address) = &raw.listen else {
            return Some(MetricsSettings { listen: None });
        };
        let metrics = self.socket("/metrics/listen", address)?;
        if Some(metrics) == listen && metrics.port() != 0 {
            self.error(
                "/metrics/listen",
                format!("\"{address}\" is the address of /listen already"),
            );
            return None;
        }
        Some(MetricsSettings {
            listen: Some(metrics),
        })
    }

    fn theme(&mut self, raw: &RawTheme) -> Option<ThemeSettings> {
        // Relative to the config file, like secret files: both ship next to it.
        let dir = raw.dir.as_ref().map(|dir| self.context.base_dir.join(dir));
        let dir_ok = match &dir {
            Some(dir) => self.theme_dir(dir),
            None => true,
        };
        let logo_ok = match &raw.logo {
            // A logo inside a broken directory cannot be checked; the directory error says enough.
            Some(logo) if dir_ok => self.logo(logo, dir.as_deref()),
            _ => true,
        };
        (dir_ok && logo_ok).then(|| ThemeSettings {
            dir,
            title: raw.title.clone(),
            logo: raw.logo.clone(),
            background: raw.background.clone(),
            accent: raw.accent.clone(),
        })
    }

    fn theme_dir(&mut self, dir: &Path) -> bool {
        let shown = dir.display();
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => true,
            Ok(_) => {
                self.error("/theme/dir", format!("\"{shown}\" is not a directory"));
                false
            }
            Err(e) => {
                self.error(
                    "/theme/dir",
                    format!("cannot read \"{shown}\" ({})", io_reason(&e)),
                );
                false
            }
        }
    }

    fn logo(&mut self, logo: &str, dir: Option<&Path>) -> bool {
        const PATH: &str = "/theme/logo";
        // An image in an <img> cannot run script, so an inline image is as safe as a URL.
        if logo.starts_with("data:image/") {
            return true;
        }
        if url::Url::parse(logo).is_ok() {
            return self.ok(PATH, uri::check_http_url(logo)).is_some();
        }
        let relative = Path::new(logo);
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            self.error(
                PATH,
                format!("\"{logo}\" must be an https URL or a path inside theme.dir (no \"..\", not absolute)"),
            );
            return false;
        }
        let Some(dir) = dir else {
            self.error(
                PATH,
                format!("\"{logo}\" is a file path, which needs \"dir\" in theme"),
            );
            return false;
        };
        let file = dir.join(relative);
        if !file.is_file() {
            self.error(
                PATH,
                format!("\"{}\" is not a readable file", file.display()),
            );
            return false;
        }
        true
    }

    fn session(&mut self, raw: &RawSession) -> Option<SessionSettings> {
        Some(SessionSettings {
            ttl: self.duration("/session/ttl", &raw.ttl, false)?,
        })
    }

    fn limits(&mut self, raw: &RawLimits) -> Option<LimitsSettings> {
        let mut trusted = Vec::new();
        let mut ok = true;
        for (i, text) in raw.trusted_proxies.iter().enumerate() {
            match IpNetwork::parse(text.trim()) {
                Some(net) => trusted.push(net),
                None => {
                    ok = false;
                    self.errors.push(ConfigError::new(
                        format!("/limits/trusted_proxies/{i}"),
                        format!(
                            "\"{text}\" is not an IP address or CIDR range (e.g. \"10.0.0.0/8\")"
                        ),
                    ));
                }
            }
        }
        let header = raw.client_ip_header.trim();
        if header.is_empty()
            || !header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            ok = false;
            self.errors.push(ConfigError::new(
                "/limits/client_ip_header",
                format!("\"{header}\" is not an HTTP header name"),
            ));
        }
        ok.then(|| LimitsSettings {
            login_requests_per_minute: raw.login_requests_per_minute.max(1),
            token_requests_per_minute: raw.token_requests_per_minute.max(1),
            new_logins_per_ip: raw.new_logins_per_ip.max(1),
            max_pending_logins: raw.max_pending_logins.max(100) as usize,
            trusted_proxies: trusted,
            client_ip_header: header.to_ascii_lowercase(),
        })
    }

    fn access(&mut self, raw: &RawAccess) -> Option<AccessSettings> {
        let recheck_interval =
            self.duration("/access/recheck_interval", &raw.recheck_interval, false);
        let outage_grace = self.duration("/access/outage_grace", &raw.outage_grace, true);
        Some(AccessSettings {
            recheck_interval: recheck_interval?,
            outage_grace: outage_grace?,
        })
    }
}
