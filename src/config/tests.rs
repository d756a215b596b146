//! Tests of the whole pipeline (text in, `Config` or errors out); each stage's own rules are tested beside it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::*;

/// A directory under the system temp dir, unique per test and removed afterwards.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("plex-oidc-unit-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file readable by everyone (mode 0644), whatever the umask.
    pub(crate) fn write(&self, name: &str, contents: &str) -> PathBuf {
        self.write_with_mode(name, contents, 0o644)
    }

    pub(crate) fn write_private(&self, name: &str, contents: &str) -> PathBuf {
        self.write_with_mode(name, contents, 0o600)
    }

    fn write_with_mode(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Made with `plex-oidc hash-secret` from "correct horse battery staple".
pub(crate) const SAMPLE_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$cYroU4a9XY31AiZTkFwL+Q$J2iLDcaQcnJo9jdgb9YdHb03GuSlayjI4Qm0z8O+bl8";

const SERVER_ID: &str = "0123456789abcdef0123456789abcdef01234567";
const STRONG_SECRET: &str = "example-secret-0123456789-abcdefghijklmnopq";

fn minimal() -> Value {
    json!({
        "issuer": "https://auth.example.com",
        "plex": { "server_id": SERVER_ID },
        "clients": [{
            "client_id": "grafana",
            "client_secret": STRONG_SECRET,
            "redirect_uris": ["https://grafana.example.com/login/generic_oauth"]
        }]
    })
}

fn load(config: &Value) -> Result<Config, ConfigErrors> {
    Config::from_json(
        &config.to_string(),
        Path::new("/nonexistent-config-dir"),
        None,
    )
}

fn load_in(config: &Value, dir: &Path, credentials: Option<&Path>) -> Result<Config, ConfigErrors> {
    Config::from_json(&config.to_string(), dir, credentials)
}

fn error_lines(config: &Value) -> Vec<String> {
    match load(config) {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

fn has(lines: &[String], expected: &str) -> bool {
    lines.iter().any(|line| line == expected)
}

#[test]
fn a_minimal_config_gets_every_default() {
    let config = load(&minimal()).unwrap();
    assert_eq!(config.issuer, "https://auth.example.com");
    assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(config.state_dir, Path::new("/var/lib/plex-oidc"));
    assert_eq!(config.plex.server_id, SERVER_ID);
    assert_eq!(config.plex.server_name, None);
    assert_eq!(config.plex.product, "plex-oidc");
    assert_eq!(config.plex.api_url.as_str(), "https://plex.tv/");
    assert_eq!(config.plex.app_url.as_str(), "https://app.plex.tv/");
    assert_eq!(config.plex.client_identifier, None);
    assert_eq!(config.plex.login_mode, LoginMode::Auto);
    assert_eq!(config.plex.request_timeout, Duration::from_secs(10));
    let client = &config.clients[0];
    assert_eq!(client.client_id, "grafana");
    assert!(matches!(&client.auth, ClientAuth::Secret(s) if s.expose() == STRONG_SECRET));
    assert!(!client.allow_insecure_redirects);
    assert!(!client.require_pkce);
    assert_eq!(client.access_token_ttl, Duration::from_secs(3600));
    assert_eq!(client.id_token_ttl, Duration::from_secs(3600));
    assert!(!client.refresh_tokens);
    assert_eq!(client.refresh_token_ttl, Duration::from_secs(30 * 86_400));
    assert!(client.post_logout_redirect_uris.is_empty());
    assert_eq!(client.backchannel_logout_uri, None);
    assert_eq!(config.log.level, None);
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.metrics.listen, None);
    assert!(
        config.theme.dir.is_none() && config.theme.logo.is_none() && config.theme.title.is_none()
    );
    assert_eq!(config.session.ttl, Duration::from_secs(7 * 86_400));
    assert_eq!(config.access.recheck_interval, Duration::from_secs(300));
    assert_eq!(config.access.outage_grace, Duration::from_secs(3600));
    assert_eq!(config.warnings, Vec::<String>::new());
}

/// Fills every absent key that has a `default` in the schema, recursively, the way an editor would.
fn apply_schema_defaults(instance: &mut Value, schema_node: &Value, schema: &Value) {
    let node = match schema_node.get("$ref").and_then(Value::as_str) {
        Some(reference) => schema.pointer(reference.trim_start_matches('#')).unwrap(),
        None => schema_node,
    };
    if let (Some(object), Some(properties)) = (
        instance.as_object_mut(),
        node.get("properties").and_then(Value::as_object),
    ) {
        for (key, property) in properties {
            if !object.contains_key(key) {
                let default = property.get("default").cloned().or_else(|| {
                    // Objects without their own default take their members' defaults.
                    let target = match property.get("$ref").and_then(Value::as_str) {
                        Some(r) => schema.pointer(r.trim_start_matches('#')).unwrap(),
                        None => property,
                    };
                    (target.get("type") == Some(&json!("object"))).then(|| json!({}))
                });
                if let Some(default) = default {
                    object.insert(key.clone(), default);
                }
            }
            if let Some(child) = object.get_mut(key) {
                apply_schema_defaults(child, property, schema);
            }
        }
    }
    if let (Some(items), Some(item_schema)) = (instance.as_array_mut(), node.get("items")) {
        for item in items {
            apply_schema_defaults(item, item_schema, schema);
        }
    }
}

#[test]
fn the_schema_defaults_are_the_defaults_the_program_applies() {
    let schema: Value = serde_json::from_str(schema_json()).unwrap();
    let mut explicit = minimal();
    apply_schema_defaults(&mut explicit, &schema, &schema);
    // Sanity: the walk really filled nested defaults.
    assert_eq!(explicit["plex"]["request_timeout"], json!("10s"));
    assert_eq!(explicit["clients"][0]["refresh_token_ttl"], json!("30d"));
    assert_eq!(explicit["access"]["outage_grace"], json!("1h"));
    let from_defaults = format!("{:?}", load(&minimal()).unwrap());
    let from_schema = format!("{:?}", load(&explicit).unwrap());
    assert_eq!(from_defaults, from_schema);
}

#[test]
fn a_config_using_every_key_is_accepted_by_schema_and_structs_alike() {
    let dir = TempDir::new("every-key");
    dir.write_private("secrets/abs", "file-secret-0123456789abcdef\n");
    dir.write("theme/logo.svg", "<svg/>");
    let config = json!({
        "$schema": "../schema/config.schema.json",
        "issuer": "https://auth.example.com/plex",
        "listen": "[::]:9000",
        "state_dir": "/srv/plex-oidc",
        "plex": {
            "server_id": SERVER_ID,
            "server_name": "Home",
            "product": "Example Auth",
            "api_url": "http://127.0.0.1:9999",
            "app_url": "http://127.0.0.1:9998/web",
            "client_identifier": "f3b1c6f8-2d3e-4b7a-9a63-0c5f5a1b2c3d",
            "login_mode": "redirect",
            "request_timeout": "1m30s"
        },
        "clients": [
            {
                "client_id": "grafana",
                "name": "Grafana",
                "client_secret": STRONG_SECRET,
                "redirect_uris": ["https://grafana.example.com/login/generic_oauth"],
                "allow_insecure_redirects": false,
                "require_pkce": true,
                "access_token_ttl": "15m",
                "id_token_ttl": "5m",
                "refresh_tokens": true,
                "refresh_token_ttl": "7d",
                "post_logout_redirect_uris": ["https://grafana.example.com/login"],
                "backchannel_logout_uri": "https://grafana.example.com/logout"
            },
            { "client_id": "abs", "client_secret_file": "secrets/abs", "redirect_uris": ["audiobookshelf://oauth"] },
            { "client_id": "vw", "client_secret_hash": SAMPLE_HASH, "redirect_uris": ["https://vw.example.com/identity/connect/oidc-signin"] },
            { "client_id": "immich-mobile", "public": true, "redirect_uris": ["app.immich:///oauth-callback"] }
        ],
        "log": { "level": "info,plex_oidc=debug", "format": "json" },
        "metrics": { "listen": "127.0.0.1:9100" },
        "theme": { "dir": "theme", "title": "Sign in", "logo": "logo.svg", "background": "#1f2937", "accent": "rgb(229 160 13)" },
        "session": { "ttl": "12h" },
        "access": { "recheck_interval": "10m", "outage_grace": "0s" }
    });
    let config = load_in(&config, dir.path(), None).unwrap();
    assert_eq!(config.issuer, "https://auth.example.com/plex");
    assert_eq!(config.listen, "[::]:9000".parse().unwrap());
    assert_eq!(config.plex.login_mode, LoginMode::Redirect);
    assert_eq!(config.plex.request_timeout, Duration::from_secs(90));
    assert_eq!(config.plex.api_url.as_str(), "http://127.0.0.1:9999/");
    assert_eq!(config.clients.len(), 4);
    assert!(
        matches!(&config.clients[1].auth, ClientAuth::Secret(s) if s.expose() == "file-secret-0123456789abcdef")
    );
    assert!(matches!(&config.clients[2].auth, ClientAuth::SecretHash(h) if h == SAMPLE_HASH));
    assert!(matches!(config.clients[3].auth, ClientAuth::Public));
    assert!(
        config.clients[3].require_pkce,
        "public clients always require PKCE"
    );
    assert_eq!(
        config.clients[0].backchannel_logout_uri.as_deref(),
        Some("https://grafana.example.com/logout")
    );
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(
        config.metrics.listen,
        Some("127.0.0.1:9100".parse().unwrap())
    );
    assert_eq!(
        config.theme.dir.as_deref(),
        Some(dir.path().join("theme").as_path())
    );
    assert_eq!(config.theme.accent.as_deref(), Some("rgb(229 160 13)"));
    assert_eq!(config.session.ttl, Duration::from_secs(12 * 3600));
    assert_eq!(config.access.outage_grace, Duration::ZERO);
    assert_eq!(config.warnings, Vec::<String>::new());
}

#[test]
fn the_issuer_is_published_exactly_as_written() {
    for issuer in [
        "https://auth.example.com",
        "https://auth.example.com/",
        "https://Auth.Example.com/x/",
    ] {
        let mut config = minimal();
        config["issuer"] = json!(issuer);
        assert_eq!(load(&config).unwrap().issuer, issuer);
    }
}

#[test]
fn a_bad_issuer_is_reported_at_slash_issuer() {
    let mut config = minimal();
    config["issuer"] = json!("http://auth.lan");
    let lines = error_lines(&config);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("/issuer: \"http://auth.lan\" uses plain http"),
        "{lines:?}"
    );
}

#[test]
fn a_plain_http_redirect_on_a_lan_host_gives_the_documented_message() {
    let mut config = minimal();
    config["clients"][0]["redirect_uris"] =
        json!(["https://grafana.example.com/cb", "http://grafana.lan/cb"]);
    assert_eq!(
        error_lines(&config),
        [
            "/clients/0/redirect_uris/1: \"http://grafana.lan/cb\" uses plain http on a non-loopback host \
          (set \"allow_insecure_redirects\": true on this client to allow it)"
        ]
    );
}

#[test]
fn allowing_insecure_redirects_turns_the_error_into_a_warning_with_its_path() {
    let mut config = minimal();
    config["clients"][0]["redirect_uris"] = json!(["http://grafana.lan/cb"]);
    config["clients"][0]["post_logout_redirect_uris"] = json!(["http://grafana.lan/"]);
    config["clients"][0]["allow_insecure_redirects"] = json!(true);
    let config = load(&config).unwrap();
    assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
    assert!(
        config.warnings[0]
            .starts_with("/clients/0/redirect_uris/0: \"http://grafana.lan/cb\" uses plain http")
    );
    assert!(config.warnings[1].starts_with("/clients/0/post_logout_redirect_uris/0: "));
}

#[test]
fn post_logout_and_backchannel_uris_follow_the_redirect_rules() {
    let mut config = minimal();
    config["clients"][0]["post_logout_redirect_uris"] = json!(["javascript:alert(1)"]);
    config["clients"][0]["backchannel_logout_uri"] = json!("http://abs.lan/logout");
    let lines = error_lines(&config);
    assert!(
        has(
            &lines,
            "/clients/0/post_logout_redirect_uris/0: \"javascript:alert(1)\" uses the \"javascript:\" scheme, which is never allowed"
        ),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(
            "/clients/0/backchannel_logout_uri: \"http://abs.lan/logout\" uses plain http"
        )),
        "{lines:?}"
    );
}

