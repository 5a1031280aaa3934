//! Where the core's randomness comes from: stream ids, server-chosen resources and SCRAM
//! server nonces. It enters through [`crate::Config`], as time enters through `now`, so
//! tests can make it deterministic.

use std::fmt;
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{RngCore as _, SeedableRng as _};

/// A source of random bytes shared by every connection of a listener (so a connection
/// holds a pointer, not a generator).
pub trait Entropy: Send + Sync + fmt::Debug {
    /// Fills `dest` with random bytes.
    fn fill(&self, dest: &mut [u8]);

    /// A random `u64`.
    fn next_u64(&self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill(&mut bytes);
        u64::from_le_bytes(bytes)
    }
}

/// The operating system's randomness through the thread's CSPRNG: the production source
/// (SCRAM nonces must be unpredictable).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEntropy;

impl Entropy for SystemEntropy {
    fn fill(&self, dest: &mut [u8]) {
        rand::rng().fill_bytes(dest);
    }
}

/// A reproducible sequence from a seed, for tests only: anyone who knows the seed knows
/// every nonce.
#[derive(Debug)]
pub struct SeededEntropy(Mutex<StdRng>);

impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        Self(Mutex::new(StdRng::seed_from_u64(seed)))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, dest: &mut [u8]) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .fill_bytes(dest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sources_repeat_and_differ_by_seed() {
        let (a, b, c) = (
            SeededEntropy::new(1),
            SeededEntropy::new(1),
            SeededEntropy::new(2),
        );
        let first = a.next_u64();
        assert_eq!(first, b.next_u64());
        assert_ne!(first, c.next_u64());
        assert_ne!(first, a.next_u64(), "a source moves on");
    }

    #[test]
    fn system_source_fills_every_byte() {
        let mut bytes = [0u8; 64];
        SystemEntropy.fill(&mut bytes);
        assert_ne!(bytes, [0u8; 64]);
    }
}
