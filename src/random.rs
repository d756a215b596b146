//! Injected randomness: production draws from the OS CSPRNG; tests may substitute a deterministic source.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub trait Random: Send + Sync + 'static {
    fn fill(&self, dest: &mut [u8]);

    /// A URL-safe random token carrying `bytes` bytes of entropy.
    fn token(&self, bytes: usize) -> String {
        let mut buf = vec![0u8; bytes];
        self.fill(&mut buf);
        URL_SAFE_NO_PAD.encode(buf)
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRandom;

impl Random for SystemRandom {
    fn fill(&self, dest: &mut [u8]) {
        // The OS generator failing is not recoverable and never happens on Linux after boot.
        if aws_lc_rs::rand::fill(dest).is_err() {
            std::process::abort();
        }
    }
}