#[test]
fn a_relative_secret_file_resolves_against_the_config_directory() {
    let dir = TempDir::new("config-dir");
    dir.write_private("grafana.secret", &format!("{STRONG_SECRET}\n"));
    let mut config = minimal();
    let client = config["clients"][0].as_object_mut().unwrap();
    client.remove("client_secret");
    client.insert("client_secret_file".into(), json!("grafana.secret"));
    let config = load_in(&config, dir.path(), None).unwrap();
    assert!(
        matches!(&config.clients[0].auth, ClientAuth::Secret(s) if s.expose() == STRONG_SECRET)
    );
}

#[test]
fn a_relative_secret_file_resolves_against_the_credentials_directory_when_given() {
    let config_dir = TempDir::new("config-dir-decoy");
    config_dir.write_private("grafana", "decoy-decoy-decoy-decoy");
    let credentials = TempDir::new("credentials");
    credentials.write_private("grafana", STRONG_SECRET);
    let mut config = minimal();
    let client = config["clients"][0].as_object_mut().unwrap();
    client.remove("client_secret");
    client.insert("client_secret_file".into(), json!("grafana"));
    let config = load_in(&config, config_dir.path(), Some(credentials.path())).unwrap();
    assert!(
        matches!(&config.clients[0].auth, ClientAuth::Secret(s) if s.expose() == STRONG_SECRET)
    );
}

