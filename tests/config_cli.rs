//! The real binary's command line: `check`, `schema`, `hash-secret`, `--help`, and `serve` refusing a bad
//! config or starting with the shipped example.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const EXAMPLE_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.json");

/// The binary with the environment variables it reads cleared, so the caller's shell cannot leak in.
fn plex_oidc() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plex-oidc"));
    command
        .env_remove("PLEX_OIDC_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory under the system temp dir, unique per test and removed afterwards.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("plex-oidc-it-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn valid_config() -> Value {
    json!({
        "issuer": "https://auth.example.com",
        "plex": { "server_id": "0123456789abcdef0123456789abcdef01234567" },
        "clients": [{
            "client_id": "grafana",
            "client_secret": "integration-test-secret-0123456789abcdef",
            "redirect_uris": ["https://grafana.example.com/login/generic_oauth"]
        }]
    })
}

/// Runs `check` on `config` written to a fresh file.
fn check(name: &str, config: &Value) -> Output {
    let dir = TempDir::new(name);
    let path = dir.write(
        "config.json",
        &serde_json::to_string_pretty(config).unwrap(),
    );
    run(plex_oidc().arg("check").arg("--config").arg(&path))
}

/// The error lines of a failed `check` (without the heading), after asserting exit status 2.
fn rejected(name: &str, config: &Value) -> Vec<String> {
    let output = check(name, config);
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "stdout: {}\nstderr: {stderr}",
        text(&output.stdout)
    );
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    let mut lines = stderr.lines();
    let heading = lines.next().unwrap_or_default();
    assert!(heading.ends_with(" in the configuration"), "{stderr}");
    lines.map(str::to_owned).collect()
}

fn assert_line_starting(lines: &[String], prefix: &str) {
    assert!(
        lines.iter().any(|l| l.starts_with(prefix)),
        "no line starts with {prefix:?} in {lines:#?}"
    );
}

#[test]
fn check_accepts_the_shipped_example_config() {
    let output = run(plex_oidc().args(["check", "--config", EXAMPLE_CONFIG]));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "config OK\n");
    assert_eq!(
        text(&output.stderr),
        "",
        "the example should not need warnings"
    );
}

#[test]
fn check_prints_warnings_on_stderr_and_still_succeeds() {
    let mut config = valid_config();
    config["clients"][0]["client_secret"] = json!("short");
    let output = check("warning", &config);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(text(&output.stdout), "config OK\n");
    assert!(
        text(&output.stderr)
            .starts_with("warning: /clients/0/client_secret: is shorter than 16 characters")
    );
}

#[test]
fn check_rejects_an_issuer_with_plain_http_on_a_lan_host() {
    let mut config = valid_config();
    config["issuer"] = json!("http://auth.lan");
    let lines = rejected("issuer", &config);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_line_starting(
        &lines,
        "/issuer: \"http://auth.lan\" uses plain http on a non-loopback host",
    );
}

#[test]
fn check_rejects_a_plain_http_redirect_on_a_lan_host_and_says_how_to_allow_it() {
    let mut config = valid_config();
    config["clients"][0]["redirect_uris"] =
        json!(["https://grafana.example.com/cb", "http://grafana.lan/cb"]);
    assert_eq!(
        rejected("lan-redirect", &config),
        [
            "/clients/0/redirect_uris/1: \"http://grafana.lan/cb\" uses plain http on a non-loopback host \
          (set \"allow_insecure_redirects\": true on this client to allow it)"
        ]
    );
}

#[test]
fn check_rejects_a_javascript_redirect() {
    let mut config = valid_config();
    config["clients"][0]["redirect_uris"] = json!(["javascript:alert(document.cookie)"]);
    let lines = rejected("javascript", &config);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_line_starting(
        &lines,
        "/clients/0/redirect_uris/0: \"javascript:alert(document.cookie)\" uses the \"javascript:\" scheme",
    );
}

#[test]
fn check_rejects_a_redirect_with_a_fragment() {
    let mut config = valid_config();
    config["clients"][0]["redirect_uris"] = json!(["https://grafana.example.com/cb#done"]);
    let lines = rejected("fragment", &config);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_line_starting(
        &lines,
        "/clients/0/redirect_uris/0: \"https://grafana.example.com/cb#done\" has a fragment",
    );
}

#[test]
fn check_rejects_a_missing_secret_file_naming_it_and_how_to_create_it() {
    let mut config = valid_config();
    let client = config["clients"][0].as_object_mut().unwrap();
    client.remove("client_secret");
    client.insert(
        "client_secret_file".into(),
        json!("/nonexistent-plex-oidc-dir/grafana"),
    );
    let lines = rejected("missing-secret", &config);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_line_starting(
        &lines,
        "/clients/0/client_secret_file: cannot read \"/nonexistent-plex-oidc-dir/grafana\" (No such file or directory). \
         Create it with: plex-oidc hash-secret --generate --output /nonexistent-plex-oidc-dir/grafana",
    );
}

