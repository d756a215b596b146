//! Session cookies: whatever a browser sends, only a cookie this key sealed opens, and garbage never
//! panics the unsealing.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use plex_oidc::flow::SessionCodec;
use plex_oidc::seal::Sealer;

static CODEC: LazyLock<SessionCodec> =
    LazyLock::new(|| SessionCodec::new(Arc::new(Sealer::from_key([7; 32]))));
static SEALER: LazyLock<Sealer> = LazyLock::new(|| Sealer::from_key([7; 32]));

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    assert!(CODEC.open(&text, 0).is_none(), "an unsealed cookie opened");
    assert!(CODEC.open_upstream(&text).is_none());
    for purpose in ["session.v1", "access_token.v1", "refresh_token.v1", "login"] {
        assert!(SEALER.open(purpose, &text).is_none());
    }
});
