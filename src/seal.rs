//! Authenticated encryption for cookies and opaque tokens: whatever the server hands out and later takes
//! back is sealed, so a client can neither read nor forge it, and no server-side store is needed for it.
//!
//! AES-256-GCM with a random 96-bit nonce per token; the token's `purpose` is the associated data, so a
//! token minted for one use (say, a login cookie) never opens as another (say, a refresh token).
//!
//! The key in `seal.key` is not used directly: one AES key is derived from it with HKDF-SHA256, so a
//! later feature needing its own secret (an HMAC, a new cipher) derives another from the same file
//! without reusing key material across algorithms. Per-purpose sub-keys were considered and not
//! taken: the associated data already separates purposes cryptographically, while keys per purpose would
//! cost an HKDF and an AES key schedule per call (or a cache keyed by arbitrary strings) for one gain,
//! separate nonce budgets, which at 2^32 tokens per key this service never approaches.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::keys::secret_file::{self, FileError};
use crate::random::{Random as _, SystemRandom};

/// File name of the seal key inside the state directory.
pub const SEAL_KEY_FILE: &str = "seal.key";

const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Versioned so a future change of cipher derives a different key instead of misreading old tokens.
const HKDF_SALT: &[u8] = b"plex-oidc seal";
const HKDF_INFO: &[u8] = b"aes-256-gcm v1";

#[derive(thiserror::Error, Debug)]
pub enum SealError {
    #[error("cannot read or write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} does not hold a seal key ({reason}); delete it to generate a new one (signed-in sessions \
         and outstanding sealed tokens then become invalid)",
        path.display()
    )]
    InvalidKey { path: PathBuf, reason: String },
}

impl From<FileError> for SealError {
    fn from(e: FileError) -> Self {
        SealError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

pub struct Sealer {
    key: RandomizedNonceKey,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer { key: <redacted> }")
    }
}

impl Sealer {
    /// Loads the 32-byte key in `state_dir/seal.key`, or on first start generates one and writes it
    /// atomically (0600; `state_dir` created 0700 if missing). A file of any other length is an error.
    pub fn load_or_generate(state_dir: &Path) -> Result<Sealer, SealError> {
        let path = state_dir.join(SEAL_KEY_FILE);
        if let Some(bytes) = secret_file::read(&path)? {
            let key: [u8; KEY_LEN] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| SealError::InvalidKey {
                        reason: format!("expected {KEY_LEN} bytes, found {}", bytes.len()),
                        path,
                    })?;
            return Ok(Sealer::from_key(key));
        }

        let mut key = [0u8; KEY_LEN];
        SystemRandom.fill(&mut key);
        secret_file::write_atomically(state_dir, SEAL_KEY_FILE, &key)?;
        Ok(Sealer::from_key(key))
    }

    pub fn from_key(key: [u8; KEY_LEN]) -> Sealer {
        let mut aes_key = [0u8; KEY_LEN];
        let derived = Salt::new(HKDF_SHA256, HKDF_SALT)
            .extract(&key)
            .expand(&[HKDF_INFO], &AES_256_GCM)
            .and_then(|okm| okm.fill(&mut aes_key));
        let key = derived.and_then(|()| RandomizedNonceKey::new(&AES_256_GCM, &aes_key));
        match key {
            Ok(key) => Sealer { key },
            // Both steps fail only for a wrong output length, fixed here at compile time.
            Err(_) => unreachable!("HKDF and AES-256-GCM accept a 32-byte key"),
        }
    }