#[test]
fn a_missing_secret_file_is_named_with_how_to_create_it() {
    let mut config = minimal();
    let client = config["clients"][0].as_object_mut().unwrap();
    client.remove("client_secret");
    client.insert(
        "client_secret_file".into(),
        json!("/nonexistent-dir/grafana"),
    );
    let lines = error_lines(&config);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "/clients/0/client_secret_file: cannot read \"/nonexistent-dir/grafana\" (No such file or directory). \
             Create it with: plex-oidc hash-secret --generate --output /nonexistent-dir/grafana"
        ),
        "{lines:?}"
    );
}

#[test]
fn a_world_readable_secret_file_is_accepted_with_a_warning() {
    let dir = TempDir::new("open-secret");
    dir.write("grafana", STRONG_SECRET);
    let mut config = minimal();
    let client = config["clients"][0].as_object_mut().unwrap();
    client.remove("client_secret");
    client.insert("client_secret_file".into(), json!("grafana"));
    let config = load_in(&config, dir.path(), None).unwrap();
    assert_eq!(config.warnings.len(), 1);
    assert!(
        config.warnings[0].starts_with("/clients/0/client_secret_file: "),
        "{:?}",
        config.warnings
    );
    assert!(
        config.warnings[0].contains("readable by every user"),
        "{:?}",
        config.warnings
    );
}

