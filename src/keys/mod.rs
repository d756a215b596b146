//! RS256 signing keys, the published JWKS, and the SHA-256 helpers OIDC needs (`at_hash`, PKCE).
//!
//! All crypto is aws-lc-rs. The private key lives in `state_dir/signing-key.pk8` (PKCS#8 DER); a corrupt
//! file is an error, never silently replaced, because a new key would invalidate every issued token.
//! After `plex-oidc keys rotate`, `state_dir/keys.json` schedules several keys instead ([`rotation`]).

pub mod rotation;
pub(crate) mod secret_file;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    KeyPair as _, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
    RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use secret_file::FileError;

/// File name of the signing key inside the state directory.
pub const SIGNING_KEY_FILE: &str = "signing-key.pk8";

/// Relying parties reject RSA below 2048 bits (`RELYING_PARTIES.md` rule 2). aws-lc-rs refuses such keys
/// today too; this keeps the guarantee ours.
const MIN_MODULUS_BYTES: usize = 2048 / 8;

#[derive(thiserror::Error, Debug)]
pub enum KeyError {
    #[error("cannot read or write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} does not hold a usable RSA signing key ({reason}); restore it from a backup, or delete it \
         to generate a new one (tokens already issued will then fail to verify)",
        path.display()
    )]
    InvalidKey { path: PathBuf, reason: String },
    #[error(
        "{} does not hold the signing key keys.json lists ({reason}); restore it from a backup",
        path.display()
    )]
    InvalidListedKey { path: PathBuf, reason: String },
    #[error(
        "{} is listed in keys.json (key {kid}) but missing; restore it from a backup",
        path.display()
    )]
    MissingKeyFile { path: PathBuf, kid: String },
    #[error(
        "{} is not a valid key manifest ({reason}); restore it from a backup",
        path.display()
    )]
    InvalidManifest { path: PathBuf, reason: String },
    #[error(
        "{} is missing but {} holds rotated signing keys; restore it from a backup (if `plex-oidc keys \
         rotate` was interrupted, delete the key files it left instead)",
        path.display(),
        keys_dir.display()
    )]
    ManifestMissing { path: PathBuf, keys_dir: PathBuf },
    #[error(
        "every key in {} is retired; run `plex-oidc keys rotate` to add one that signs at once",
        path.display()
    )]
    NoLiveKey { path: PathBuf },
    #[error("not a usable RSA signing key: {0}")]
    Rejected(String),
    #[error("cannot generate an RSA signing key: {0}")]
    Generate(String),
    #[error("RSA signing failed")]
    Sign,
    #[error("cannot serialize JWT claims")]
    Serialize(#[source] serde_json::Error),
    /// A JWS that is malformed, not RS256, signed by a key we do not publish, or tampered with.
    /// The reason is a fixed description: the token itself never appears in an error.
    #[error("invalid JWT: {0}")]
    InvalidJwt(&'static str),
}

impl From<FileError> for KeyError {
    fn from(e: FileError) -> Self {
        KeyError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// An RSA key pair that signs JWTs with RS256.
pub struct SigningKey {
    pair: RsaKeyPair,
    verifier: ParsedPublicKey,
    kid: String,
    jwk: Value,
    /// base64url of the JOSE header, which is the same for every token this key signs.
    header_b64: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &"RS256")
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads `state_dir/signing-key.pk8` (PKCS#8 DER of an RSA key of at least 2048 bits) or generates an
    /// RSA-2048 key and writes it atomically (0600; `state_dir` created 0700 if missing).
    /// Returns whether the key was generated.
    pub fn load_or_generate(state_dir: &Path) -> Result<(SigningKey, bool), KeyError> {
        if let Some(key) = SigningKey::load(state_dir)? {
            return Ok((key, false));
        }

        let pair = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let der = pair
            .as_der()
            .map_err(|e| KeyError::Generate(format!("cannot encode as PKCS#8: {e}")))?;
        secret_file::write_atomically(state_dir, SIGNING_KEY_FILE, der.as_ref())?;
        Ok((SigningKey::from_pair(pair)?, true))
    }

    /// Loads `state_dir/signing-key.pk8`, or `None` if there is none.
    fn load(state_dir: &Path) -> Result<Option<SigningKey>, KeyError> {
        let path = state_dir.join(SIGNING_KEY_FILE);
        let Some(der) = secret_file::read(&path)? else {
            return Ok(None);
        };
        SigningKey::from_pkcs8(&der)
            .map(Some)
            .map_err(|e| KeyError::InvalidKey {
                path,
                reason: match e {
                    KeyError::Rejected(reason) => reason,
                    other => other.to_string(),
                },
            })
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, KeyError> {
        let pair = RsaKeyPair::from_pkcs8(der)
            .map_err(|e| KeyError::Rejected(format!("not a PKCS#8 RSA private key: {e}")))?;
        SigningKey::from_pair(pair)
    }

    fn from_pair(pair: RsaKeyPair) -> Result<SigningKey, KeyError> {
        if pair.public_modulus_len() < MIN_MODULUS_BYTES {
            return Err(KeyError::Rejected(format!(
                "RSA key of {} bits is shorter than 2048",
                pair.public_modulus_len() * 8
            )));
        }
        // Big-endian without leading zeros: exactly the JWK encoding of `n` and `e` (RFC 7518 §6.3.1).
        let components = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let verifier = components
            .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        let n = URL_SAFE_NO_PAD.encode(&components.n);
        let e = URL_SAFE_NO_PAD.encode(&components.e);
        let kid = jwk_thumbprint(&n, &e);
        let header_b64 =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{kid}"}}"#));
        let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e});
        Ok(SigningKey {
            pair,
            verifier,
            kid,
            jwk,
            header_b64,
        })
    }

    /// RFC 7638 JWK thumbprint of the public key, so the same key always gets the same `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `{"kty":"RSA","use":"sig","alg":"RS256","kid":..,"n":..,"e":..}`
    pub fn public_jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// Compact JWS: header `{"alg":"RS256","typ":"JWT","kid":kid}`, base64url (no padding) JSON of
    /// `claims`, RSASSA-PKCS1-v1_5 SHA-256 signature.
    pub fn sign_jwt<T: serde::Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let claims = serde_json::to_vec(claims).map_err(KeyError::Serialize)?;
        let sig_len = self.pair.public_modulus_len();
        let mut token = String::with_capacity(
            self.header_b64.len() + 2 + (claims.len() + sig_len).div_ceil(3) * 4,
        );
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);

        let mut signature = vec![0u8; sig_len];
        // aws-lc-rs ignores the RNG for PKCS#1 v1.5, which is deterministic anyway.
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(&RSA_PKCS1_SHA256, &rng, token.as_bytes(), &mut signature)
            .map_err(|_| KeyError::Sign)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }

    /// Verifies a compact JWS signed by this key (RS256 only; `kid`, if present, must be ours) and
    /// returns its claims. Does NOT check `exp`: callers decide (an `id_token_hint` may be expired).
    pub fn verify_jwt(&self, token: &str) -> Result<Value, KeyError> {
        let jws = Jws::parse(token)?;
        if jws.kid.as_deref().is_some_and(|kid| kid != self.kid) {
            return Err(KeyError::InvalidJwt("signed by an unknown key"));
        }
        self.verify_parsed(&jws)
    }

    fn verify_parsed(&self, jws: &Jws<'_>) -> Result<Value, KeyError> {
        self.verifier
            .verify_sig(jws.signing_input.as_bytes(), &jws.signature)
            .map_err(|_| KeyError::InvalidJwt("bad signature"))?;
        let claims = URL_SAFE_NO_PAD
            .decode(jws.payload_b64)
            .map_err(|_| KeyError::InvalidJwt("payload is not base64url"))?;
        match serde_json::from_slice(&claims) {
            Ok(claims @ Value::Object(_)) => Ok(claims),
            _ => Err(KeyError::InvalidJwt("claims are not a JSON object")),
        }
    }
}