    /// Encrypts `plaintext` for `purpose`: base64url (no padding) of nonce || ciphertext || tag.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let end = NONCE_LEN + plaintext.len();
        let mut buf = vec![0u8; end + TAG_LEN];
        buf[NONCE_LEN..end].copy_from_slice(plaintext);
        let sealed = self
            .key
            .seal_in_place_separate_tag(Aad::from(purpose.as_bytes()), &mut buf[NONCE_LEN..end]);
        let Ok((nonce, tag)) = sealed else {
            // Only a failing system CSPRNG (nonce) gets here; as in `random::SystemRandom`, carrying
            // on without randomness is worse than stopping.
            tracing::error!("AES-GCM sealing failed; aborting");
            std::process::abort();
        };
        buf[..NONCE_LEN].copy_from_slice(nonce.as_ref());
        buf[end..].copy_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// The plaintext of a token sealed for `purpose` by this key; `None` for anything else, including
    /// any garbage a client might send.
    pub fn open(&self, purpose: &str, token: &str) -> Option<Vec<u8>> {
        let mut buf = URL_SAFE_NO_PAD.decode(token).ok()?;
        if buf.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, in_out) = buf.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let len = self
            .key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), in_out)
            .ok()?
            .len();
        buf.copy_within(NONCE_LEN..NONCE_LEN + len, 0);
        buf.truncate(len);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::secret_file::TempDir;
    use std::os::unix::fs::PermissionsExt as _;

    fn sealer() -> Sealer {
        Sealer::from_key([7; 32])
    }

    #[test]
    fn sealed_data_opens_for_the_same_purpose() {
        let sealer = sealer();

        for plaintext in [
            &b""[..],
            b"x",
            b"{\"state\":\"abc\",\"nonce\":\"n\"}",
            &[0u8; 4096],
        ] {
            let token = sealer.seal("login", plaintext);

            assert_eq!(sealer.open("login", &token).as_deref(), Some(plaintext));
        }
    }

    #[test]
    fn token_is_unpadded_base64url_of_nonce_ciphertext_and_tag() {
        let token = sealer().seal("login", b"hello");

        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();

        assert_eq!(raw.len(), NONCE_LEN + 5 + TAG_LEN);
        assert!(!raw.windows(5).any(|w| w == b"hello"), "plaintext visible");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn sealing_twice_gives_different_tokens() {
        let sealer = sealer();

        assert_ne!(sealer.seal("login", b"same"), sealer.seal("login", b"same"));
    }

    #[test]
    fn token_for_one_purpose_does_not_open_for_another() {
        let sealer = sealer();
        let token = sealer.seal("login", b"secret");

        assert_eq!(sealer.open("refresh", &token), None);
        assert_eq!(sealer.open("login ", &token), None);
        assert_eq!(sealer.open("", &token), None);
    }

    #[test]
    fn token_from_another_key_does_not_open() {
        let token = Sealer::from_key([8; 32]).seal("login", b"secret");

        assert_eq!(sealer().open("login", &token), None);
    }

    #[test]
    fn any_flipped_bit_makes_the_token_not_open() {
        let sealer = sealer();
        let raw = URL_SAFE_NO_PAD
            .decode(sealer.seal("login", b"secret"))
            .unwrap();

        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut tampered = raw.clone();
                tampered[i] ^= 1 << bit;
                let token = URL_SAFE_NO_PAD.encode(&tampered);
                assert_eq!(sealer.open("login", &token), None, "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn truncated_or_extended_tokens_do_not_open() {
        let sealer = sealer();
        let token = sealer.seal("login", b"secret");

        for cut in 0..token.len() {
            assert_eq!(sealer.open("login", &token[..cut]), None, "cut at {cut}");
        }
        for suffix in ["A", "AA", "AAAA", "=", "=="] {
            assert_eq!(sealer.open("login", &format!("{token}{suffix}")), None);
        }
    }

    #[test]
    fn garbage_strings_do_not_open() {
        let sealer = sealer();
        let fixed = [
            "",
            "a",
            "====",
            "!!!!",
            "ü",
            "\0\0\0",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+",
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
        ];
        for token in fixed {
            assert_eq!(sealer.open("login", token), None, "{token:?}");
        }
        // Pseudo-random strings over the base64url alphabet and beyond, of every length up to 200.
        let alphabet: Vec<char> =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/. é"
                .chars()
                .collect();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..200 {
            let token: String = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            assert_eq!(sealer.open("login", &token), None, "{token:?}");
        }
    }

    #[test]
    fn key_is_generated_once_and_tokens_survive_a_restart() {
        let dir = TempDir::new("seal-reload");

        let first = Sealer::load_or_generate(&dir.0).unwrap();
        let token = first.seal("login", b"across restarts");
        let key_file = std::fs::read(dir.0.join(SEAL_KEY_FILE)).unwrap();
        let second = Sealer::load_or_generate(&dir.0).unwrap();

        assert_eq!(key_file.len(), 32);
        assert_eq!(std::fs::read(dir.0.join(SEAL_KEY_FILE)).unwrap(), key_file);
        assert_eq!(
            second.open("login", &token).as_deref(),
            Some(&b"across restarts"[..])
        );
    }

    #[test]
    fn generated_keys_differ_between_state_dirs() {
        let (a, b) = (TempDir::new("seal-a"), TempDir::new("seal-b"));

        let token = Sealer::load_or_generate(&a.0).unwrap().seal("login", b"x");

        assert_eq!(
            Sealer::load_or_generate(&b.0)
                .unwrap()
                .open("login", &token),
            None
        );
    }

    #[test]
    fn key_file_is_private_to_its_owner() {
        let dir = TempDir::new("seal-mode");

        Sealer::load_or_generate(&dir.0.join("state")).unwrap();

        let meta = std::fs::metadata(dir.0.join("state").join(SEAL_KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dir_meta = std::fs::metadata(dir.0.join("state")).unwrap();
        assert_eq!(dir_meta.permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn key_file_of_the_wrong_length_is_an_error_naming_the_path_and_is_left_alone() {
        let dir = TempDir::new("seal-corrupt");
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join(SEAL_KEY_FILE);
        std::fs::write(&path, [1u8; 31]).unwrap();

        let err = Sealer::load_or_generate(&dir.0).unwrap_err();

        match &err {
            SealError::InvalidKey { path: p, reason } => {
                assert_eq!(p, &path);
                assert!(reason.contains("found 31"), "{reason}");
            }
            other => panic!("expected InvalidKey, got {other:?}"),
        }
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(std::fs::read(&path).unwrap(), [1u8; 31]);
    }

    #[test]
    fn debug_output_hides_the_key() {
        let debug = format!("{:?}", Sealer::from_key([0xAB; 32]));

        assert_eq!(debug, "Sealer { key: <redacted> }");
    }
}
