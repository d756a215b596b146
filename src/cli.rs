//! The command line. `serve` needs the async runtime and lives in main.rs; the other commands are plain
//! functions over reader and writers so tests can drive them.

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, ConfigErrors};
use crate::random::Random;

/// Exit status when the configuration is invalid (nothing was started).
pub const EXIT_CONFIG: u8 = 2;
/// Exit status for any other failure.
pub const EXIT_FAILURE: u8 = 1;

/// Environment variable that stands in for `--config`.
pub const CONFIG_ENV: &str = "PLEX_OIDC_CONFIG";

#[derive(Debug, Parser)]
#[command(
    name = "plex-oidc",
    version,
    about = "An OpenID Connect provider that signs people in with Plex and admits those your Plex Media Server is shared with"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the provider.
    ///
    /// The configuration is checked first; if it has errors they are all printed and the process exits
    /// with status 2 without starting anything.
    Serve(ServeArgs),
    /// Check a configuration file and exit.
    ///
    /// Prints "config OK" (and any warnings on stderr) with status 0, or every error as
    /// `JSON-path: message`, one per line, with status 2.
    Check(ConfigArgs),
    /// Serve every state of the sign-in page with sample data, for restyling (no Plex needed).
    ///
    /// Uses the config's theme (theme.dir, title, logo, colours); open the printed URL and edit the files
    /// in theme.dir, then reload (the files are read at start: restart preview to see changes).
    Preview(PreviewArgs),
    /// Print the JSON Schema of the configuration file.
    ///
    /// Point an editor at it (or at schema/config.schema.json) for completion and inline errors.
    Schema,
    /// Hash a client secret for "client_secret_hash", or generate a new secret.
    ///
    /// Without --generate the secret is read from stdin (one trailing newline is ignored) and its argon2id
    /// PHC string is printed. With --generate a random URL-safe secret (32 bytes) is made and both lines
    /// are printed, ready to paste.
    HashSecret(HashSecretArgs),
    /// Rotate or list the signing keys published in the JWKS.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new signing key: published from the next start, signing after --grace; the keys it
    /// replaces leave the JWKS --retire-after later.
    ///
    /// Restart plex-oidc afterwards so relying parties can fetch the new key before it signs. Run it as
    /// the service's user (or as root, which hands the new files to the owner of state_dir).
    Rotate(RotateArgs),
    /// List the signing keys and their state: published (not signing yet), active (signing), retiring
    /// (verifies only), retired.
    List(ConfigArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// How long the new key is published before it signs, so relying parties' JWKS caches learn it
    /// first.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = config::parse_duration)]
    pub grace: std::time::Duration,
    /// How long the replaced keys stay published after the new key signs; longer than the longest
    /// id_token_ttl, so every token they signed still verifies until it expires.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = config::parse_duration)]
    pub retire_after: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration file (JSON).
    #[arg(short, long, value_name = "FILE", env = CONFIG_ENV)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address to serve the preview on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Start even if the refresh-token store (state_dir/grants.jsonl) has damaged lines, dropping them.
    ///
    /// Without it a damaged store stops the start with the line number, so no token is lost silently.
    #[arg(long)]
    pub discard_corrupt_store: bool,
}

#[derive(Debug, Args)]
pub struct HashSecretArgs {
    /// Generate a new random secret instead of reading one from stdin.
    #[arg(long)]
    pub generate: bool,
    /// Write the generated secret to FILE (mode 0600; an existing file is never overwritten) instead of
    /// printing it; use FILE as "client_secret_file".
    #[arg(long, value_name = "FILE", requires = "generate")]
    pub output: Option<PathBuf>,
}

/// Bytes of entropy in a generated secret: 43 URL-safe characters, which need no escaping anywhere
/// (Cloudflare Access does not escape special characters) and read the same basic-encoded or not.
pub const GENERATED_SECRET_BYTES: usize = 32;

/// `plex-oidc check`.
pub fn check(path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match Config::load(path) {
        Ok(config) => {
            let printed = writeln!(out, "config OK").and_then(|()| {
                config
                    .warnings
                    .iter()
                    .try_for_each(|warning| writeln!(err, "warning: {warning}"))
            });
            if printed.is_ok() { 0 } else { EXIT_FAILURE }
        }
        Err(errors) => {
            report_config_errors(path, &errors, err);
            EXIT_CONFIG
        }
    }
}

/// Prints a heading naming the file, then one `path: message` line per error.
pub fn report_config_errors(path: &Path, errors: &ConfigErrors, err: &mut dyn Write) {
    let count = errors.0.len();
    let noun = if count == 1 { "error" } else { "errors" };
    // Nothing useful can be done if stderr is gone; the exit status still tells.
    let _ = writeln!(
        err,
        "{}: {count} {noun} in the configuration",
        path.display()
    )
    .and_then(|()| writeln!(err, "{errors}"));
}