/// The parts of a compact JWS that verification needs, taken apart before any signature check.
struct Jws<'a> {
    kid: Option<String>,
    signing_input: &'a str,
    payload_b64: &'a str,
    signature: Vec<u8>,
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// RFC 7515 §4.1.11: a critical extension we do not understand means reject; we understand none.
    #[serde(default)]
    crit: Option<Value>,
}

impl<'a> Jws<'a> {
    fn parse(token: &'a str) -> Result<Jws<'a>, KeyError> {
        let malformed = KeyError::InvalidJwt("not a compact JWS");
        let (signing_input, signature_b64) = token.rsplit_once('.').ok_or(malformed)?;
        let (header_b64, payload_b64) = signing_input
            .split_once('.')
            .ok_or(KeyError::InvalidJwt("not a compact JWS"))?;
        if payload_b64.contains('.') {
            return Err(KeyError::InvalidJwt("not a compact JWS"));
        }
        let header = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| KeyError::InvalidJwt("header is not base64url"))?;
        let header: JoseHeader = serde_json::from_slice(&header)
            .map_err(|_| KeyError::InvalidJwt("header is not a JOSE header"))?;
        // Only RS256: accepting the header's word for the algorithm is the classic `none`/HS256 forgery.
        if header.alg != "RS256" {
            return Err(KeyError::InvalidJwt("algorithm is not RS256"));
        }
        if header.crit.is_some() {
            return Err(KeyError::InvalidJwt("unsupported critical header"));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| KeyError::InvalidJwt("signature is not base64url"))?;
        Ok(Jws {
            kid: header.kid,
            signing_input,
            payload_b64,
            signature,
        })
    }
}

