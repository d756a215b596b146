//! Micro-benchmarks of the hot paths behind `/token` and `/authorize`, on the library's public API.
//!
//! `cargo bench --bench micro` (divan; add `-- sign` to filter by name). One RSA-2048 signature is the
//! floor of the token endpoint, so `rsa_sign_floor` is printed beside `sign_jwt` and `token_exchange`
//! to show what the code around the signature costs.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use divan::{Bencher, black_box};
use plex_oidc::clock::{Clock as _, SystemClock};
use plex_oidc::keys::{KeySet, SigningKey, pkce_s256};
use plex_oidc::oidc::{
    AuthorizationRequest, Client, ClientCredentials, ClientRegistry, ClientSecret, GrantContext,
    Identity, Params, Provider, ProviderSettings,
};
use plex_oidc::random::SystemRandom;
use plex_oidc::seal::Sealer;
use plex_oidc::store::Store;
use serde_json::{Map, Value, json};

const ISSUER: &str = "https://auth.example.com";
const CLIENT_ID: &str = "grafana";
/// The same relying party configured with `refresh_tokens`: each exchange also journals a grant.
const REFRESH_CLIENT_ID: &str = "grafana-refresh";
const SECRET: &str = "grafana-secret-0123456789abcdefghijklmnop";
const REDIRECT: &str = "https://grafana.example.com/login/generic_oauth";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk0123456789";

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn main() {
    divan::main();
    // Statics are never dropped; the grant journal's directory is removed here instead.
    if let Some(fx) = FIXTURE.get() {
        let _ = std::fs::remove_dir_all(&fx.state_dir);
    }
}

struct Fixture {
    provider: Provider,
    /// Holds the grant journal of `provider`.
    state_dir: PathBuf,
    keys: Arc<KeySet>,
    pair: RsaKeyPair,
    pair_der: Vec<u8>,
    authorize_query: String,
    refresh_authorize_query: String,
    basic: String,
    refresh_basic: String,
    identity: Identity,
}

/// One key for every benchmark: generating RSA-2048 takes longer than everything measured here.
fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA-2048 generation");
        let der = pair.as_der().expect("PKCS#8 encoding");
        let signer = SigningKey::from_pkcs8(der.as_ref()).expect("own key parses");
        let keys = Arc::new(KeySet::from_signer(signer));
        let pair = RsaKeyPair::from_pkcs8(der.as_ref()).expect("own key parses");
        let client = |id: &str, refresh_tokens: bool| Client {
            id: id.into(),
            name: Some("Grafana".into()),
            secret: ClientSecret::plain(SECRET),
            redirect_uris: vec![REDIRECT.into(), "https://grafana.example.com/other".into()],
            require_pkce: false,
            access_token_ttl: Duration::from_secs(3600),
            id_token_ttl: Duration::from_secs(3600),
            refresh_tokens,
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
        };
        let registry =
            ClientRegistry::new([client(CLIENT_ID, false), client(REFRESH_CLIENT_ID, true)]);
        // The journal lives where the bench's temp files go; its fsync is what a disk costs.
        let state_dir =
            std::env::temp_dir().join(format!("plex-oidc-micro-{}", std::process::id()));
        std::fs::create_dir_all(&state_dir).expect("a scratch directory");
        let store =
            Store::open(&state_dir, SystemClock.unix_seconds(), false).expect("grant store");
        let provider = Provider::new(
            ProviderSettings {
                issuer: ISSUER.into(),
                // Inputs are minted in batches ahead of timing; none may be evicted before use.
                code_capacity: 1 << 20,
                extra_claims: vec!["plex_uuid".into()],
            },
            registry,
            keys.clone(),
            Arc::new(Sealer::from_key([0x5a; 32])),
            Arc::new(store),
            Arc::new(SystemClock),
            Arc::new(SystemRandom),
        );
        let authorize_query = |client_id: &str| {
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("response_type", "code")
                .append_pair("client_id", client_id)
                .append_pair("redirect_uri", REDIRECT)
                .append_pair("scope", "openid profile email groups")
                .append_pair("state", "af0ifjsldkjJ2f6a0b9c8d7e6f5a4b3c2d1e0f")
                .append_pair("nonce", "n-0S6_WzA2Mj-8f7e6d5c4b3a2910")
                .append_pair("code_challenge", &pkce_s256(VERIFIER))
                .append_pair("code_challenge_method", "S256")
                .finish()
        };
        let basic =
            |client_id: &str| format!("Basic {}", STANDARD.encode(format!("{client_id}:{SECRET}")));
        Fixture {
            provider,
            state_dir,
            keys,
            pair,
            pair_der: der.as_ref().to_vec(),
            authorize_query: authorize_query(CLIENT_ID),
            refresh_authorize_query: authorize_query(REFRESH_CLIENT_ID),
            basic: basic(CLIENT_ID),
            refresh_basic: basic(REFRESH_CLIENT_ID),
            identity: Identity {
                subject: "24810035".into(),
                preferred_username: Some("bob".into()),
                name: Some("bob".into()),
                picture: Some("https://plex.tv/users/b0b5e1f2a3c4d5e6/avatar?c=1556281940".into()),
                email: Some("bob@example.com".into()),
                email_verified: true,
                groups: vec!["plex-friend".into()],
                extra_profile: Map::from_iter([(
                    "plex_uuid".to_owned(),
                    Value::from("b0b5e1f2a3c4d5e6"),
                )]),
            },
        }
    })
}

impl Fixture {
    fn request(&self, query: &str) -> AuthorizationRequest {
        let params = Params::from_urlencoded(query.as_bytes()).expect("valid query");
        self.provider
            .parse_authorization(&params)
            .expect("valid request")
    }