#[test]
fn a_world_readable_secret_file_is_refused_when_the_config_says_so() {
    let dir = TempDir::new("open-secret-refused");
    dir.write("grafana", STRONG_SECRET);
    let mut config = minimal();
    config["exposed_secret_files"] = json!("refuse");
    let client = config["clients"][0].as_object_mut().unwrap();
    client.remove("client_secret");
    client.insert("client_secret_file".into(), json!("grafana"));
    let errors = load_in(&config, dir.path(), None).unwrap_err();
    let text = errors.to_string();
    assert!(
        text.starts_with("/clients/0/client_secret_file: ") && text.contains("refused"),
        "{text}"
    );
}

#[test]
fn a_short_inline_secret_is_accepted_with_a_warning() {
    let mut config = minimal();
    config["clients"][0]["client_secret"] = json!("short");
    let config = load(&config).unwrap();
    assert_eq!(
        config.warnings,
        [
            "/clients/0/client_secret: is shorter than 16 characters; make a strong one with: plex-oidc hash-secret --generate"
        ]
    );
}

#[test]
fn an_invalid_secret_hash_is_an_error_at_its_key() {
    let mut config = minimal();
    let client = config["clients"][0].as_object_mut().unwrap();
    client.remove("client_secret");
    client.insert(
        "client_secret_hash".into(),
        json!("$2b$12$bcryptbcryptbcryptbcryptbcryptbcryptbcryptbcryptbcry"),
    );
    let lines = error_lines(&config);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("/clients/0/client_secret_hash: "),
        "{lines:?}"
    );
}