/// RFC 7638 thumbprint of an RSA JWK: SHA-256 over `{"e":..,"kty":"RSA","n":..}` (members sorted, no
/// whitespace), base64url. base64url values need no JSON escaping, so formatting is canonical.
fn jwk_thumbprint(n_b64: &str, e_b64: &str) -> String {
    let canonical = format!(r#"{{"e":"{e_b64}","kty":"RSA","n":"{n_b64}"}}"#);
    URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes()))
}

/// The published keys and the one that signs.
///
/// Keys are held in creation order with the second from which each may sign; the signer is the last
/// key whose activation has passed, picked per call, so a rotated key takes over at its time without a
/// restart. Which keys are published is decided at load: a key retires at the first start after its
/// `retire_at`.
pub struct KeySet {
    keys: Vec<SigningKey>,
    /// Unix seconds, parallel to `keys`.
    active_from: Vec<u64>,
    jwks_json: String,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.keys)
            .field("active_from", &self.active_from)
            .field("signer", &self.signer().kid)
            .finish()
    }
}

impl KeySet {
    /// The keys of `state_dir` as of now; see [`KeySet::load_at`].
    pub fn load_or_generate(state_dir: &Path) -> Result<(KeySet, bool), KeyError> {
        KeySet::load_at(state_dir, unix_now())
    }

    /// With a `keys.json`: every listed key not retired at `now_unix` (a missing or damaged file is an
    /// error naming it). Without one, the legacy single key `signing-key.pk8`, generated if missing.
    /// Returns whether a key was generated.
    pub fn load_at(state_dir: &Path, now_unix: u64) -> Result<(KeySet, bool), KeyError> {
        let Some(entries) = rotation::read_manifest(state_dir)? else {
            let (key, generated) = SigningKey::load_or_generate(state_dir)?;
            return Ok((KeySet::from_signer(key), generated));
        };
        let live = rotation::load_live(state_dir, &entries, now_unix)?;
        let keys = KeySet::scheduled(live).ok_or_else(|| KeyError::NoLiveKey {
            path: state_dir.join(rotation::MANIFEST_FILE),
        })?;
        tracing::info!(
            published = ?keys.keys.iter().map(SigningKey::kid).collect::<Vec<_>>(),
            signer = keys.signer_at(now_unix).kid(),
            "loaded the signing keys of {}",
            rotation::MANIFEST_FILE
        );
        Ok((keys, false))
    }

    /// A key set that publishes and signs with `signer` alone (tests, and keys held outside a state dir).
    pub fn from_signer(signer: SigningKey) -> KeySet {
        KeySet::build(vec![signer], vec![0])
    }

    /// `(active_from, key)` pairs in creation order; `None` if empty.
    fn scheduled(keys: Vec<(u64, SigningKey)>) -> Option<KeySet> {
        if keys.is_empty() {
            return None;
        }
        let (active_from, keys) = keys.into_iter().unzip();
        Some(KeySet::build(keys, active_from))
    }

