//! Signing-key rotation: `state_dir/keys.json` schedules several keys over time.
//!
//! A new key is published at once but signs only after a grace period, so relying parties have refreshed
//! their JWKS caches before they meet a token with its `kid`; the keys it replaces stay published until
//! `retire_at`, so tokens they signed keep verifying until those have expired. Without `keys.json` the
//! state directory is a legacy single-key install (`signing-key.pk8` alone), which keeps working unchanged;
//! the first rotation lists that key in a new `keys.json`.
//!
//! The manifest is the only source of truth once it exists: a missing or damaged manifest or key file is
//! an error naming the file, never a reason to generate a key, because a new key invalidates every
//! issued token and a resurrected retired key would undo a rotation.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::RsaKeyPair;
use serde::{Deserialize, Serialize};

use super::{KeyError, SIGNING_KEY_FILE, SigningKey, secret_file};

/// The rotation manifest inside the state directory.
pub const MANIFEST_FILE: &str = "keys.json";
/// Directory inside the state directory that holds rotated keys as `<kid>.pk8`.
pub const KEYS_DIR: &str = "keys";
/// What makes a running server publish a rotated key.
pub const RELOAD_HINT: &str = "Reload plex-oidc now (SIGHUP, `systemctl reload plex-oidc`) or restart it: \
                               it reads the keys at start and on reload, and relying parties can only \
                               learn the new key during the grace period if it is published.";

/// One key in `keys.json`. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// RFC 7638 thumbprint; must match the key in `file`.
    pub kid: String,
    /// PKCS#8 DER file, relative to the state directory.
    pub file: String,
    pub created_at: u64,
    /// From this second the key signs, unless a key listed after it signs already.
    pub active_from: u64,
    /// From this second the key is no longer published (dropped at the next start) and may be deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<u64>,
}

impl KeyEntry {
    pub fn is_retired(&self, now: u64) -> bool {
        self.retire_at.is_some_and(|at| at <= now)
    }
}

/// Unknown fields are rejected: a misspelt `retire_at` would otherwise keep a key published forever.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    keys: Vec<KeyEntry>,
}

/// Where a key stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, signs from `active_from`.
    Published,
    /// Published and signing.
    Active,
    /// Published so the tokens it signed still verify; no longer signs.
    Retiring,
    /// No longer published; `keys rotate` deletes it.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Published => "published",
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub entry: KeyEntry,
    pub state: KeyState,
}

/// What `rotate` did.
#[derive(Debug)]
pub struct Rotation {
    pub new: KeyEntry,
    /// Full path of the new key file.
    pub path: PathBuf,
    /// Keys that stop signing when the new one starts, with their (possibly earlier) `retire_at`.
    pub superseded: Vec<KeyEntry>,
    /// Keys already retired, taken out of `keys.json` and deleted.
    pub removed: Vec<KeyEntry>,
    /// Whether this rotation created `keys.json` from a legacy `signing-key.pk8`.
    pub created_manifest: bool,
    /// Problems that did not stop the rotation (a retired file that could not be deleted, ownership).
    pub warnings: Vec<String>,
}

/// The index among `active_from` (creation order) of the key that signs at `now`: the last one whose
/// activation has passed. If none has (a clock behind every activation), the earliest to activate, so
/// there is always a signer.
pub(crate) fn signer_index(active_from: &[u64], now: u64) -> usize {
    active_from
        .iter()
        .rposition(|&from| from <= now)
        .or_else(|| {
            active_from
                .iter()
                .enumerate()
                .min_by_key(|&(_, from)| *from)
                .map(|(i, _)| i)
        })
        .unwrap_or(0)
}

/// The entries of `keys.json`, or `None` for a legacy install. A missing manifest next to rotated key
/// files is an error: falling back to `signing-key.pk8` would silently undo the rotation.
pub(crate) fn read_manifest(state_dir: &Path) -> Result<Option<Vec<KeyEntry>>, KeyError> {
    let path = state_dir.join(MANIFEST_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return if holds_rotated_keys(state_dir)? {
                Err(KeyError::ManifestMissing {
                    path,
                    keys_dir: state_dir.join(KEYS_DIR),
                })
            } else {
                Ok(None)
            };
        }
        Err(source) => return Err(KeyError::Io { path, source }),
    };
    let invalid = |reason: String| KeyError::InvalidManifest {
        path: path.clone(),
        reason,
    };
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if manifest.keys.is_empty() {
        return Err(invalid("it lists no keys".into()));
    }
    for (i, entry) in manifest.keys.iter().enumerate() {
        if entry.kid.is_empty() {
            return Err(invalid(format!("key {i} has an empty kid")));
        }
        if manifest.keys[..i].iter().any(|e| e.kid == entry.kid) {
            return Err(invalid(format!("kid {} is listed twice", entry.kid)));
        }
        if !is_plain_relative(&entry.file) {
            return Err(invalid(format!(
                "file \"{}\" of key {} is not a path inside the state directory",
                entry.file, entry.kid
            )));
        }
    }
    Ok(Some(manifest.keys))
}