#[test]
fn a_public_client_requires_pkce_even_when_it_says_otherwise() {
    let mut config = minimal();
    config["clients"][0] = json!({
        "client_id": "immich-mobile", "public": true, "require_pkce": false,
        "redirect_uris": ["app.immich:///oauth-callback"]
    });
    let config = load(&config).unwrap();
    assert!(matches!(config.clients[0].auth, ClientAuth::Public));
    assert!(config.clients[0].require_pkce);
}

#[test]
fn a_secret_together_with_public_false_is_an_ordinary_confidential_client() {
    let mut config = minimal();
    config["clients"][0]["public"] = json!(false);
    let config = load(&config).unwrap();
    assert!(matches!(config.clients[0].auth, ClientAuth::Secret(_)));
}

#[test]
fn duplicate_client_ids_are_rejected_naming_the_first_use() {
    let mut config = minimal();
    let copy = config["clients"][0].clone();
    config["clients"]
        .as_array_mut()
        .unwrap()
        .push(json!({"client_id": "other", "public": true, "redirect_uris": ["app.x:/cb"]}));
    config["clients"].as_array_mut().unwrap().push(copy);
    assert_eq!(
        error_lines(&config),
        ["/clients/2/client_id: \"grafana\" is already the client_id of /clients/0"]
    );
}

#[test]
fn zero_durations_are_rejected_except_for_the_outage_grace() {
    let mut config = minimal();
    config["session"] = json!({ "ttl": "0s" });
    config["access"] = json!({ "recheck_interval": "0m", "outage_grace": "0s" });
    config["clients"][0]["access_token_ttl"] = json!("0h");
    assert_eq!(
        error_lines(&config),
        [
            "/clients/0/access_token_ttl: \"0h\" must be longer than zero",
            "/session/ttl: \"0s\" must be longer than zero",
            "/access/recheck_interval: \"0m\" must be longer than zero",
        ]
    );
}

#[test]
fn an_overflowing_duration_is_rejected() {
    let mut config = minimal();
    config["session"] = json!({ "ttl": "99999999999999999999d" });
    assert_eq!(
        error_lines(&config),
        ["/session/ttl: \"99999999999999999999d\" is too large"]
    );
}

#[test]
fn listen_addresses_must_be_ip_and_port() {
    let mut config = minimal();
    config["listen"] = json!("localhost:8080");
    config["metrics"] = json!({ "listen": "9100" });
    assert_eq!(
        error_lines(&config),
        [
            "/listen: \"localhost:8080\" is not an IP address and port like \"0.0.0.0:8080\" or \"[::1]:8080\"",
            "/metrics/listen: \"9100\" is not an IP address and port like \"0.0.0.0:8080\" or \"[::1]:8080\"",
        ]
    );
}

#[test]
fn metrics_cannot_share_the_main_listener() {
    let mut config = minimal();
    config["listen"] = json!("127.0.0.1:8080");
    config["metrics"] = json!({ "listen": "127.0.0.1:8080" });
    assert_eq!(
        error_lines(&config),
        ["/metrics/listen: \"127.0.0.1:8080\" is the address of /listen already"]
    );
}