#[test]
fn check_rejects_a_client_with_two_secrets() {
    let mut config = valid_config();
    config["clients"][0]["client_secret_file"] = json!("grafana.secret");
    assert_eq!(
        rejected("two-secrets", &config),
        [
            "/clients/0: give exactly one of client_secret, client_secret_file, client_secret_hash or \"public\": true \
          (found: client_secret, client_secret_file)"
        ]
    );
}

#[test]
fn check_rejects_an_unknown_key_at_its_path() {
    let mut config = valid_config();
    config["clients"][0]["redirect_uri"] = json!("https://grafana.example.com/cb");
    assert_eq!(
        rejected("unknown-key", &config),
        ["/clients/0/redirect_uri: unknown key \"redirect_uri\" (did you mean \"redirect_uris\"?)"]
    );
}

#[test]
fn check_rejects_a_value_of_the_wrong_type() {
    let mut config = valid_config();
    config["clients"][0]["require_pkce"] = json!("yes");
    assert_eq!(
        rejected("wrong-type", &config),
        ["/clients/0/require_pkce: expected a boolean, found a string (\"yes\")"]
    );
}

#[test]
fn check_reports_many_errors_at_once() {
    let mut config = valid_config();
    config["issuer"] = json!("https://auth.example.com/?x=1");
    config["listen"] = json!(8080);
    config["plex"]["login_mode"] = json!("window");
    config["clients"][0]["redirect_uris"] = json!(["http://grafana.lan/cb", "data:text/html,x"]);
    config["clients"][0]["access_token_ttl"] = json!("1 hour");
    let lines = rejected("many", &config);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert_line_starting(&lines, "/issuer: ");
    assert_line_starting(&lines, "/listen: expected a string");
    assert_line_starting(&lines, "/plex/login_mode: \"window\" is not one of");
    assert_line_starting(&lines, "/clients/0/redirect_uris/0: ");
    assert_line_starting(&lines, "/clients/0/redirect_uris/1: ");
    assert_line_starting(
        &lines,
        "/clients/0/access_token_ttl: \"1 hour\" is not a duration",
    );
    let output = check("many-heading", &config);
    assert!(
        text(&output.stderr)
            .lines()
            .next()
            .unwrap()
            .ends_with("config.json: 6 errors in the configuration")
    );
}

#[test]
fn check_reports_a_json_syntax_error_with_line_and_column() {
    let dir = TempDir::new("syntax");
    let path = dir.write(
        "config.json",
        "{\n  \"issuer\": \"https://a.example.com\",\n}\n",
    );
    let output = run(plex_oidc().arg("check").arg("-c").arg(&path));
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("/: not valid JSON: trailing comma at line 3 column 1"),
        "{stderr}"
    );
}

#[test]
fn check_of_a_missing_file_names_it() {
    let output = run(plex_oidc().args([
        "check",
        "--config",
        "/nonexistent-plex-oidc-dir/config.json",
    ]));
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains(
        "/: cannot read config file \"/nonexistent-plex-oidc-dir/config.json\" (No such file or directory)"
    ));
}

#[test]
fn relative_secret_files_are_read_from_the_credentials_directory_when_systemd_sets_it() {
    let config_dir = TempDir::new("credentials-config");
    let credentials = TempDir::new("credentials");
    credentials.write("grafana", "from-credentials-directory-0123456789\n");
    let mut config = valid_config();
    let client = config["clients"][0].as_object_mut().unwrap();
    client.remove("client_secret");
    client.insert("client_secret_file".into(), json!("grafana"));
    let path = config_dir.write("config.json", &config.to_string());

    let with_credentials = run(plex_oidc()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env("CREDENTIALS_DIRECTORY", credentials.path()));
    assert_eq!(
        with_credentials.status.code(),
        Some(0),
        "{}",
        text(&with_credentials.stderr)
    );

    let without = run(plex_oidc().arg("check").arg("--config").arg(&path));
    assert_eq!(without.status.code(), Some(2));
    assert!(
        text(&without.stderr).contains(&config_dir.path().join("grafana").display().to_string())
    );
}

#[test]
fn the_config_environment_variable_stands_in_for_the_flag() {
    let output = run(plex_oidc()
        .arg("check")
        .env("PLEX_OIDC_CONFIG", EXAMPLE_CONFIG));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "config OK\n");

    let output = run(plex_oidc()
        .arg("check")
        .env("PLEX_OIDC_CONFIG", "/nonexistent-plex-oidc-dir/c.json"));
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("/nonexistent-plex-oidc-dir/c.json"));
}

