//! Client secrets: the redacting newtype, secret files and argon2id hashes.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A client secret. `Debug` never shows it and there is no `Display`, so it cannot reach a log line by
/// accident; code that must compare it calls `expose`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Secret(secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Shorter inline secrets are accepted with a warning; generated ones have 43 characters.
pub(super) const SHORT_SECRET_CHARS: usize = 16;

/// The OS message without Rust's " (os error N)" suffix, which means nothing to an operator.
pub(super) fn io_reason(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// Relative secret files belong to systemd's credentials directory when there is one (`LoadCredential=`
/// exposes them there), else to the config file's directory.
pub(super) fn resolve_secret_path(
    file: &str,
    base_dir: &Path,
    credentials_dir: Option<&Path>,
) -> PathBuf {
    let file = Path::new(file);
    if file.is_absolute() {
        return file.to_path_buf();
    }
    credentials_dir.unwrap_or(base_dir).join(file)
}

pub(super) struct SecretFile {
    pub secret: Secret,
    /// Set when the file is readable by every user on the machine.
    pub warning: Option<String>,
}

pub(super) fn read_secret_file(
    file: &str,
    base_dir: &Path,
    credentials_dir: Option<&Path>,
) -> Result<SecretFile, String> {
    let path = resolve_secret_path(file, base_dir, credentials_dir);
    let shown = path.display();
    let via_credentials = credentials_dir.is_some() && !Path::new(file).is_absolute();
    let contents = std::fs::read_to_string(&path).map_err(|e| {
        let reason = match e.kind() {
            io::ErrorKind::InvalidData => "not UTF-8 text".to_owned(),
            _ => io_reason(&e),
        };
        if via_credentials {
            format!(
                "cannot read \"{shown}\" ({reason}). Relative paths resolve against $CREDENTIALS_DIRECTORY; \
                 check the LoadCredential= line of the service unit"
            )
        } else {
            format!(
                "cannot read \"{shown}\" ({reason}). Create it with: \
                 plex-oidc hash-secret --generate --output {shown} \
                 (or: umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=' > {shown})"
            )
        }
    })?;
    let secret = contents
        .strip_suffix("\r\n")
        .or_else(|| contents.strip_suffix('\n'))
        .unwrap_or(&contents);
    if secret.is_empty() {
        return Err(format!(
            "\"{shown}\" is empty. Put a secret in it with: \
             head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=' > {shown}"
        ));
    }
    Ok(SecretFile {
        secret: Secret(secret.to_owned()),
        warning: world_readable(&path).then(|| {
            format!("\"{shown}\" is readable by every user on this machine (fix with: chmod 600 {shown})")
        }),
    })
}

#[cfg(unix)]
fn world_readable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(not(unix))]
fn world_readable(_path: &Path) -> bool {
    false
}

/// Hashes a client secret into the argon2id PHC string `client_secret_hash` takes, with the argon2
/// crate's default cost (19 MiB, 2 passes) and a 16-byte salt from `random`.
pub fn hash_client_secret(
    secret: &str,
    random: &dyn crate::random::Random,
) -> Result<String, argon2::password_hash::Error> {
    use argon2::PasswordHasher as _;
    let mut salt = [0u8; 16];
    random.fill(&mut salt);
    let salt = argon2::password_hash::SaltString::encode_b64(&salt)?;
    Ok(argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)?
        .to_string())
}

/// Verifying a hash runs on the token endpoint for every request; parameters beyond these would let one
/// client's configuration stall the server.
const MAX_MEMORY_KIB: u32 = 256 * 1024;
const MAX_ITERATIONS: u32 = 16;
const MAX_LANES: u32 = 16;