    fn build(keys: Vec<SigningKey>, active_from: Vec<u64>) -> KeySet {
        let jwks: Vec<Value> = keys.iter().map(SigningKey::public_jwk).collect();
        let jwks_json = json!({ "keys": jwks }).to_string();
        KeySet {
            keys,
            active_from,
            jwks_json,
        }
    }

    /// The key that signs now (system time).
    pub fn signer(&self) -> &SigningKey {
        match self.keys.as_slice() {
            [only] => only,
            _ => self.signer_at(unix_now()),
        }
    }

    /// The key that signs at `now_unix`: the last one whose `active_from` has passed (the earliest to
    /// activate if none has).
    pub fn signer_at(&self, now_unix: u64) -> &SigningKey {
        &self.keys[rotation::signer_index(&self.active_from, now_unix)]
    }

    /// `{"keys":[...]}`, serialized once at construction.
    pub fn jwks_json(&self) -> &str {
        &self.jwks_json
    }

    /// Verifies a JWT signed by any published key, chosen by `kid` (the active key if there is none).
    /// Like [`SigningKey::verify_jwt`], does not check `exp`.
    pub fn verify_jwt(&self, token: &str) -> Result<Value, KeyError> {
        let jws = Jws::parse(token)?;
        let key = match jws.kid.as_deref() {
            Some(kid) => self
                .keys
                .iter()
                .find(|key| key.kid == kid)
                .ok_or(KeyError::InvalidJwt("signed by an unknown key"))?,
            None => self.signer(),
        };
        key.verify_parsed(&jws)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// OIDC `at_hash` / `c_hash` for RS256: base64url of the left half of SHA-256(value)
/// (OpenID Connect Core 1.0 §3.1.3.6).
pub fn half_hash(value: &str) -> String {
    let hash = digest(&SHA256, value.as_bytes());
    let hash = hash.as_ref();
    URL_SAFE_NO_PAD.encode(&hash[..hash.len() / 2])
}

/// PKCE S256 code challenge: base64url(SHA-256(verifier)) (RFC 7636 §4.2).
pub fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::secret_file::TempDir;
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::OnceLock;

    /// Key generation costs tens of milliseconds; tests that do not exercise it share one key.
    fn shared_key() -> &'static SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
            SigningKey::from_pkcs8(pair.as_der().unwrap().as_ref()).unwrap()
        })
    }

    fn other_key() -> SigningKey {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        SigningKey::from_pkcs8(pair.as_der().unwrap().as_ref()).unwrap()
    }

    fn b64_json(segment: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    /// A token with the given header and claims, signed (correctly) by `key` regardless of the header.
    fn forge(key: &SigningKey, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; key.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        key.pair
            .sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn sample_claims() -> Value {
        json!({"iss": "https://auth.example", "sub": "12345", "aud": "app", "exp": 2_000_000_000u64, "name": "Zoë"})
    }

    #[test]
    fn key_is_generated_once_and_reloaded_with_the_same_kid() {
        let dir = TempDir::new("keys-reload");

        let (first, generated_first) = SigningKey::load_or_generate(&dir.0).unwrap();
        let (second, generated_second) = SigningKey::load_or_generate(&dir.0).unwrap();

        assert!(generated_first);
        assert!(!generated_second);
        assert_eq!(first.kid(), second.kid());
        assert_eq!(first.public_jwk(), second.public_jwk());
        // The reloaded key verifies what the first one signed: same private key, not just same public.
        let token = first.sign_jwt(&sample_claims()).unwrap();
        assert_eq!(second.verify_jwt(&token).unwrap(), sample_claims());
    }

    #[test]
    fn key_file_is_private_to_its_owner_and_is_pkcs8_der() {
        let dir = TempDir::new("keys-mode");

        let (key, _) = SigningKey::load_or_generate(&dir.0.join("state")).unwrap();

        let path = dir.0.join("state").join(SIGNING_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(dir.0.join("state"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let from_file = SigningKey::from_pkcs8(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(from_file.kid(), key.kid());
    }

    #[test]
    fn corrupt_key_file_is_an_error_naming_the_path_and_is_left_alone() {
        let dir = TempDir::new("keys-corrupt");
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join(SIGNING_KEY_FILE);
        std::fs::write(&path, b"-----BEGIN PRIVATE KEY----- not der").unwrap();

        let err = SigningKey::load_or_generate(&dir.0).unwrap_err();

        match &err {
            KeyError::InvalidKey { path: p, .. } => assert_eq!(p, &path),
            other => panic!("expected InvalidKey, got {other:?}"),
        }
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"-----BEGIN PRIVATE KEY----- not der"
        );
    }

    #[test]
    fn empty_key_file_is_corrupt_not_missing() {
        let dir = TempDir::new("keys-empty");
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::write(dir.0.join(SIGNING_KEY_FILE), b"").unwrap();

        let err = SigningKey::load_or_generate(&dir.0).unwrap_err();

        assert!(matches!(err, KeyError::InvalidKey { .. }), "{err:?}");
    }

    #[test]
    fn keys_shorter_than_2048_bits_are_rejected() {
        // A 1024-bit RSA PKCS#8 key: aws-lc-rs cannot generate one, so it is embedded.
        let der = URL_SAFE_NO_PAD.decode(RSA_1024_PKCS8_B64).unwrap();

        let err = SigningKey::from_pkcs8(&der).unwrap_err();

        assert!(matches!(err, KeyError::Rejected(_)), "{err:?}");
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint_of_the_rfcs_example_key() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

        assert_eq!(
            jwk_thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn kid_of_a_real_key_is_the_thumbprint_of_its_published_n_and_e() {
        let key = shared_key();
        let jwk = key.public_jwk();

        let expected = jwk_thumbprint(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap());

        assert_eq!(key.kid(), expected);
        assert_eq!(jwk["kid"], key.kid());
    }

    #[test]
    fn public_jwk_describes_an_rs256_signing_key_without_private_members() {
        let jwk = shared_key().public_jwk();

        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256
        );
        let mut members: Vec<_> = jwk.as_object().unwrap().keys().cloned().collect();
        members.sort();
        assert_eq!(members, ["alg", "e", "kid", "kty", "n", "use"]);
    }

    #[test]
    fn jwt_header_and_claims_decode_by_hand() {
        let key = shared_key();

        let token = key.sign_jwt(&sample_claims()).unwrap();

        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(!token.contains('='), "base64url must be unpadded");
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[0]).unwrap(),
            format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{}"}}"#, key.kid()).into_bytes()
        );
        assert_eq!(b64_json(parts[1]), sample_claims());
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 256);
    }

    #[test]
    fn jwt_signature_verifies_against_the_published_jwk_with_aws_lc_rs() {
        let key = shared_key();
        let token = key.sign_jwt(&sample_claims()).unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();

        // Rebuild the verifier from nothing but the published JWK, as a relying party would.
        let jwk = key.public_jwk();
        let public = RsaPublicKeyComponents {
            n: URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap(),
            e: URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap(),
        };
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();

        public
            .verify(&RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &sig)
            .unwrap();
        let mut tampered = input.as_bytes().to_vec();
        tampered[5] ^= 1;
        assert!(
            public
                .verify(&RSA_PKCS1_2048_8192_SHA256, &tampered, &sig)
                .is_err()
        );
    }

    #[test]
    fn jwt_signature_verifies_with_the_openidconnect_crates_jwks_parser() {
        use openidconnect::JsonWebKey as _;
        use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};

        let keys = KeySet::from_signer(other_key());
        let token = keys.signer().sign_jwt(&sample_claims()).unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();

        let jwks: CoreJsonWebKeySet = serde_json::from_str(keys.jwks_json()).unwrap();

        assert_eq!(jwks.keys().len(), 1);
        let jwk = &jwks.keys()[0];
        assert_eq!(jwk.key_id().map(|k| k.as_str()), Some(keys.signer().kid()));
        jwk.verify_signature(
            &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            input.as_bytes(),
            &sig,
        )
        .unwrap();
    }

    #[test]
    fn verify_returns_the_claims_of_a_token_it_signed_even_when_expired() {
        let key = shared_key();
        let claims = json!({"sub": "1", "exp": 1});

        let token = key.sign_jwt(&claims).unwrap();

        assert_eq!(key.verify_jwt(&token).unwrap(), claims);
    }

    #[test]
    fn verify_rejects_a_tampered_payload() {
        let key = shared_key();
        let token = key.sign_jwt(&json!({"sub": "1"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(r#"{"sub":"2"}"#),
            parts[2]
        );

        let err = key.verify_jwt(&forged).unwrap_err();

        assert!(
            matches!(err, KeyError::InvalidJwt("bad signature")),
            "{err:?}"
        );
    }

    #[test]
    fn verify_rejects_a_token_signed_by_another_key() {
        let key = shared_key();
        let other = other_key();
        let token = other.sign_jwt(&sample_claims()).unwrap();
        let (_, rest) = token.split_once('.').unwrap();
        // Same token, but claiming our kid: the signature must still fail.
        let relabelled = format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"RS256","kid":"{}"}}"#, key.kid()))
        );

        assert!(matches!(
            key.verify_jwt(&token),
            Err(KeyError::InvalidJwt("signed by an unknown key"))
        ));
        assert!(matches!(
            key.verify_jwt(&relabelled),
            Err(KeyError::InvalidJwt("bad signature"))
        ));
    }

    #[test]
    fn verify_accepts_a_token_without_kid_signed_by_this_key() {
        let key = shared_key();
        let token = forge(key, &json!({"alg": "RS256"}), &json!({"sub": "1"}));

        assert_eq!(key.verify_jwt(&token).unwrap(), json!({"sub": "1"}));
        assert_eq!(
            KeySet::from_signer(other_key()).verify_jwt(&token).ok(),
            None,
            "without kid the key set tries its active key, which did not sign this"
        );
    }

    #[test]
    fn verify_rejects_algorithms_other_than_rs256() {
        let key = shared_key();
        let claims = URL_SAFE_NO_PAD.encode(r#"{"sub":"1"}"#);
        let none = format!("{}.{claims}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        // HS256 "signed" with the public key as the HMAC secret: the classic algorithm-confusion forgery.
        let hs_input = format!(
            "{}.{claims}",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, key.kid()))
        );
        let hmac_key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            key.public_jwk().to_string().as_bytes(),
        );
        let hs = format!(
            "{hs_input}.{}",
            URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&hmac_key, hs_input.as_bytes()))
        );
        // Correctly signed with our key, but labelled PS256.
        let ps = forge(
            key,
            &json!({"alg": "PS256", "kid": key.kid()}),
            &json!({"sub": "1"}),
        );

        for token in [none, hs, ps] {
            let err = key.verify_jwt(&token).unwrap_err();
            assert!(
                matches!(err, KeyError::InvalidJwt("algorithm is not RS256")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn verify_rejects_critical_header_extensions() {
        let key = shared_key();
        let token = forge(
            key,
            &json!({"alg": "RS256", "kid": key.kid(), "crit": ["exp"], "exp": 1}),
            &json!({"sub": "1"}),
        );

        let err = key.verify_jwt(&token).unwrap_err();

        assert!(
            matches!(err, KeyError::InvalidJwt("unsupported critical header")),
            "{err:?}"
        );
    }

    #[test]
    fn verify_rejects_signed_payloads_that_are_not_json_objects() {
        let key = shared_key();
        let token = forge(key, &json!({"alg": "RS256"}), &json!(["sub"]));

        let err = key.verify_jwt(&token).unwrap_err();

        assert!(
            matches!(err, KeyError::InvalidJwt("claims are not a JSON object")),
            "{err:?}"
        );
    }

    #[test]
    fn verify_rejects_malformed_tokens_without_panicking() {
        let key = shared_key();
        let good = key.sign_jwt(&sample_claims()).unwrap();
        let padded = format!("{good}==");
        let four = format!("{good}.x");
        let no_sig = good.rsplit_once('.').unwrap().0.to_string();
        let garbage = [
            "",
            ".",
            "..",
            "...",
            "a.b.c",
            "eyJ.eyJ.eyJ",
            "ü.ü.ü",
            &padded,
            &four,
            &no_sig,
        ];

        for token in garbage {
            assert!(
                matches!(key.verify_jwt(token), Err(KeyError::InvalidJwt(_))),
                "accepted {token:?}"
            );
        }
    }

    #[test]
    fn key_set_publishes_its_signer_and_verifies_by_kid() {
        let keys = KeySet::from_signer(other_key());
        let token = keys.signer().sign_jwt(&sample_claims()).unwrap();

        let jwks: Value = serde_json::from_str(keys.jwks_json()).unwrap();

        assert_eq!(jwks, json!({"keys": [keys.signer().public_jwk()]}));
        assert_eq!(keys.verify_jwt(&token).unwrap(), sample_claims());
        let foreign = shared_key().sign_jwt(&sample_claims()).unwrap();
        assert!(matches!(
            keys.verify_jwt(&foreign),
            Err(KeyError::InvalidJwt("signed by an unknown key"))
        ));
    }

    #[test]
    fn key_set_load_or_generate_reports_generation_once() {
        let dir = TempDir::new("keys-set");

        let (first, generated_first) = KeySet::load_or_generate(&dir.0).unwrap();
        let (second, generated_second) = KeySet::load_or_generate(&dir.0).unwrap();

        assert!(generated_first && !generated_second);
        assert_eq!(first.jwks_json(), second.jwks_json());
    }

    #[test]
    fn debug_output_shows_the_kid_and_no_key_material() {
        let key = shared_key();
        let n = key.public_jwk()["n"].as_str().unwrap().to_string();

        let debug = format!("{key:?} {:?}", KeySet::from_signer(other_key()));

        assert!(debug.contains(key.kid()));
        assert!(!debug.contains(&n[..16]));
        assert!(!debug.contains("pair"));
        assert!(!debug.contains("Rsa"), "{debug}");
    }

    #[test]
    fn half_hash_matches_the_openid_connect_core_examples() {
        // OpenID Connect Core 1.0 Appendix A (at_hash and c_hash of the example tokens); independently
        // reproduced with `sha256sum | head -c 32 | xxd -r -p | base64`.
        assert_eq!(
            half_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(
            half_hash("Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk"),
            "LDktKdoQak3Pk0cnXxCltA"
        );
    }

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    /// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 | openssl pkcs8 -topk8 -nocrypt
    /// -outform DER`, base64url.
    const RSA_1024_PKCS8_B64: &str = concat!(
        "MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAOKJ0kKDv_HIN09dRNN0UCtslEx5LpOcaqngLcme",
        "Fm7VVfxNEeLQc5e1k7cYNaG52vGZSaJ7U3hYpCY2Q5DxDaCfrRGCgn2SJPsKG4D5nNMdpPLIOY8U3g_bTyoiikqw",
        "4cpG8cMSr1q_-qv6suvgNV5gTjuF0lTH6uGwB9nJUPsLAgMBAAECgYBDYkd-rX3cx3dcThv44fIu2H9MOAeYtMAt",
        "g5dbD4EQurh28d3OH78ic0pa_gKF9qifkL8Ma66qb4N0MlPquykX_NwTh0wA-bFMosP5kIwV90fRnDd-TL-pHxp7",
        "eW8-0og1-uVHAcmg7cr4fddMiuiTvaLodCZT6_zlGg7NIO5akQJBAPWUV7gYi4LMB064JaFmc-2ZPFym47Gg3zo9",
        "trOo7UGRhsyLHZ31FYYF69F-NX0PsmGgE8RlxcaGDrPIbMTVYTUCQQDsJqQNShVI3PP-aDYe9dwH-A4XMmdBHzlQ",
        "DCNNHvpk86X0l9dKv6UtnPHXvHf0MPUB4ERKimuffs_LedKPPrM_AkBbU5NbjyUyuxVsnObBowwxq-7ateWvRRg-",
        "3Hx5S7UP0ULEBmg5Oc-LS-Bqw_i4TYIU9CblvsNSFMCa80of2QqRAkEAwnbPgWIQRQAurMGET9qGZsmOUOvgu2_K",
        "8nAMYeWwrJE3iEPBtnw6uWUUgmNhJGVsXS8hDYEPPzheRWD8U5l-YQJAHViHAwwbzfeuYv9eiucFLyjkfI6Pd0y4",
        "hHkT7IdVgjWLGDITOgEp2C9-6ASkbtZfc9322_lveSf18VWpNaOkDg",
    );
}