#[test]
fn upstream_plex_urls_must_be_https_off_loopback() {
    let mut config = minimal();
    config["plex"]["api_url"] = json!("http://plex.lan");
    let lines = error_lines(&config);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("/plex/api_url: \"http://plex.lan\" uses plain http"),
        "{lines:?}"
    );
}

#[test]
fn a_server_id_that_is_not_a_machine_identifier_is_only_a_warning() {
    let mut config = minimal();
    config["plex"]["server_id"] = json!("My Plex Server");
    let config = load(&config).unwrap();
    assert_eq!(config.warnings.len(), 1);
    assert!(
        config.warnings[0].starts_with(
            "/plex/server_id: \"My Plex Server\" does not look like a machineIdentifier"
        )
    );
}

#[test]
fn an_invalid_log_filter_is_rejected() {
    let mut config = minimal();
    config["log"] = json!({ "level": "plex_oidc=loudest" });
    let lines = error_lines(&config);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("/log/level: \"plex_oidc=loudest\" is not a log filter"),
        "{lines:?}"
    );
}

#[test]
fn theme_paths_are_checked_against_the_theme_directory() {
    let dir = TempDir::new("theme");
    dir.write("theme/logo.png", "png");
    let with_theme = |theme: Value| {
        let mut config = minimal();
        config["theme"] = theme;
        load_in(&config, dir.path(), None)
    };
    assert!(with_theme(json!({ "dir": "theme", "logo": "logo.png" })).is_ok());
    assert!(with_theme(json!({ "logo": "https://cdn.example.com/logo.png" })).is_ok());
    let message = |theme: Value| with_theme(theme).unwrap_err().to_string();
    assert_eq!(
        message(json!({ "logo": "logo.png" })),
        "/theme/logo: \"logo.png\" is a file path, which needs \"dir\" in theme"
    );
    assert!(
        message(json!({ "dir": "theme", "logo": "../secret" })).starts_with(
            "/theme/logo: \"../secret\" must be an https URL or a path inside theme.dir"
        )
    );
    assert!(
        message(json!({ "dir": "theme", "logo": "missing.png" }))
            .ends_with("missing.png\" is not a readable file")
    );
    assert!(message(json!({ "dir": "nope" })).starts_with("/theme/dir: cannot read"));
    assert!(
        message(json!({ "logo": "javascript:alert(1)" }))
            .starts_with("/theme/logo: \"javascript:alert(1)\" uses \"javascript:\"")
    );
}

#[test]
fn schema_errors_and_semantic_errors_are_reported_together() {
    let mut config = minimal();
    config["issuer"] = json!("https://auth.example.com/#frag");
    config["unknown"] = json!(1);
    config["plex"]["request_timeout"] = json!(10);
    config["clients"][0]["redirect_uris"] = json!(["http://grafana.lan/cb"]);
    config["clients"][0]["access_token_ttl"] = json!("1 hour");
    config["clients"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "client_id": "x", "redirectURIs": [], "redirect_uris": ["javascript:x"] }));
    let lines = error_lines(&config);
    assert!(
        has(
            &lines,
            "/unknown: unknown key \"unknown\" (known keys: access, clients, exposed_secret_files, issuer, limits, listen, log, metrics, plex, session, state_dir, theme)"
        ),
        "{lines:?}"
    );
    assert!(
        has(
            &lines,
            "/plex/request_timeout: expected a string, found a number (10)"
        ),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("/issuer: \"https://auth.example.com/#frag\" has a fragment")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l
            .starts_with("/clients/0/redirect_uris/0: \"http://grafana.lan/cb\" uses plain http")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(
            "/clients/1/redirect_uris/0: \"javascript:x\" uses the \"javascript:\" scheme"
        )),
        "{lines:?}"
    );
    // The missing secret of /clients/1 is reported once, by the schema stage, not again by the semantic one.
    let secret_lines = lines
        .iter()
        .filter(|l| l.starts_with("/clients/1: give exactly one of"))
        .count();
    assert_eq!(secret_lines, 1, "{lines:?}");
    assert!(
        has(
            &lines,
            "/clients/0/access_token_ttl: \"1 hour\" is not a duration like \"90s\", \"15m\", \"1h30m\" or \"7d\""
        ),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("/clients/1/redirectURIs: unknown key")),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 8, "{lines:?}");
}