/// `plex-oidc schema`.
pub fn schema(out: &mut dyn Write) -> u8 {
    match out.write_all(config::schema_json().as_bytes()) {
        Ok(()) => 0,
        Err(_) => EXIT_FAILURE,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashSecretError {
    #[error("no secret on stdin (pipe one in, or use --generate)")]
    Empty,
    #[error("cannot read the secret from stdin: {0}")]
    Read(#[source] io::Error),
    #[error("cannot hash the secret: {0}")]
    Hash(argon2::password_hash::Error),
    #[error("cannot create {path} ({source}); it is never overwritten")]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the output: {0}")]
    Write(#[source] io::Error),
}

/// `plex-oidc hash-secret`. `interactive` says whether stdin is a terminal (then one line is read, after
/// a prompt on `err`).
pub fn hash_secret(
    args: &HashSecretArgs,
    stdin: &mut dyn BufRead,
    interactive: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
    random: &dyn Random,
) -> Result<(), HashSecretError> {
    if !args.generate {
        let secret = read_secret(stdin, interactive, err)?;
        let hash = config::hash_client_secret(&secret, random).map_err(HashSecretError::Hash)?;
        return writeln!(out, "{hash}").map_err(HashSecretError::Write);
    }
    let secret = random.token(GENERATED_SECRET_BYTES);
    let hash = config::hash_client_secret(&secret, random).map_err(HashSecretError::Hash)?;
    match &args.output {
        Some(path) => {
            write_new_private_file(path, &format!("{secret}\n")).map_err(|source| {
                HashSecretError::Output {
                    path: path.clone(),
                    source,
                }
            })?;
            writeln!(
                err,
                "wrote a new secret to {}; give the relying party the same secret",
                path.display()
            )
            .and_then(|()| writeln!(out, "client_secret_hash: {hash}"))
            .map_err(HashSecretError::Write)
        }
        None => writeln!(out, "client_secret: {secret}\nclient_secret_hash: {hash}")
            .map_err(HashSecretError::Write),
    }
}

fn read_secret(
    stdin: &mut dyn BufRead,
    interactive: bool,
    err: &mut dyn Write,
) -> Result<String, HashSecretError> {
    let mut input = String::new();
    if interactive {
        let _ = write!(err, "secret (input is shown): ").and_then(|()| err.flush());
        stdin.read_line(&mut input).map_err(HashSecretError::Read)?;
    } else {
        stdin
            .read_to_string(&mut input)
            .map_err(HashSecretError::Read)?;
    }
    // Same rule as secret files, so `hash-secret < FILE` matches what client_secret_file reads.
    let secret = input
        .strip_suffix("\r\n")
        .or_else(|| input.strip_suffix('\n'))
        .unwrap_or(&input);
    if secret.is_empty() {
        return Err(HashSecretError::Empty);
    }
    Ok(secret.to_owned())
}

fn write_new_private_file(path: &Path, contents: &str) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

/// `plex-oidc keys rotate|list`: only `state_dir` of the configuration matters, but the whole file must
/// be valid, as for `serve`.
pub fn keys(command: &KeysCommand, now_unix: u64, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    use crate::keys::rotation;
    let path = match command {
        KeysCommand::Rotate(args) => &args.config.config,
        KeysCommand::List(args) => &args.config,
    };
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            report_config_errors(path, &errors, err);
            return EXIT_CONFIG;
        }
    };
    let done = match command {
        KeysCommand::List(_) => rotation::list(&config.state_dir, now_unix)
            .map(|statuses| rotation::write_list(&statuses, now_unix, out)),
        KeysCommand::Rotate(args) => {
            rotation::rotate(&config.state_dir, now_unix, args.grace, args.retire_after).map(
                |rotation| {
                    let mut warnings = rotation.warnings.clone();
                    let longest = config.clients.iter().map(|c| c.id_token_ttl).max();
                    if let Some(ttl) = longest.filter(|ttl| args.retire_after < *ttl) {
                        warnings.push(format!(
                            "--retire-after {} is shorter than the longest id_token_ttl ({}): ID \
                             tokens of the replaced keys stop verifying before they expire",
                            rotation::format_span(args.retire_after.as_secs()),
                            rotation::format_span(ttl.as_secs())
                        ));
                    }
                    rotation::write_rotation(&rotation, now_unix, out).and_then(|()| {
                        warnings
                            .iter()
                            .try_for_each(|warning| writeln!(err, "warning: {warning}"))
                    })
                },
            )
        }
    };
    match done {
        Ok(Ok(())) => 0,
        Ok(Err(_)) => EXIT_FAILURE,
        Err(e) => {
            let _ = writeln!(err, "plex-oidc: {}", error_chain(&e));
            EXIT_FAILURE
        }
    }
}

/// An error and its causes on one line, for the last words of a failed `serve`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // thiserror's `{0}` formats often repeat the source already.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    /// Deterministic bytes, so generated secrets are predictable in tests.
    struct Counting;

    impl Random for Counting {
        fn fill(&self, dest: &mut [u8]) {
            for (i, b) in dest.iter_mut().enumerate() {
                *b = i as u8;
            }
        }
    }

    fn verifies(secret: &str, hash: &str) -> bool {
        use argon2::PasswordVerifier as _;
        let parsed = argon2::PasswordHash::new(hash).unwrap();
        argon2::Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok()
    }

    fn run_hash(
        args: HashSecretArgs,
        stdin: &str,
        interactive: bool,
    ) -> (Result<(), HashSecretError>, String, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let result = hash_secret(
            &args,
            &mut stdin.as_bytes(),
            interactive,
            &mut out,
            &mut err,
            &Counting,
        );
        (
            result,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_may_come_from_the_flag() {
        let cli = Cli::try_parse_from(["plex-oidc", "check", "--config", "a.json"]).unwrap();
        let Command::Check(args) = cli.command else {
            panic!("expected check")
        };
        assert_eq!(args.config, Path::new("a.json"));
    }

    #[test]
    fn output_without_generate_is_a_usage_error() {
        let error = Cli::try_parse_from(["plex-oidc", "hash-secret", "--output", "x"]).unwrap_err();
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn a_secret_from_stdin_is_hashed_without_its_trailing_newline() {
        let (result, out, _) = run_hash(
            HashSecretArgs {
                generate: false,
                output: None,
            },
            "s3cret\n",
            false,
        );
        result.unwrap();
        let hash = out.trim_end();
        assert!(hash.starts_with("$argon2id$"), "{out}");
        assert!(verifies("s3cret", hash));
        assert!(!verifies("s3cret\n", hash));
    }

    #[test]
    fn an_interactive_secret_is_one_line_after_a_prompt() {
        let (result, out, err) = run_hash(
            HashSecretArgs {
                generate: false,
                output: None,
            },
            "first\nsecond\n",
            true,
        );
        result.unwrap();
        assert!(verifies("first", out.trim_end()));
        assert!(err.starts_with("secret"), "{err}");
    }

    #[test]
    fn an_empty_stdin_is_an_error() {
        let (result, out, _) = run_hash(
            HashSecretArgs {
                generate: false,
                output: None,
            },
            "\n",
            false,
        );
        assert!(matches!(result, Err(HashSecretError::Empty)));
        assert!(out.is_empty());
    }

    #[test]
    fn generate_prints_a_url_safe_secret_and_its_hash() {
        let (result, out, _) = run_hash(
            HashSecretArgs {
                generate: true,
                output: None,
            },
            "",
            false,
        );
        result.unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let secret = lines[0].strip_prefix("client_secret: ").unwrap();
        let hash = lines[1].strip_prefix("client_secret_hash: ").unwrap();
        assert_eq!(secret.len(), 43);
        assert!(
            secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{secret}"
        );
        assert!(verifies(secret, hash));
    }

    #[test]
    fn generate_with_output_writes_a_private_file_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = crate::config::tests::TempDir::new("hash-output");
        let path = dir.path().join("grafana");
        let args = || HashSecretArgs {
            generate: true,
            output: Some(path.clone()),
        };
        let (result, out, err) = run_hash(args(), "", false);
        result.unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        let secret = written.strip_suffix('\n').unwrap();
        assert!(
            !out.contains(secret),
            "the secret must not be printed: {out}"
        );
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(verifies(
            secret,
            out.trim_end().strip_prefix("client_secret_hash: ").unwrap()
        ));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let (again, _, _) = run_hash(args(), "", false);
        assert!(matches!(again, Err(HashSecretError::Output { .. })));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), written);
    }

    #[test]
    fn check_reports_every_error_under_a_heading() {
        let dir = crate::config::tests::TempDir::new("check");
        let path = dir.path().join("bad.json");
        std::fs::write(
            &path,
            r#"{"issuer": "http://auth.lan", "plex": {}, "clients": []}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        let mut err = Vec::new();
        assert_eq!(check(&path, &mut out, &mut err), EXIT_CONFIG);
        let err = String::from_utf8(err).unwrap();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines[0],
            format!("{}: 3 errors in the configuration", path.display())
        );
        assert_eq!(lines.len(), 4, "{err}");
        assert!(out.is_empty());
    }

    #[test]
    fn error_chains_skip_causes_already_in_the_message() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Repeating(#[source] io::Error);
        let cause = || io::Error::other("inner");
        assert_eq!(error_chain(&Outer(cause())), "outer: inner");
        assert_eq!(error_chain(&Repeating(cause())), "outer: inner");
    }
}