#[test]
fn a_missing_config_argument_is_a_usage_error_naming_the_environment_variable() {
    let output = run(plex_oidc().arg("check"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("--config <FILE>"),
        "{}",
        text(&output.stderr)
    );
    let help = run(plex_oidc().args(["check", "--help"]));
    assert!(
        text(&help.stdout).contains("[env: PLEX_OIDC_CONFIG="),
        "{}",
        text(&help.stdout)
    );
}

#[test]
fn schema_prints_the_json_schema() {
    let output = run(plex_oidc().arg("schema"));
    assert_eq!(output.status.code(), Some(0));
    let schema: Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(
        schema["$schema"],
        json!("https://json-schema.org/draft/2020-12/schema")
    );
    assert_eq!(schema["required"], json!(["issuer", "plex", "clients"]));
    let on_disk: Value =
        serde_json::from_str(include_str!("../schema/config.schema.json")).unwrap();
    assert_eq!(schema, on_disk);
}

#[test]
fn every_command_has_help() {
    for command in [
        &["--help"][..],
        &["serve", "--help"],
        &["check", "--help"],
        &["schema", "--help"],
        &["hash-secret", "--help"],
    ] {
        let output = run(plex_oidc().args(command));
        assert_eq!(output.status.code(), Some(0), "{command:?}");
        let usage = match command {
            [_] => "Usage: plex-oidc <COMMAND>".to_owned(),
            [name, _] => format!("Usage: plex-oidc {name}"),
            _ => unreachable!(),
        };
        assert!(
            text(&output.stdout).contains(&usage),
            "{command:?}: {}",
            text(&output.stdout)
        );
    }
}

fn verifies(secret: &str, phc: &str) -> bool {
    use argon2::PasswordVerifier as _;
    let parsed = argon2::PasswordHash::new(phc).expect("a PHC string");
    parsed.algorithm.as_str() == "argon2id"
        && argon2::Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok()
}

#[test]
fn hash_secret_hashes_stdin_into_an_argon2id_phc_string_that_verifies() {
    let mut child = plex_oidc()
        .arg("hash-secret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"my-client-secret\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let phc = text(&output.stdout);
    let phc = phc.trim_end();
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
    assert!(verifies("my-client-secret", phc));
    assert!(!verifies("another-secret", phc));
}

#[test]
fn hash_secret_generate_prints_a_secret_and_a_hash_that_check_accepts() {
    let output = run(plex_oidc().args(["hash-secret", "--generate"]));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let mut lines = stdout.lines();
    let secret = lines
        .next()
        .and_then(|l| l.strip_prefix("client_secret: "))
        .unwrap();
    let phc = lines
        .next()
        .and_then(|l| l.strip_prefix("client_secret_hash: "))
        .unwrap();
    assert_eq!(secret.len(), 43);
    assert!(verifies(secret, phc));

    let mut config = valid_config();
    let client = config["clients"][0].as_object_mut().unwrap();
    client.remove("client_secret");
    client.insert("client_secret_hash".into(), json!(phc));
    let output = check("generated-hash", &config);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn serve_refuses_an_invalid_config_with_status_2_listing_every_error() {
    let mut config = valid_config();
    config["issuer"] = json!("auth.example.com");
    config["clients"][0]["redirect_uris"] = json!(["javascript:x"]);
    let dir = TempDir::new("serve-invalid");
    let path = dir.write("config.json", &config.to_string());
    let output = run(plex_oidc().arg("serve").arg("--config").arg(&path));
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("\n/issuer: \"auth.example.com\" is not an absolute URL"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\n/clients/0/redirect_uris/0: \"javascript:x\""),
        "{stderr}"
    );
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn serve_starts_with_the_shipped_example_config() {
    let dir = TempDir::new("serve-example");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(EXAMPLE_CONFIG).unwrap()).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // Only what a second copy on this machine must change: where it listens and keeps state.
    config["listen"] = json!(addr.to_string());
    config["state_dir"] = json!(dir.path().join("state"));
    config.as_object_mut().unwrap().remove("$schema");
    let path = dir.write("config.json", &config.to_string());
    let mut server = Server(
        plex_oidc()
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("serve exited early with {status}");
        }
        match http_get(addr, "/.well-known/openid-configuration") {
            Ok(response) => break response,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("serve did not answer within 30 s: {e}"),
        }
    };
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("\"issuer\":\"http://localhost:8080\""),
        "{response}"
    );
}
