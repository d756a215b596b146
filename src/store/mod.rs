//! The embedded store: grants that must survive a restart (refresh-token families, revocations).
//!
//! An append-only journal of JSON lines under `state_dir`, fsynced before a write is acknowledged, replayed
//! at start and compacted then. A crash can only tear the last line, which was never acknowledged and is
//! dropped; any other unreadable line means the file is damaged, and the service refuses to start rather
//! than silently forget tokens (unless the operator asks to discard the damage).
//!
//! The store knows nothing of OIDC or Plex: a family's `payload` is opaque to it.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub const JOURNAL_FILE: &str = "grants.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the grant store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the grant store {path} is damaged at line {line}: {reason}. Refusing to start, so no refresh token is lost silently. Restore the file from a backup, or start with --discard-corrupt-store to drop the unreadable lines"
    )]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// One refresh-token family: the grant behind a chain of rotated refresh tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    pub id: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The generation of the only refresh token that is still valid; older ones are reuse.
    pub generation: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Whatever the owner needs to continue the grant (claims, an upstream credential); opaque here.
    pub payload: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Entry {
    Put {
        family: Family,
    },
    Rotate {
        id: String,
        generation: u64,
        expires_at: u64,
    },
    Remove {
        id: String,
    },
    RevokeGrant {
        id: String,
        until: u64,
    },
}

/// What happened to a presented refresh-token generation.
#[derive(Debug, PartialEq)]
pub enum Rotation {
    Rotated(Family),
    /// An older generation: the token was used before. The family is gone now.
    Reused(Family),
    Unknown,
}

#[derive(Default)]
struct State {
    families: HashMap<String, Family>,
    revoked_grants: HashMap<String, u64>,
}

