//! Secret files in the state directory (signing key, seal key).
//!
//! They are written to a temporary file, fsynced, then renamed into place, so a crash leaves either no
//! file (the next start generates one) or the complete file, never a torn one that would later be
//! rejected as corrupt. They are created 0600 inside a 0700 directory from the first byte on, so there is
//! no window in which another user could read them.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// An I/O failure and the file or directory it concerns.
#[derive(Debug)]
pub(crate) struct FileError {
    pub path: PathBuf,
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |source| FileError {
        path: path.to_path_buf(),
        source,
    }
}

/// The contents of `path`, or `None` if it does not exist yet.
pub(crate) fn read(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    match fs::read(path) {
        Ok(bytes) => {
            warn_if_exposed(path);
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(at(path)(e)),
    }
}

/// Operators may provision the file themselves; a loose mode is worth a warning but not a refusal
/// (secret managers mount files with modes we do not control).
fn warn_if_exposed(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:o}"),
                "secret file is accessible to other users; chmod 600 it"
            );
        }
    }
}

/// Writes `contents` to `dir/name` with mode 0600, creating `dir` with mode 0700 if missing.
///
/// A single process owns the state directory, so the rename may replace a file; callers only write
/// after finding none.
pub(crate) fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> Result<(), FileError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(at(dir))?;

    let path = dir.join(name);
    // A random suffix so a leftover from a crashed run never blocks `create_new`.
    let mut suffix = [0u8; 8];
    aws_lc_rs::rand::fill(&mut suffix).map_err(|_| at(dir)(io::Error::other("no randomness")))?;
    let suffix = URL_SAFE_NO_PAD.encode(suffix);
    let tmp = dir.join(format!(".{name}.{suffix}.tmp"));

    let result = write_and_rename(&tmp, &path, contents);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;

    // Persists the rename itself. Best effort: some filesystems refuse to fsync a directory, and losing
    // the rename in a power cut only means a fresh key on the next start.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn write_and_rename(tmp: &Path, path: &Path, contents: &[u8]) -> Result<(), FileError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(at(tmp))?;
    file.write_all(contents).map_err(at(tmp))?;
    file.sync_all().map_err(at(tmp))?;
    drop(file);
    fs::rename(tmp, path).map_err(at(path))
}

/// A fresh directory under the system temp dir, removed again on drop.
#[cfg(test)]
pub(crate) struct TempDir(pub PathBuf);

#[cfg(test)]
impl TempDir {
    pub(crate) fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "plex-oidc-{label}-{}-{n}-{nanos}",
            std::process::id()
        ));
        TempDir(path)
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_missing_file_reads_as_none() {
        let dir = TempDir::new("secret-missing");
        assert!(read(&dir.0.join("nothing")).unwrap().is_none());
    }

    #[test]
    fn written_file_is_0600_in_a_0700_directory_and_reads_back() {
        let dir = TempDir::new("secret-write");
        let state = dir.0.join("nested").join("state");

        write_atomically(&state, "secret", b"hunter2").unwrap();

        assert_eq!(
            read(&state.join("secret")).unwrap().as_deref(),
            Some(&b"hunter2"[..])
        );
        assert_eq!(mode(&state.join("secret")), 0o600);
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&dir.0.join("nested")), 0o700);
    }

    #[test]
    fn no_temporary_file_is_left_behind() {
        let dir = TempDir::new("secret-tmp");

        write_atomically(&dir.0, "secret", b"x").unwrap();

        let names: Vec<_> = fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["secret".to_string()]);
    }

    #[test]
    fn an_existing_directory_keeps_its_mode() {
        let dir = TempDir::new("secret-existing");
        fs::create_dir_all(&dir.0).unwrap();
        fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o750)).unwrap();

        write_atomically(&dir.0, "secret", b"x").unwrap();

        assert_eq!(mode(&dir.0), 0o750);
        assert_eq!(mode(&dir.0.join("secret")), 0o600);
    }

    #[test]
    fn an_unreadable_path_is_an_error_naming_it() {
        let dir = TempDir::new("secret-unreadable");
        // A directory where a file is expected: reading fails with something other than NotFound.
        fs::create_dir_all(dir.0.join("secret")).unwrap();

        let err = read(&dir.0.join("secret")).unwrap_err();

        assert_eq!(err.path, dir.0.join("secret"));
    }
}