/// Checks that `hash` is an argon2id PHC string the token endpoint can verify.
pub(super) fn check_secret_hash(hash: &str) -> Result<(), String> {
    const HOW: &str = "make one with: plex-oidc hash-secret";
    let parsed =
        argon2::PasswordHash::new(hash).map_err(|e| format!("is not a PHC string ({e}); {HOW}"))?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return Err(format!(
            "uses the \"{}\" algorithm; only argon2id is accepted; {HOW}",
            parsed.algorithm
        ));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(format!("lacks a salt or hash part; {HOW}"));
    }
    let params = argon2::Params::try_from(&parsed)
        .map_err(|e| format!("has invalid argon2 parameters ({e}); {HOW}"))?;
    if params.m_cost() > MAX_MEMORY_KIB
        || params.t_cost() > MAX_ITERATIONS
        || params.p_cost() > MAX_LANES
    {
        return Err(format!(
            "has parameters too costly to verify on every token request \
             (at most m={MAX_MEMORY_KIB}, t={MAX_ITERATIONS}, p={MAX_LANES}); {HOW}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{SAMPLE_HASH, TempDir};

    #[test]
    fn debug_output_never_shows_the_secret() {
        let secret = Secret::from("hunter2-but-longer".to_owned());
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "hunter2-but-longer");
    }

    #[test]
    fn absolute_secret_files_are_taken_as_written() {
        let path = resolve_secret_path(
            "/run/secrets/x",
            Path::new("/etc/plex-oidc"),
            Some(Path::new("/run/credentials/p")),
        );
        assert_eq!(path, Path::new("/run/secrets/x"));
    }

    #[test]
    fn relative_secret_files_resolve_against_the_credentials_directory_when_set() {
        let path = resolve_secret_path(
            "grafana",
            Path::new("/etc/plex-oidc"),
            Some(Path::new("/run/credentials/p")),
        );
        assert_eq!(path, Path::new("/run/credentials/p/grafana"));
    }

    #[test]
    fn relative_secret_files_resolve_against_the_config_directory_otherwise() {
        let path = resolve_secret_path("secrets/grafana", Path::new("/etc/plex-oidc"), None);
        assert_eq!(path, Path::new("/etc/plex-oidc/secrets/grafana"));
    }

    #[test]
    fn one_trailing_newline_is_trimmed_from_a_secret_file() {
        let dir = TempDir::new("secret-newline");
        dir.write_private("lf", "abc\n\n");
        dir.write_private("crlf", "abc\r\n");
        dir.write_private("none", "abc");
        let read = |name| read_secret_file(name, dir.path(), None).unwrap().secret;
        assert_eq!(read("lf").expose(), "abc\n");
        assert_eq!(read("crlf").expose(), "abc");
        assert_eq!(read("none").expose(), "abc");
    }

    #[test]
    fn an_empty_secret_file_is_an_error() {
        let dir = TempDir::new("secret-empty");
        dir.write_private("empty", "\n");
        let error = read_secret_file("empty", dir.path(), None).err().unwrap();
        assert!(error.contains("is empty"), "{error}");
    }

    #[test]
    fn a_missing_secret_file_names_the_file_and_how_to_create_it() {
        let dir = TempDir::new("secret-missing");
        let error = read_secret_file("grafana", dir.path(), None).err().unwrap();
        let expected_path = dir.path().join("grafana");
        assert!(
            error.starts_with(&format!(
                "cannot read \"{}\" (No such file or directory). Create it with: plex-oidc hash-secret --generate --output {}",
                expected_path.display(),
                expected_path.display()
            )),
            "{error}"
        );
        assert!(error.contains("head -c 32 /dev/urandom"), "{error}");
    }

    #[test]
    fn a_missing_credential_points_at_load_credential() {
        let dir = TempDir::new("secret-credential");
        let error = read_secret_file("grafana", Path::new("/nonexistent"), Some(dir.path()))
            .err()
            .unwrap();
        assert!(
            error.contains(&dir.path().join("grafana").display().to_string()),
            "{error}"
        );
        assert!(error.contains("LoadCredential="), "{error}");
    }

    #[test]
    fn a_world_readable_secret_file_gives_a_warning() {
        let dir = TempDir::new("secret-mode");
        dir.write_private("private", "s3cret-s3cret-s3cret");
        let open = dir.write("open", "s3cret-s3cret-s3cret");
        let private = read_secret_file("private", dir.path(), None).unwrap();
        let shared = read_secret_file("open", dir.path(), None).unwrap();
        assert!(private.warning.is_none());
        let warning = shared.warning.unwrap();
        assert!(
            warning.contains(&format!("chmod 600 {}", open.display())),
            "{warning}"
        );
    }

    #[test]
    fn a_hashed_secret_is_an_acceptable_argon2id_hash_that_verifies() {
        use argon2::PasswordVerifier as _;
        let hash = hash_client_secret("correct horse battery staple", &crate::random::SystemRandom)
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert_eq!(check_secret_hash(&hash), Ok(()));
        let parsed = argon2::PasswordHash::new(&hash).unwrap();
        let argon2 = argon2::Argon2::default();
        assert!(
            argon2
                .verify_password(b"correct horse battery staple", &parsed)
                .is_ok()
        );
        assert!(argon2.verify_password(b"wrong", &parsed).is_err());
    }

    #[test]
    fn the_sample_hash_verifies_against_its_secret() {
        use argon2::PasswordVerifier as _;
        let parsed = argon2::PasswordHash::new(SAMPLE_HASH).unwrap();
        assert!(
            argon2::Argon2::default()
                .verify_password(b"correct horse battery staple", &parsed)
                .is_ok()
        );
    }

    #[test]
    fn a_valid_argon2id_hash_is_accepted() {
        assert_eq!(check_secret_hash(SAMPLE_HASH), Ok(()));
    }

    #[test]
    fn hashes_that_are_not_argon2id_phc_strings_are_rejected() {
        let argon2i = SAMPLE_HASH.replacen("argon2id", "argon2i", 1);
        let cases = [
            ("plain-text-secret", "is not a PHC string"),
            (argon2i.as_str(), "uses the \"argon2i\" algorithm"),
            (
                "$argon2id$v=19$m=19456,t=2,p=1",
                "lacks a salt or hash part",
            ),
            (
                "$pbkdf2-sha256$i=1000$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                "only argon2id is accepted",
            ),
        ];
        for (hash, expected) in cases {
            let error = check_secret_hash(hash).unwrap_err();
            assert!(error.contains(expected), "{hash}: {error}");
            assert!(
                error.ends_with("make one with: plex-oidc hash-secret"),
                "{error}"
            );
        }
    }

    #[test]
    fn hashes_too_costly_to_verify_are_rejected() {
        let heavy = SAMPLE_HASH.replacen("m=19456", "m=4194304", 1);
        let error = check_secret_hash(&heavy).unwrap_err();
        assert!(error.contains("too costly"), "{error}");
    }
}