fn is_plain_relative(file: &str) -> bool {
    let path = Path::new(file);
    path.components().next().is_some()
        && path.components().all(|c| matches!(c, Component::Normal(_)))
}

fn holds_rotated_keys(state_dir: &Path) -> Result<bool, KeyError> {
    let dir = state_dir.join(KEYS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(KeyError::Io { path: dir, source }),
    };
    for entry in entries {
        let entry = entry.map_err(|source| KeyError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // `.<name>.<random>.tmp` files are half-written leftovers, never keys.
        if name.ends_with(".pk8") && !name.starts_with('.') {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Loads every key of `entries` that is not retired at `now`, in manifest order, with its activation
/// time. Each file must hold exactly the key its `kid` names.
pub(crate) fn load_live(
    state_dir: &Path,
    entries: &[KeyEntry],
    now: u64,
) -> Result<Vec<(u64, SigningKey)>, KeyError> {
    entries
        .iter()
        .filter(|entry| !entry.is_retired(now))
        .map(|entry| {
            let path = state_dir.join(&entry.file);
            let der = secret_file::read(&path)?.ok_or_else(|| KeyError::MissingKeyFile {
                path: path.clone(),
                kid: entry.kid.clone(),
            })?;
            let key = SigningKey::from_pkcs8(&der).map_err(|e| KeyError::InvalidListedKey {
                path: path.clone(),
                reason: match e {
                    KeyError::Rejected(reason) => reason,
                    other => other.to_string(),
                },
            })?;
            if key.kid() != entry.kid {
                return Err(KeyError::InvalidListedKey {
                    path,
                    reason: format!(
                        "it holds key {}, but {MANIFEST_FILE} lists {}",
                        key.kid(),
                        entry.kid
                    ),
                });
            }
            Ok((entry.active_from, key))
        })
        .collect()
}

/// The legacy key as a manifest entry (created and active since its file was written), or `None` if
/// the server has never started.
fn legacy_entry(state_dir: &Path, now: u64) -> Result<Option<KeyEntry>, KeyError> {
    let Some(key) = SigningKey::load(state_dir)? else {
        return Ok(None);
    };
    let written = fs::metadata(state_dir.join(SIGNING_KEY_FILE))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
        // A file from the future (clock jumped back) must not make the only key pending.
        .min(now);
    Ok(Some(KeyEntry {
        kid: key.kid().to_owned(),
        file: SIGNING_KEY_FILE.to_owned(),
        created_at: written,
        active_from: written,
        retire_at: None,
    }))
}

/// Every key the state directory knows and its state at `now`, oldest first; empty if no key exists yet.
/// Fails exactly when the server would fail to load the keys (except that all keys being retired is
/// reported as such rather than as an error). Never writes.
pub fn list(state_dir: &Path, now: u64) -> Result<Vec<KeyStatus>, KeyError> {
    let entries = match read_manifest(state_dir)? {
        Some(entries) => {
            load_live(state_dir, &entries, now)?;
            entries
        }
        None => legacy_entry(state_dir, now)?.into_iter().collect(),
    };
    Ok(states(entries, now))
}

fn states(entries: Vec<KeyEntry>, now: u64) -> Vec<KeyStatus> {
    let live: Vec<usize> = (0..entries.len())
        .filter(|&i| !entries[i].is_retired(now))
        .collect();
    let activations: Vec<u64> = live.iter().map(|&i| entries[i].active_from).collect();
    let signer = (!live.is_empty()).then(|| live[signer_index(&activations, now)]);
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let state = if entry.is_retired(now) {
                KeyState::Retired
            } else if Some(i) == signer {
                KeyState::Active
            } else if entry.active_from > now {
                KeyState::Published
            } else {
                KeyState::Retiring
            };
            KeyStatus { entry, state }
        })
        .collect()
}

/// Adds a new RSA-2048 key that signs from `now + grace` (from `now` if no key is published yet) and
/// retires every earlier key at most `retire_after` after that. Keys already retired are removed from
/// the manifest and deleted. The new key file is written before the manifest, both atomically, so an
/// interruption leaves the previous schedule in force.
pub fn rotate(
    state_dir: &Path,
    now: u64,
    grace: Duration,
    retire_after: Duration,
) -> Result<Rotation, KeyError> {
    let (mut entries, created_manifest) = match read_manifest(state_dir)? {
        Some(entries) => {
            // Refuse to build on a schedule the server could not load.
            load_live(state_dir, &entries, now)?;
            (entries, false)
        }
        None => (legacy_entry(state_dir, now)?.into_iter().collect(), true),
    };

    let pair =
        RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| KeyError::Generate(e.to_string()))?;
    let der = pair
        .as_der()
        .map_err(|e| KeyError::Generate(format!("cannot encode as PKCS#8: {e}")))?;
    let key = SigningKey::from_pair(pair)?;
    if entries.iter().any(|e| e.kid == key.kid()) {
        return Err(KeyError::Generate(
            "the new key has the kid of a listed key".into(),
        ));
    }

    let anything_published = entries.iter().any(|e| !e.is_retired(now));
    // With nothing published there are no tokens and no caches to wait for.
    let active_from = if anything_published {
        now.saturating_add(grace.as_secs())
    } else {
        now
    };
    let retire_at = active_from.saturating_add(retire_after.as_secs());
    let mut superseded = Vec::new();
    for entry in entries.iter_mut().filter(|e| !e.is_retired(now)) {
        // Never later than an earlier rotation said, so a rotation with `--retire-after 0s` (a leaked
        // key) drops every older key too.
        entry.retire_at = Some(entry.retire_at.map_or(retire_at, |at| at.min(retire_at)));
        superseded.push(entry.clone());
    }
    let (removed, mut entries): (Vec<KeyEntry>, Vec<KeyEntry>) =
        entries.into_iter().partition(|e| e.is_retired(now));

    let file_name = format!("{}.pk8", key.kid());
    let new = KeyEntry {
        kid: key.kid().to_owned(),
        file: format!("{KEYS_DIR}/{file_name}"),
        created_at: now,
        active_from,
        retire_at: None,
    };
    entries.push(new.clone());

    let keys_dir = state_dir.join(KEYS_DIR);
    let path = keys_dir.join(&file_name);
    secret_file::write_atomically(&keys_dir, &file_name, der.as_ref())?;
    let manifest =
        serde_json::to_vec_pretty(&Manifest { keys: entries }).map_err(KeyError::Serialize)?;
    if let Err(e) = secret_file::write_atomically(state_dir, MANIFEST_FILE, &manifest) {
        // An unlisted key file next to no manifest would stop the next start.
        let _ = fs::remove_file(&path);
        return Err(e.into());
    }

    let mut warnings = Vec::new();
    for entry in &removed {
        let file = state_dir.join(&entry.file);
        match fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warnings.push(format!(
                "cannot delete the retired key file {}: {e}",
                file.display()
            )),
        }
    }
    warnings.extend(match_owner(
        state_dir,
        &[keys_dir, path.clone(), state_dir.join(MANIFEST_FILE)],
    ));

    Ok(Rotation {
        new,
        path,
        superseded,
        removed,
        created_manifest,
        warnings,
    })
}

