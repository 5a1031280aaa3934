//! The per-thread buffers every session of a worker borrows while it runs, so that an idle
//! session holds none of its own.

use session::sasl::SaltedPasswordCache;

use super::plan::Plan;
use crate::client::Ctx;
use crate::histo::Recorder;
use crate::schedule::Nanos;

/// Per-thread receive buffer; larger than any stanza the tokenizer accepts.
const SCRATCH_BYTES: usize = 128 * 1024;
/// Per-thread TLS read buffer. rustls's unbuffered API needs a whole handshake message in
/// one buffer, and rustls accepts handshake messages up to 64 KB: that, plus the record
/// framing of the 5 records it can span.
const CIPHER_BYTES: usize = 64 * 1024 + 5 * 512;
/// Initial size of the per-thread TLS output buffer: the client's largest flight.
const TLS_OUT_BYTES: usize = 16 * 1024;

/// The per-thread buffers and state that sessions borrow while they run.
pub(super) struct Shared {
    pub(super) rec: Recorder,
    cache: SaltedPasswordCache,
    pub(super) out: Vec<u8>,
    /// Plaintext from the server: the unfinished stanza of a session, then new bytes.
    pub(super) scratch: Box<[u8]>,
    /// Ciphertext just read, on its way into rustls.
    pub(super) cipher: Box<[u8]>,
    /// TLS records rustls's unbuffered API encoded, on their way to the socket.
    pub(super) tls_out: Vec<u8>,
}

impl Shared {
    /// `cache_capacity`: the accounts this thread logs in, whose salted passwords it keeps.
    pub(super) fn new(cache_capacity: usize) -> Self {
        Self {
            rec: Recorder::default(),
            cache: SaltedPasswordCache::with_capacity(cache_capacity),
            out: Vec::with_capacity(4096),
            scratch: vec![0; SCRATCH_BYTES].into_boxed_slice(),
            cipher: vec![0; CIPHER_BYTES].into_boxed_slice(),
            tls_out: Vec::with_capacity(TLS_OUT_BYTES),
        }
    }

    pub(super) fn split<'a>(&'a mut self, plan: &'a Plan, now: Nanos) -> (Ctx<'a>, &'a mut [u8]) {
        let ctx = Ctx {
            now,
            profile: &plan.profile,
            accounts: &plan.accounts,
            cache: &mut self.cache,
            rec: &mut self.rec,
            out: &mut self.out,
        };
        (ctx, &mut self.scratch)
    }
}