pub struct Store {
    path: PathBuf,
    journal: Mutex<File>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the journal in `dir`, replays it, and rewrites it compacted, dropping what expired
    /// before `now`.
    pub fn open(dir: &Path, now: u64, discard_corrupt: bool) -> Result<Store, StoreError> {
        let path = dir.join(JOURNAL_FILE);
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let mut state = State::default();
        match File::open(&path) {
            Ok(file) => replay(&path, file, &mut state, discard_corrupt)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        state.families.retain(|_, f| f.expires_at > now);
        state.revoked_grants.retain(|_, until| *until > now);

        // Compact: the live state becomes the whole journal, swapped in atomically.
        let tmp = dir.join(format!(".{JOURNAL_FILE}.tmp"));
        {
            let mut out = create_private(&tmp).map_err(io_err)?;
            let mut buf = Vec::new();
            for family in state.families.values() {
                write_entry(
                    &mut buf,
                    &Entry::Put {
                        family: family.clone(),
                    },
                );
            }
            for (id, until) in &state.revoked_grants {
                write_entry(
                    &mut buf,
                    &Entry::RevokeGrant {
                        id: id.clone(),
                        until: *until,
                    },
                );
            }
            out.write_all(&buf).map_err(io_err)?;
            out.sync_all().map_err(io_err)?;
        }
        fs::rename(&tmp, &path).map_err(io_err)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        let journal = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err)?;
        Ok(Store {
            path,
            journal: Mutex::new(journal),
            state: Mutex::new(state),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends and fsyncs; only then is the change applied in memory and acknowledged.
    fn append(&self, entry: &Entry) -> Result<(), StoreError> {
        let mut buf = Vec::with_capacity(256);
        write_entry(&mut buf, entry);
        let mut file = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(&buf)
            .and_then(|_| file.sync_data())
            .map_err(|source| StoreError::Io {
                path: self.path.clone(),
                source,
            })
    }

    pub fn put(&self, family: Family) -> Result<(), StoreError> {
        let mut state = self.lock();
        self.append(&Entry::Put {
            family: family.clone(),
        })?;
        state.families.insert(family.id.clone(), family);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<Family> {
        self.lock().families.get(id).cloned()
    }

    /// Moves family `id` from `generation` to the next one, atomically: of two concurrent uses of the
    /// same token, one rotates and the other is reuse.
    pub fn rotate(
        &self,
        id: &str,
        generation: u64,
        expires_at: u64,
    ) -> Result<Rotation, StoreError> {
        let mut state = self.lock();
        let Some(family) = state.families.get(id).cloned() else {
            return Ok(Rotation::Unknown);
        };
        if family.generation != generation {
            self.append(&Entry::Remove { id: id.to_owned() })?;
            state.families.remove(id);
            return Ok(Rotation::Reused(family));
        }
        let next = generation + 1;
        self.append(&Entry::Rotate {
            id: id.to_owned(),
            generation: next,
            expires_at,
        })?;
        let entry = state
            .families
            .get_mut(id)
            .map(|f| {
                f.generation = next;
                f.expires_at = expires_at;
                f.clone()
            })
            .unwrap_or(family);
        Ok(Rotation::Rotated(entry))
    }

    pub fn remove(&self, id: &str) -> Result<Option<Family>, StoreError> {
        let mut state = self.lock();
        if !state.families.contains_key(id) {
            return Ok(None);
        }
        self.append(&Entry::Remove { id: id.to_owned() })?;
        Ok(state.families.remove(id))
    }

    /// Removes every family of a provider session (logout, access withdrawn) and returns them.
    pub fn remove_session(&self, session_id: &str) -> Result<Vec<Family>, StoreError> {
        let mut state = self.lock();
        let ids: Vec<String> = state
            .families
            .values()
            .filter(|f| f.session_id.as_deref() == Some(session_id))
            .map(|f| f.id.clone())
            .collect();
        let mut removed = Vec::new();
        for id in ids {
            self.append(&Entry::Remove { id: id.clone() })?;
            if let Some(f) = state.families.remove(&id) {
                removed.push(f);
            }
        }
        Ok(removed)
    }

    /// Families of `subject`-owned sessions are found by the caller through this scan (rare: logout).
    pub fn families_of_session(&self, session_id: &str) -> Vec<Family> {
        self.lock()
            .families
            .values()
            .filter(|f| f.session_id.as_deref() == Some(session_id))
            .cloned()
            .collect()
    }

    pub fn revoke_grant(&self, id: &str, until: u64) -> Result<(), StoreError> {
        let mut state = self.lock();
        self.append(&Entry::RevokeGrant {
            id: id.to_owned(),
            until,
        })?;
        state.revoked_grants.insert(id.to_owned(), until);
        Ok(())
    }

    pub fn is_grant_revoked(&self, id: &str, now: u64) -> bool {
        self.lock()
            .revoked_grants
            .get(id)
            .is_some_and(|until| *until > now)
    }

    pub fn family_count(&self) -> usize {
        self.lock().families.len()
    }

    /// Whether the journal still takes writes (for readiness): an empty fsync.
    pub fn writable(&self) -> bool {
        let file = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        file.sync_data().is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn write_entry(buf: &mut Vec<u8>, entry: &Entry) {
    // Serializing these plain structs cannot fail.
    if serde_json::to_writer(&mut *buf, entry).is_ok() {
        buf.push(b'\n');
    }
}

fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

fn replay(
    path: &Path,
    file: File,
    state: &mut State,
    discard_corrupt: bool,
) -> Result<(), StoreError> {
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        // A torn final line: the write never completed, so it was never acknowledged.
        if line.last() != Some(&b'\n') {
            tracing::warn!(path = %path.display(), line = number, "dropping a torn last journal line from an interrupted write");
            return Ok(());
        }
        match serde_json::from_slice::<Entry>(line.trim_ascii_end()) {
            Ok(entry) => apply(state, entry),
            Err(e) if discard_corrupt => {
                tracing::error!(path = %path.display(), line = number, error = %e, "discarding a damaged journal line as asked");
            }
            Err(e) => {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    line: number,
                    reason: e.to_string(),
                });
            }
        }
    }
}

fn apply(state: &mut State, entry: Entry) {
    match entry {
        Entry::Put { family } => {
            state.families.insert(family.id.clone(), family);
        }
        Entry::Rotate {
            id,
            generation,
            expires_at,
        } => {
            if let Some(f) = state.families.get_mut(&id) {
                f.generation = generation;
                f.expires_at = expires_at;
            }
        }
        Entry::Remove { id } => {
            state.families.remove(&id);
        }
        Entry::RevokeGrant { id, until } => {
            state.revoked_grants.insert(id, until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(label: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("plex-oidc-store-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn family(id: &str, session: Option<&str>) -> Family {
        Family {
            id: id.into(),
            client_id: "grafana".into(),
            session_id: session.map(Into::into),
            generation: 0,
            expires_at: 10_000,
            payload: "{}".into(),
        }
    }

    #[test]
    fn families_and_rotations_survive_a_reopen() {
        let d = dir("reopen");
        let s = Store::open(&d, 0, false).unwrap();
        s.put(family("a", Some("s1"))).unwrap();
        s.put(family("b", None)).unwrap();
        assert!(
            matches!(s.rotate("a", 0, 20_000).unwrap(), Rotation::Rotated(f) if f.generation == 1)
        );
        s.remove("b").unwrap();
        s.revoke_grant("g", 5_000).unwrap();
        drop(s);

        let s = Store::open(&d, 100, false).unwrap();
        let a = s.get("a").unwrap();
        assert_eq!((a.generation, a.expires_at), (1, 20_000));
        assert!(s.get("b").is_none());
        assert!(s.is_grant_revoked("g", 100));
        assert!(!s.is_grant_revoked("g", 5_000));
    }

    #[test]
    fn an_old_generation_is_reuse_and_removes_the_family() {
        let d = dir("reuse");
        let s = Store::open(&d, 0, false).unwrap();
        s.put(family("a", None)).unwrap();
        s.rotate("a", 0, 10_000).unwrap();
        assert!(matches!(
            s.rotate("a", 0, 10_000).unwrap(),
            Rotation::Reused(_)
        ));
        assert_eq!(s.rotate("a", 1, 10_000).unwrap(), Rotation::Unknown);
    }

    #[test]
    fn expired_families_are_dropped_at_open() {
        let d = dir("expiry");
        let s = Store::open(&d, 0, false).unwrap();
        s.put(family("a", None)).unwrap();
        drop(s);
        let s = Store::open(&d, 10_001, false).unwrap();
        assert_eq!(s.family_count(), 0);
    }

    #[test]
    fn a_torn_last_line_is_dropped_but_a_damaged_middle_refuses_to_start() {
        let d = dir("corrupt");
        let s = Store::open(&d, 0, false).unwrap();
        s.put(family("a", None)).unwrap();
        drop(s);
        let path = d.join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"op\":\"put\",\"fam").unwrap();
        drop(f);
        let s = Store::open(&d, 0, false).unwrap();
        assert!(s.get("a").is_some());
        drop(s);

        let mut text = fs::read_to_string(&path).unwrap();
        text.insert_str(0, "garbage\n");
        fs::write(&path, text).unwrap();
        let err = Store::open(&d, 0, false).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { line: 1, .. }), "{err}");
        assert!(err.to_string().contains("--discard-corrupt-store"));

        let s = Store::open(&d, 0, true).unwrap();
        assert!(s.get("a").is_some(), "the readable lines are kept");
    }

    #[test]
    fn removing_a_session_removes_only_its_families() {
        let d = dir("session");
        let s = Store::open(&d, 0, false).unwrap();
        s.put(family("a", Some("s1"))).unwrap();
        s.put(family("b", Some("s1"))).unwrap();
        s.put(family("c", Some("s2"))).unwrap();
        assert_eq!(s.remove_session("s1").unwrap().len(), 2);
        assert!(s.get("c").is_some());
    }
}