/// Files written by `sudo plex-oidc keys rotate` belong to root and would be unreadable by the service
/// (0600): hand them to the owner of the state directory. Only root may; others get a warning.
fn match_owner(state_dir: &Path, paths: &[PathBuf]) -> Option<String> {
    let dir = fs::metadata(state_dir).ok()?;
    let mut failed = Vec::new();
    for path in paths {
        let Ok(meta) = fs::metadata(path) else {
            continue;
        };
        if meta.uid() == dir.uid() && meta.gid() == dir.gid() {
            continue;
        }
        if std::os::unix::fs::chown(path, Some(dir.uid()), Some(dir.gid())).is_err() {
            failed.push(path.display().to_string());
        }
    }
    (!failed.is_empty()).then(|| {
        format!(
            "{} not owned by the owner of {} (uid {}), so the service may not read them; run this \
             command as that user, or chown them",
            failed.join(", "),
            state_dir.display(),
            dir.uid()
        )
    })
}

/// `plex-oidc keys list` output: one line per key, oldest first.
pub fn write_list(statuses: &[KeyStatus], now: u64, out: &mut dyn Write) -> io::Result<()> {
    if statuses.is_empty() {
        return writeln!(
            out,
            "no signing key yet: plex-oidc generates one when it first starts"
        );
    }
    writeln!(
        out,
        "{:<9}  {:<43}  {:<20}  {:<20}  FILE",
        "STATE", "KID", "SIGNS FROM", "RETIRES AT"
    )?;
    for status in statuses {
        let entry = &status.entry;
        writeln!(
            out,
            "{:<9}  {:<43}  {:<20}  {:<20}  {}",
            status.state.as_str(),
            entry.kid,
            format_utc(entry.active_from),
            entry.retire_at.map_or_else(|| "-".to_owned(), format_utc),
            entry.file
        )?;
    }
    let next = statuses
        .iter()
        .filter(|s| s.state == KeyState::Published)
        .map(|s| s.entry.active_from)
        .min();
    if let Some(at) = next {
        writeln!(
            out,
            "\nthe next key signs from {} ({})",
            format_utc(at),
            relative(at, now)
        )?;
    }
    if statuses.iter().all(|s| s.state == KeyState::Retired) {
        writeln!(
            out,
            "\nevery key is retired, so plex-oidc will not start: run `plex-oidc keys rotate`"
        )?;
    }
    Ok(())
}