    /// A fresh code, as `/login/continue` would mint it, wrapped in the form a client posts.
    fn token_form(&self, request: &AuthorizationRequest) -> Params {
        let url = self.provider.issue_code(
            request,
            &self.identity,
            SystemClock.unix_seconds(),
            GrantContext::default(),
        );
        let query = url.split_once('?').expect("redirect has a query").1;
        let code = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "code")
            .expect("redirect carries the code")
            .1
            .into_owned();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", &code)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_verifier", VERIFIER)
            .finish();
        Params::from_urlencoded(body.as_bytes()).expect("valid form")
    }
}

/// Claims shaped like a real ID token (the same size matters: the signature input is hashed).
fn id_token_claims() -> Value {
    json!({
        "iss": ISSUER, "sub": "24810035", "aud": CLIENT_ID, "azp": CLIENT_ID,
        "exp": 1_767_229_200u64, "iat": 1_767_225_600u64, "auth_time": 1_767_225_590u64,
        "nonce": "n-0S6_WzA2Mj-8f7e6d5c4b3a2910", "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
        "preferred_username": "bob", "name": "bob",
        "picture": "https://plex.tv/users/b0b5e1f2a3c4d5e6/avatar?c=1556281940",
        "plex_uuid": "b0b5e1f2a3c4d5e6", "email": "bob@example.com", "email_verified": true,
        "groups": ["plex-friend"]
    })
}

/// The floor: one RSASSA-PKCS1-v1_5 SHA-256 signature over an ID-token-sized input, nothing else.
#[divan::bench]
fn rsa_sign_floor(bencher: Bencher) {
    let fx = fixture();
    let input = vec![b'a'; 620];
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut signature = vec![0u8; fx.pair.public_modulus_len()];
    bencher.bench_local(|| {
        fx.pair
            .sign(&RSA_PKCS1_SHA256, &rng, black_box(&input), &mut signature)
            .expect("signing works");
    });
}

/// `KeySet::signer().sign_jwt`: claims to JSON, base64url, RSA signature, compact JWS.
#[divan::bench]
fn sign_jwt(bencher: Bencher) {
    let fx = fixture();
    let claims = id_token_claims();
    bencher.bench(|| {
        fx.keys
            .signer()
            .sign_jwt(black_box(&claims))
            .expect("signing works")
    });
}

/// The whole `/token` exchange minus HTTP: client authentication, code lookup, PKCE, sealing the
/// access token, signing the ID token.
#[divan::bench]
fn token_exchange(bencher: Bencher) {
    let fx = fixture();
    let request = fx.request(&fx.authorize_query);
    bencher
        .with_inputs(|| fx.token_form(&request))
        .bench_local_refs(|form| {
            let credentials =
                ClientCredentials::from_request(Some(&fx.basic), form).expect("credentials");
            fx.provider
                .exchange_code(&credentials, form)
                .expect("the code exchanges")
        });
}

/// The same for a client with `refresh_tokens`: one more seal, and the grant family appended to the
/// journal and fsynced before the answer.
#[divan::bench(sample_count = 30, sample_size = 10)]
fn token_exchange_with_refresh_token(bencher: Bencher) {
    let fx = fixture();
    let request = fx.request(&fx.refresh_authorize_query);
    bencher
        .with_inputs(|| fx.token_form(&request))
        .bench_local_refs(|form| {
            let credentials = ClientCredentials::from_request(Some(&fx.refresh_basic), form)
                .expect("credentials");
            let response = fx
                .provider
                .exchange_code(&credentials, form)
                .expect("the code exchanges");
            assert!(response.refresh_token.is_some());
            response
        });
}

/// Start-up: parsing the PKCS#8 signing key (aws-lc checks the key's consistency as it parses).
#[divan::bench(sample_count = 20)]
fn load_signing_key(bencher: Bencher) {
    let der = fixture().pair_der.clone();
    bencher.bench(|| SigningKey::from_pkcs8(black_box(&der)).expect("own key parses"));
}

/// Start-up: one HTTP client as the Plex and back-channel adapters build theirs (rustls with the
/// platform's roots, which are read from disk and parsed on every build).
#[divan::bench(sample_count = 20)]
fn build_http_client(bencher: Bencher) {
    bencher.bench(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client")
    });
}

/// `/authorize` validation: the query string to a checked `AuthorizationRequest`.
#[divan::bench]
fn parse_authorization(bencher: Bencher) {
    let fx = fixture();
    bencher.bench(|| {
        let params =
            Params::from_urlencoded(black_box(fx.authorize_query.as_bytes())).expect("valid query");
        fx.provider
            .parse_authorization(&params)
            .expect("valid request")
    });
}

/// `/login/continue`'s share: minting the code and the redirect URL.
#[divan::bench]
fn issue_code(bencher: Bencher) {
    let fx = fixture();
    let request = fx.request(&fx.authorize_query);
    bencher.bench_local(|| {
        fx.provider.issue_code(
            black_box(&request),
            &fx.identity,
            1_767_225_600,
            GrantContext::default(),
        )
    });
}

/// `/userinfo`: opening the sealed access token and releasing the scoped claims.
#[divan::bench]
fn userinfo(bencher: Bencher) {
    let fx = fixture();
    let request = fx.request(&fx.authorize_query);
    let form = fx.token_form(&request);
    let credentials = ClientCredentials::from_request(Some(&fx.basic), &form).expect("credentials");
    let access_token = fx
        .provider
        .exchange_code(&credentials, &form)
        .expect("the code exchanges")
        .access_token;
    bencher.bench(|| {
        fx.provider
            .userinfo(black_box(&access_token))
            .expect("the token is valid")
    });
}