#[test]
fn a_json_syntax_error_is_one_error_with_line_and_column() {
    let errors = Config::from_json(
        "{\n  \"issuer\": \"x\"\n  \"plex\": {}\n}",
        Path::new("."),
        None,
    )
    .unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].path, "/");
    assert!(errors.0[0].message.contains("line 3 column 3"), "{errors}");
}

#[test]
fn a_duplicated_key_is_an_error() {
    let text = minimal().to_string().replacen(
        "\"issuer\"",
        "\"issuer\":\"https://a.example.com\",\"issuer\"",
        1,
    );
    let errors = Config::from_json(&text, Path::new("."), None).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].path, "/issuer");
}

#[test]
fn errors_are_sorted_as_the_file_reads_whichever_stage_found_them() {
    let mut errors: Vec<ConfigError> = [
        "/session/ttl",
        "/zzz",
        "/clients/10/client_id",
        "/clients/2",
        "/clients/2/redirect_uris/10",
        "/clients/2/redirect_uris/9",
        "/issuer",
        "/",
        "/plex/api_url",
        "/clients/2",
    ]
    .iter()
    .enumerate()
    .map(|(i, path)| ConfigError::new(*path, i.to_string()))
    .collect();
    sort_for_reading(&mut errors);
    let order: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        order,
        [
            "/: 7",
            "/issuer: 6",
            "/plex/api_url: 8",
            "/clients/2: 3",
            "/clients/2: 9",
            "/clients/2/redirect_uris/9: 5",
            "/clients/2/redirect_uris/10: 4",
            "/clients/10/client_id: 2",
            "/session/ttl: 0",
            "/zzz: 1",
        ]
    );
}

#[test]
fn errors_display_one_per_line_as_path_colon_message() {
    let errors = ConfigErrors(vec![
        ConfigError::new("", "root problem"),
        ConfigError::new("/issuer", "bad"),
    ]);
    assert_eq!(errors.to_string(), "/: root problem\n/issuer: bad");
}

#[test]
fn secrets_never_appear_in_debug_output_or_errors() {
    let mut config = minimal();
    config["issuer"] = json!("ftp://x");
    let errors = load(&config).unwrap_err();
    assert!(!format!("{errors:?}{errors}").contains(STRONG_SECRET));
    let config = load(&minimal()).unwrap();
    let debug = format!("{config:?}");
    assert!(debug.contains("Secret(***)"), "{debug}");
    assert!(!debug.contains(STRONG_SECRET), "{debug}");
}

#[test]
fn loading_a_missing_file_says_which_file() {
    let errors = Config::load(Path::new("/nonexistent-dir/config.json")).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "/: cannot read config file \"/nonexistent-dir/config.json\" (No such file or directory)"
    );
}

#[test]
fn loading_a_file_resolves_secret_files_next_to_it() {
    let dir = TempDir::new("load");
    dir.write_private("grafana.secret", STRONG_SECRET);
    let mut config = minimal();
    let client = config["clients"][0].as_object_mut().unwrap();
    client.remove("client_secret");
    client.insert("client_secret_file".into(), json!("grafana.secret"));
    let path = dir.write("config.json", &config.to_string());
    // Skipped where the environment points relative secret files elsewhere (systemd's LoadCredential).
    if std::env::var_os(CREDENTIALS_DIRECTORY_ENV).is_none() {
        let config = Config::load(&path).unwrap();
        assert!(
            matches!(&config.clients[0].auth, ClientAuth::Secret(s) if s.expose() == STRONG_SECRET)
        );
    }
}

#[test]
fn login_mode_names_match_the_config_spelling() {
    assert_eq!(LoginMode::Auto.as_str(), "auto");
    assert_eq!(LoginMode::Popup.as_str(), "popup");
    assert_eq!(LoginMode::Redirect.as_str(), "redirect");
}