/// `plex-oidc keys rotate` output.
pub fn write_rotation(rotation: &Rotation, now: u64, out: &mut dyn Write) -> io::Result<()> {
    let new = &rotation.new;
    writeln!(out, "new signing key {}", new.kid)?;
    writeln!(out, "  file:  {}", rotation.path.display())?;
    writeln!(
        out,
        "  JWKS:  published from the next reload or start of plex-oidc"
    )?;
    writeln!(
        out,
        "  signs: from {} ({})",
        format_utc(new.active_from),
        relative(new.active_from, now)
    )?;
    for old in &rotation.superseded {
        let retire = old.retire_at.map_or_else(|| "-".to_owned(), format_utc);
        writeln!(
            out,
            "key {} stops signing then; it stays in the JWKS until {retire}",
            old.kid
        )?;
    }
    for old in &rotation.removed {
        writeln!(out, "removed retired key {} ({})", old.kid, old.file)?;
    }
    if rotation.created_manifest && !rotation.superseded.is_empty() {
        writeln!(
            out,
            "{SIGNING_KEY_FILE} is now listed in {MANIFEST_FILE}, which decides from now on"
        )?;
    }
    writeln!(out, "{RELOAD_HINT}")
}

/// `2025-01-02T03:04:05Z`.
pub fn format_utc(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`, for days ≥ 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `in 1d2h`, `3m ago`, `now`. Spans of an hour or more are rounded to the minute: a command run a
/// second after a rotation should still say `in 1d`.
fn relative(at: u64, now: u64) -> String {
    let rounded = |span: u64| {
        if span >= 3_600 {
            format_span((span + 30) / 60 * 60)
        } else {
            format_span(span)
        }
    };
    if at == now {
        "now".to_owned()
    } else if at > now {
        format!("in {}", rounded(at - now))
    } else {
        format!("{} ago", rounded(now - at))
    }
}

/// Seconds in the units `parse_duration` reads, largest first: `1d2h`, `90s` is `1m30s`.
pub fn format_span(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut rest = secs;
    let mut text = String::new();
    for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        if rest >= size {
            text.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::KeySet;
    use super::super::secret_file::TempDir;
    use super::*;
    use serde_json::{Value, json};
    use std::os::unix::fs::PermissionsExt as _;

    const NOW: u64 = 1_700_000_000;
    const HOUR: u64 = 3_600;
    const DAY: u64 = 86_400;

    fn grace(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn published_kids(keys: &KeySet) -> Vec<String> {
        let jwks: Value = serde_json::from_str(keys.jwks_json()).unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    fn load(dir: &TempDir, now: u64) -> KeySet {
        let (keys, generated) = KeySet::load_at(&dir.0, now).unwrap();
        assert!(!generated);
        keys
    }

    fn manifest(dir: &TempDir) -> Value {
        serde_json::from_slice(&fs::read(dir.0.join(MANIFEST_FILE)).unwrap()).unwrap()
    }

    fn kid_in_header(token: &str) -> String {
        use base64::Engine as _;
        let header = token.split('.').next().unwrap();
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap(),
        )
        .unwrap();
        header["kid"].as_str().unwrap().to_owned()
    }

    /// A legacy install: `signing-key.pk8` only, as every version before rotation left it.
    fn legacy_install(label: &str) -> (TempDir, String) {
        let dir = TempDir::new(label);
        let (keys, generated) = KeySet::load_or_generate(&dir.0).unwrap();
        assert!(generated);
        let kid = keys.signer().kid().to_owned();
        (dir, kid)
    }

    #[test]
    fn rotation_publishes_both_keys_and_switches_signers_after_the_grace_period() {
        let (dir, old) = legacy_install("rotate-grace");

        let rotation = rotate(&dir.0, NOW, grace(DAY), grace(7 * DAY)).unwrap();
        let new = rotation.new.kid.clone();

        let keys = load(&dir, NOW + HOUR);
        assert_eq!(published_kids(&keys), vec![old.clone(), new.clone()]);
        // During the grace period the old key signs, and the new one is already published.
        assert_eq!(keys.signer_at(NOW + DAY - 1).kid(), old);
        assert_eq!(keys.signer_at(NOW + DAY).kid(), new);
        assert_eq!(
            kid_in_header(&keys.signer_at(NOW + 2 * DAY).sign_jwt(&json!({})).unwrap()),
            new
        );
        // Tokens of either key verify while both are published.
        let by_old = keys.signer_at(NOW).sign_jwt(&json!({"sub": "a"})).unwrap();
        let by_new = keys
            .signer_at(NOW + DAY)
            .sign_jwt(&json!({"sub": "b"}))
            .unwrap();
        assert_eq!(keys.verify_jwt(&by_old).unwrap(), json!({"sub": "a"}));
        assert_eq!(keys.verify_jwt(&by_new).unwrap(), json!({"sub": "b"}));
    }

    #[test]
    fn the_replaced_key_disappears_from_the_jwks_once_retired() {
        let (dir, old) = legacy_install("rotate-retire");
        let rotation = rotate(&dir.0, NOW, grace(DAY), grace(7 * DAY)).unwrap();
        let new = rotation.new.kid;
        let retire_at = NOW + 8 * DAY;

        let before = load(&dir, retire_at - 1);
        let after = load(&dir, retire_at);

        assert_eq!(published_kids(&before), vec![old.clone(), new.clone()]);
        assert_eq!(published_kids(&after), vec![new.clone()]);
        assert_eq!(after.signer_at(retire_at).kid(), new);
        let by_old = before.signer_at(NOW).sign_jwt(&json!({})).unwrap();
        assert!(matches!(
            after.verify_jwt(&by_old),
            Err(KeyError::InvalidJwt("signed by an unknown key"))
        ));
    }

    #[test]
    fn rotation_writes_a_private_key_file_and_a_manifest_describing_the_schedule() {
        let (dir, old) = legacy_install("rotate-files");

        let rotation = rotate(&dir.0, NOW, grace(DAY), grace(7 * DAY)).unwrap();

        let new = &rotation.new.kid;
        let file = dir.0.join(KEYS_DIR).join(format!("{new}.pk8"));
        assert_eq!(rotation.path, file);
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            SigningKey::from_pkcs8(&fs::read(&file).unwrap())
                .unwrap()
                .kid(),
            new
        );
        let listed = &manifest(&dir)["keys"];
        assert_eq!(listed[0]["kid"], json!(old));
        assert_eq!(listed[0]["file"], json!(SIGNING_KEY_FILE));
        assert_eq!(listed[0]["retire_at"], json!(NOW + 8 * DAY));
        assert_eq!(
            listed[1],
            json!({"kid": new, "file": format!("keys/{new}.pk8"), "created_at": NOW,
                   "active_from": NOW + DAY})
        );
        assert!(rotation.created_manifest);
        assert_eq!(rotation.superseded.len(), 1);
        // The legacy file stays where it is: the manifest points at it.
        assert!(dir.0.join(SIGNING_KEY_FILE).exists());
        assert_eq!(
            fs::metadata(dir.0.join(MANIFEST_FILE))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    #[test]
    fn a_second_rotation_retires_keys_and_deletes_those_already_retired() {
        let (dir, first) = legacy_install("rotate-twice");
        let second = rotate(&dir.0, NOW, grace(DAY), grace(7 * DAY))
            .unwrap()
            .new
            .kid;
        let later = NOW + 30 * DAY;

        let rotation = rotate(&dir.0, later, grace(DAY), grace(7 * DAY)).unwrap();

        let third = rotation.new.kid.clone();
        assert_eq!(
            rotation.removed.iter().map(|e| &e.kid).collect::<Vec<_>>(),
            vec![&first]
        );
        assert!(!dir.0.join(SIGNING_KEY_FILE).exists());
        assert_eq!(
            rotation
                .superseded
                .iter()
                .map(|e| (&e.kid, e.retire_at))
                .collect::<Vec<_>>(),
            vec![(&second, Some(later + 8 * DAY))]
        );
        let keys = load(&dir, later);
        assert_eq!(published_kids(&keys), vec![second.clone(), third.clone()]);
        assert_eq!(keys.signer_at(later).kid(), second);
        assert_eq!(keys.signer_at(later + DAY).kid(), third);
    }

    #[test]
    fn an_immediate_rotation_with_no_retirement_drops_every_older_key_at_once() {
        // A leaked key: `--grace 0s --retire-after 0s`, even while an earlier rotation is pending.
        let (dir, _) = legacy_install("rotate-leak");
        rotate(&dir.0, NOW, grace(DAY), grace(7 * DAY)).unwrap();

        let rotation = rotate(&dir.0, NOW + HOUR, grace(0), grace(0)).unwrap();

        let keys = load(&dir, NOW + HOUR);
        assert_eq!(published_kids(&keys), vec![rotation.new.kid.clone()]);
        assert_eq!(keys.signer().kid(), rotation.new.kid);
    }

    #[test]
    fn a_rotation_never_postpones_an_earlier_retirement() {
        let (dir, first) = legacy_install("rotate-no-postpone");
        let second = rotate(&dir.0, NOW, grace(DAY), grace(7 * DAY))
            .unwrap()
            .new
            .kid;

        let rotation = rotate(&dir.0, NOW + HOUR, grace(DAY), grace(7 * DAY)).unwrap();

        let retire_at: Vec<(String, Option<u64>)> = rotation
            .superseded
            .into_iter()
            .map(|e| (e.kid, e.retire_at))
            .collect();
        assert_eq!(
            retire_at,
            vec![
                (first.clone(), Some(NOW + 8 * DAY)),
                (second, Some(NOW + HOUR + 8 * DAY))
            ]
        );
        assert!(!published_kids(&load(&dir, NOW + 8 * DAY)).contains(&first));
    }

    #[test]
    fn the_first_key_of_an_empty_state_dir_signs_at_once_whatever_the_grace() {
        let dir = TempDir::new("rotate-empty");

        let rotation = rotate(&dir.0, NOW, grace(DAY), grace(7 * DAY)).unwrap();

        assert_eq!(rotation.new.active_from, NOW);
        assert!(rotation.superseded.is_empty());
        let keys = load(&dir, NOW);
        assert_eq!(keys.signer_at(NOW).kid(), rotation.new.kid);
        assert!(!dir.0.join(SIGNING_KEY_FILE).exists());
    }

    #[test]
    fn a_clock_behind_every_activation_still_has_a_signer() {
        let (dir, old) = legacy_install("rotate-clock");
        rotate(&dir.0, NOW, grace(DAY), grace(7 * DAY)).unwrap();
        let keys = load(&dir, NOW);

        assert_eq!(keys.signer_at(0).kid(), old);
    }

    #[test]
    fn list_reports_each_key_state_over_time() {
        let (dir, old) = legacy_install("rotate-list");
        let new = rotate(&dir.0, NOW, grace(DAY), grace(7 * DAY))
            .unwrap()
            .new
            .kid;
        let states = |now| {
            list(&dir.0, now)
                .unwrap()
                .into_iter()
                .map(|s| (s.entry.kid, s.state))
                .collect::<Vec<_>>()
        };

        assert_eq!(
            states(NOW),
            vec![
                (old.clone(), KeyState::Active),
                (new.clone(), KeyState::Published)
            ]
        );
        assert_eq!(
            states(NOW + DAY),
            vec![
                (old.clone(), KeyState::Retiring),
                (new.clone(), KeyState::Active)
            ]
        );
        assert_eq!(
            states(NOW + 8 * DAY),
            vec![(old, KeyState::Retired), (new, KeyState::Active)]
        );
    }

    #[test]
    fn list_of_a_legacy_install_shows_its_one_active_key_and_writes_nothing() {
        let (dir, kid) = legacy_install("list-legacy");

        let statuses = list(&dir.0, NOW).unwrap();

        assert_eq!(statuses.len(), 1);
        assert_eq!(statuses[0].entry.kid, kid);
        assert_eq!(statuses[0].entry.file, SIGNING_KEY_FILE);
        assert_eq!(statuses[0].state, KeyState::Active);
        assert!(!dir.0.join(MANIFEST_FILE).exists());
        assert!(!dir.0.join(KEYS_DIR).exists());
    }

    #[test]
    fn list_of_an_empty_state_dir_generates_nothing() {
        let dir = TempDir::new("list-empty");

        assert!(list(&dir.0, NOW).unwrap().is_empty());
        let mut out = Vec::new();
        write_list(&[], NOW, &mut out).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("no signing key yet")
        );
        assert!(!dir.0.exists());
    }

    #[test]
    fn list_output_has_one_line_per_key_and_names_the_next_activation() {
        let (dir, old) = legacy_install("list-output");
        let new = rotate(&dir.0, NOW, grace(DAY), grace(7 * DAY))
            .unwrap()
            .new
            .kid;
        let mut out = Vec::new();

        write_list(&list(&dir.0, NOW).unwrap(), NOW, &mut out).unwrap();

        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("STATE"), "{out}");
        assert!(
            lines[1].starts_with("active") && lines[1].contains(&old),
            "{out}"
        );
        assert!(lines[1].contains("2023-11-22T22:13:20Z"), "{out}");
        assert!(
            lines[2].starts_with("published") && lines[2].contains(&new),
            "{out}"
        );
        assert!(lines[2].contains("2023-11-15T22:13:20Z"), "{out}");
        assert!(lines[2].ends_with(&format!("keys/{new}.pk8")), "{out}");
        assert!(
            out.contains("the next key signs from 2023-11-15T22:13:20Z (in 1d)"),
            "{out}"
        );
    }

    #[test]
    fn rotation_output_names_the_new_key_its_start_and_the_restart() {
        let (dir, old) = legacy_install("rotate-output");
        let rotation = rotate(&dir.0, NOW, grace(DAY), grace(7 * DAY)).unwrap();
        let mut out = Vec::new();

        write_rotation(&rotation, NOW, &mut out).unwrap();

        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains(&format!("new signing key {}", rotation.new.kid)),
            "{out}"
        );
        assert!(
            out.contains("signs: from 2023-11-15T22:13:20Z (in 1d)"),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "key {old} stops signing then; it stays in the JWKS until 2023-11-22T22:13:20Z"
            )),
            "{out}"
        );
        assert!(out.contains("Reload plex-oidc now"), "{out}");
    }

    #[test]
    fn a_corrupt_manifest_is_an_error_naming_it_and_nothing_is_regenerated() {
        let (dir, _) = legacy_install("manifest-corrupt");
        rotate(&dir.0, NOW, grace(DAY), grace(7 * DAY)).unwrap();
        let path = dir.0.join(MANIFEST_FILE);
        fs::write(&path, b"{\"keys\": [").unwrap();

        let load_err = KeySet::load_at(&dir.0, NOW).unwrap_err();
        let list_err = list(&dir.0, NOW).unwrap_err();
        let rotate_err = rotate(&dir.0, NOW, grace(DAY), grace(DAY)).unwrap_err();

        for err in [load_err, list_err, rotate_err] {
            assert!(
                matches!(&err, KeyError::InvalidManifest { path: p, .. } if p == &path),
                "{err:?}"
            );
            assert!(err.to_string().contains(&path.display().to_string()));
        }
        assert_eq!(fs::read(&path).unwrap(), b"{\"keys\": [");
        assert_eq!(fs::read_dir(dir.0.join(KEYS_DIR)).unwrap().count(), 1);
    }

    #[test]
    fn manifests_with_unknown_fields_duplicates_or_escaping_paths_are_rejected() {
        let (dir, kid) = legacy_install("manifest-invalid");
        let entry = |extra: Value| {
            let mut e =
                json!({"kid": kid, "file": SIGNING_KEY_FILE, "created_at": 1, "active_from": 1});
            e.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            e
        };
        let cases = [
            (json!({"keys": []}), "lists no keys"),
            (
                json!({"keys": [entry(json!({"retire": 5}))]}),
                "unknown field",
            ),
            (
                json!({"keys": [entry(json!({})), entry(json!({}))]}),
                "listed twice",
            ),
            (
                json!({"keys": [entry(json!({"file": "../signing-key.pk8"}))]}),
                "not a path inside",
            ),
            (
                json!({"keys": [entry(json!({"file": "/etc/signing-key.pk8"}))]}),
                "not a path inside",
            ),
            (json!({"keys": [entry(json!({"kid": ""}))]}), "empty kid"),
        ];

        for (manifest, reason) in cases {
            fs::write(dir.0.join(MANIFEST_FILE), manifest.to_string()).unwrap();
            let err = KeySet::load_at(&dir.0, NOW).unwrap_err();
            assert!(
                matches!(&err, KeyError::InvalidManifest { reason: r, .. } if r.contains(reason)),
                "{manifest}: {err:?}"
            );
        }
    }

    #[test]
    fn a_listed_key_file_that_is_missing_or_holds_another_key_is_an_error_naming_it() {
        let (dir, _) = legacy_install("manifest-files");
        let new = rotate(&dir.0, NOW, grace(DAY), grace(7 * DAY))
            .unwrap()
            .path;
        let stash = dir.0.join("stash.pk8");
        fs::rename(&new, &stash).unwrap();

        let missing = KeySet::load_at(&dir.0, NOW).unwrap_err();
        fs::copy(dir.0.join(SIGNING_KEY_FILE), &new).unwrap();
        let swapped = KeySet::load_at(&dir.0, NOW).unwrap_err();
        fs::write(&new, b"garbage").unwrap();
        let corrupt = KeySet::load_at(&dir.0, NOW).unwrap_err();

        assert!(
            matches!(&missing, KeyError::MissingKeyFile { path, .. } if path == &new),
            "{missing:?}"
        );
        for err in [swapped, corrupt] {
            assert!(
                matches!(&err, KeyError::InvalidListedKey { path, .. } if path == &new),
                "{err:?}"
            );
            assert!(err.to_string().contains(&new.display().to_string()));
        }
    }

    #[test]
    fn a_retired_key_file_may_be_gone() {
        let (dir, _) = legacy_install("manifest-retired-gone");
        let new = rotate(&dir.0, NOW, grace(0), grace(HOUR)).unwrap().new.kid;
        fs::remove_file(dir.0.join(SIGNING_KEY_FILE)).unwrap();

        assert_eq!(load(&dir, NOW + HOUR).signer().kid(), new);
        assert!(matches!(
            KeySet::load_at(&dir.0, NOW),
            Err(KeyError::MissingKeyFile { .. })
        ));
    }

    #[test]
    fn a_manifest_whose_keys_are_all_retired_is_an_error_not_a_new_key() {
        let (dir, kid) = legacy_install("manifest-all-retired");
        fs::write(
            dir.0.join(MANIFEST_FILE),
            json!({"keys": [{"kid": kid, "file": SIGNING_KEY_FILE, "created_at": 1,
                             "active_from": 1, "retire_at": NOW}]})
            .to_string(),
        )
        .unwrap();

        let err = KeySet::load_at(&dir.0, NOW).unwrap_err();

        assert!(matches!(err, KeyError::NoLiveKey { .. }), "{err:?}");
        assert!(err.to_string().contains("keys rotate"), "{err}");
        let statuses = list(&dir.0, NOW).unwrap();
        assert_eq!(statuses[0].state, KeyState::Retired);
        // Rotating out of it starts a key at once.
        let rotation = rotate(&dir.0, NOW, grace(DAY), grace(DAY)).unwrap();
        assert_eq!(rotation.new.active_from, NOW);
        assert_eq!(load(&dir, NOW).signer().kid(), rotation.new.kid);
    }

    #[test]
    fn a_lost_manifest_next_to_rotated_keys_is_an_error_not_a_fallback_to_the_legacy_key() {
        let (dir, _) = legacy_install("manifest-lost");
        rotate(&dir.0, NOW, grace(0), grace(HOUR)).unwrap();
        fs::remove_file(dir.0.join(MANIFEST_FILE)).unwrap();

        let err = KeySet::load_at(&dir.0, NOW).unwrap_err();

        assert!(matches!(err, KeyError::ManifestMissing { .. }), "{err:?}");
        assert!(err.to_string().contains(MANIFEST_FILE), "{err}");
        assert!(matches!(
            rotate(&dir.0, NOW, grace(0), grace(0)),
            Err(KeyError::ManifestMissing { .. })
        ));
    }

    #[test]
    fn a_legacy_install_loads_as_before_and_gets_no_manifest() {
        let (dir, kid) = legacy_install("legacy-unchanged");
        // Leftover temporary files of an interrupted write are not keys.
        fs::create_dir_all(dir.0.join(KEYS_DIR)).unwrap();
        fs::write(dir.0.join(KEYS_DIR).join(".x.pk8.abc.tmp"), b"").unwrap();

        let (keys, generated) = KeySet::load_at(&dir.0, NOW).unwrap();

        assert!(!generated);
        assert_eq!(keys.signer().kid(), kid);
        assert_eq!(keys.signer_at(0).kid(), kid);
        assert_eq!(published_kids(&keys), vec![kid]);
        assert!(!dir.0.join(MANIFEST_FILE).exists());
    }

    #[test]
    fn signer_index_picks_the_last_activated_key_in_creation_order() {
        assert_eq!(signer_index(&[0], 5), 0);
        assert_eq!(signer_index(&[0, 10], 9), 0);
        assert_eq!(signer_index(&[0, 10], 10), 1);
        // A later rotation with a shorter grace overtakes a pending one.
        assert_eq!(signer_index(&[0, 30, 10], 15), 2);
        assert_eq!(signer_index(&[0, 30, 10], 40), 2);
        assert_eq!(signer_index(&[20, 10], 5), 1);
    }

    #[test]
    fn times_print_as_utc_and_spans_in_duration_units() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(NOW), "2023-11-14T22:13:20Z");
        assert_eq!(format_utc(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(format_span(0), "0s");
        assert_eq!(format_span(90), "1m30s");
        assert_eq!(format_span(7 * DAY + 2 * HOUR), "7d2h");
        assert_eq!(relative(NOW, NOW), "now");
        assert_eq!(relative(NOW - 60, NOW), "1m ago");
        assert_eq!(relative(NOW + 59, NOW), "in 59s");
        assert_eq!(relative(NOW + DAY - 1, NOW), "in 1d");
        assert_eq!(relative(NOW - 2 * HOUR - 29, NOW), "2h ago");
        for secs in [1, 59, 3_661, 90_061, 7 * DAY] {
            assert_eq!(
                crate::config::parse_duration(&format_span(secs)),
                Ok(Duration::from_secs(secs))
            );
        }
    }
}
