//! What one worker measures: a latency histogram per metric, counters, and the first
//! example of each kind of error, handed to the coordinator as interval samples.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::schedule::Nanos;

/// Everything with a latency distribution. Values are nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// TCP connect, from `connect(2)` to writable.
    Connect,
    /// `--proxy`: from the connection being up to the PROXY header handed to the kernel.
    Proxy,
    /// TLS: direct TLS handshake, or STARTTLS from `<starttls/>` to handshake done.
    Tls,
    /// SASL, from `<auth>` to `<success>`.
    Sasl,
    /// Resource binding, from the bind request to its result.
    Bind,
    /// A whole login, from connect to a bound session.
    Login,
    Sic0Ip,
    Sic0Address,
    Sic1Address,
    DiscoInfo,
    Ping,
    /// Every request, from its intended send time (coordinated-omission corrected).
    Requests,
    /// Every request, from its actual send time: what a closed-loop tool would report.
    Service,
    /// How late loadgen sent each request after its intended time: loadgen's own lag.
    SendLag,
}

impl Metric {
    pub const COUNT: usize = 14;
    pub const ALL: [Metric; Metric::COUNT] = [
        Metric::Connect,
        Metric::Proxy,
        Metric::Tls,
        Metric::Sasl,
        Metric::Bind,
        Metric::Login,
        Metric::Sic0Ip,
        Metric::Sic0Address,
        Metric::Sic1Address,
        Metric::DiscoInfo,
        Metric::Ping,
        Metric::Requests,
        Metric::Service,
        Metric::SendLag,
    ];

    /// The tag in interval logs and the row name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Connect => "connect",
            Metric::Proxy => "proxy",
            Metric::Tls => "tls",
            Metric::Sasl => "sasl",
            Metric::Bind => "bind",
            Metric::Login => "login",
            Metric::Sic0Ip => "sic0-ip",
            Metric::Sic0Address => "sic0-address",
            Metric::Sic1Address => "sic1-address",
            Metric::DiscoInfo => "disco-info",
            Metric::Ping => "ping",
            Metric::Requests => "requests",
            Metric::Service => "service-time",
            Metric::SendLag => "send-lag",
        }
    }

    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// A new empty histogram: 3 significant digits, growing to whatever range is recorded, so
/// an unused one costs almost nothing to keep, clone or send.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid precision")
}

/// One histogram per [`Metric`].
#[derive(Debug, Clone)]
pub struct Histos {
    by_metric: [Histogram<u64>; Metric::COUNT],
}

impl Default for Histos {
    fn default() -> Self {
        Self {
            by_metric: std::array::from_fn(|_| new_histogram()),
        }
    }
}

impl Histos {
    pub fn record(&mut self, metric: Metric, nanos: Nanos) {
        let h = &mut self.by_metric[metric as usize];
        // Zero is below the lowest trackable value of 1 ns; a 0 ns latency is 1 ns here.
        // `record` grows the range (saturating_record would clamp to it instead).
        if h.record(nanos.max(1)).is_err() {
            h.saturating_record(nanos);
        }
    }

    pub fn get(&self, metric: Metric) -> &Histogram<u64> {
        &self.by_metric[metric as usize]
    }

    /// Adds every histogram of `other` into this one.
    pub fn add(&mut self, other: &Histos) {
        for (mine, theirs) in self.by_metric.iter_mut().zip(&other.by_metric) {
            // Auto-resizing histograms of equal precision always add.
            let _ = mine.add(theirs);
        }
    }

    pub fn reset(&mut self) {
        for h in &mut self.by_metric {
            h.reset();
        }
    }
}

/// Why a login or a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// TCP connect failed (refused, unreachable, out of ports).
    Connect,
    /// TLS handshake failed, or the server refused STARTTLS.
    Tls,
    /// The server sent a stream error or closed the stream during login.
    Stream,
    /// SASL failed (wrong password, unknown user, mechanism not offered).
    Auth,
    /// Resource binding (or legacy session establishment) failed.
    Bind,
    /// A login step got no answer within the timeout.
    LoginTimeout,
    /// The server sent something that breaks the protocol (bad XML, unexpected element).
    Protocol,
    /// A reply arrived but is wrong (SIC address is not ours, missing payload).
    WrongReply,
    /// The server answered a request with an error.
    ErrorReply,
    /// A request got no reply within the timeout.
    RequestTimeout,
    /// A ready session died; counted once per session and once per request it had
    /// outstanding.
    SessionLost,
    /// A request could not be sent at all: no session was ready.
    Unsent,
}

impl ErrorKind {
    pub const COUNT: usize = 12;
    pub const ALL: [ErrorKind; ErrorKind::COUNT] = [
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Stream,
        ErrorKind::Auth,
        ErrorKind::Bind,
        ErrorKind::LoginTimeout,
        ErrorKind::Protocol,
        ErrorKind::WrongReply,
        ErrorKind::ErrorReply,
        ErrorKind::RequestTimeout,
        ErrorKind::SessionLost,
        ErrorKind::Unsent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Stream => "stream",
            ErrorKind::Auth => "auth",
            ErrorKind::Bind => "bind",
            ErrorKind::LoginTimeout => "login-timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::WrongReply => "wrong-reply",
            ErrorKind::ErrorReply => "error-reply",
            ErrorKind::RequestTimeout => "request-timeout",
            ErrorKind::SessionLost => "session-lost",
            ErrorKind::Unsent => "unsent",
        }
    }
}

/// Event counts. Samples carry the increments since the previous sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub logins_started: u64,
    pub logins_ok: u64,
    /// Requests whose intended send time has come.
    pub requests_due: u64,
    pub requests_sent: u64,
    pub replies_ok: u64,
    /// Replies to requests already counted as timed out (not errors twice).
    pub late_replies: u64,
    /// Logged-in sessions whose TLS state was reduced to their traffic keys.
    pub tls_compacted: u64,
    pub errors: [u64; ErrorKind::COUNT],
}

impl Counters {
    pub fn add(&mut self, other: &Counters) {
        self.logins_started += other.logins_started;
        self.logins_ok += other.logins_ok;
        self.requests_due += other.requests_due;
        self.requests_sent += other.requests_sent;
        self.replies_ok += other.replies_ok;
        self.late_replies += other.late_replies;
        self.tls_compacted += other.tls_compacted;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn error(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize]
    }
}

/// What a worker sends every interval.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub histos: Histos,
    pub counters: Counters,
    /// The first occurrence of each kind of error in this worker, with its detail.
    pub examples: Vec<(ErrorKind, String)>,
}

/// The recording side used on the hot path: counts and records in place, copies out a
/// [`Sample`] when the interval ends.
#[derive(Debug, Default)]
pub struct Recorder {
    current: Sample,
    /// Error kinds whose example was already taken, so each is formatted only once.
    seen: [bool; ErrorKind::COUNT],
}

impl Recorder {
    pub fn record(&mut self, metric: Metric, nanos: Nanos) {
        self.current.histos.record(metric, nanos);
    }

    pub fn counters(&mut self) -> &mut Counters {
        &mut self.current.counters
    }

    /// Counts one error; `detail` is only called for the first of its kind.
    pub fn error(&mut self, kind: ErrorKind, detail: impl FnOnce() -> String) {
        self.errors(kind, 1, detail);
    }

    /// Counts `n` errors of one kind.
    pub fn errors(&mut self, kind: ErrorKind, n: u64, detail: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        self.current.counters.errors[kind as usize] += n;
        if !std::mem::replace(&mut self.seen[kind as usize], true) {
            self.current.examples.push((kind, detail()));
        }
    }

    /// The sample since the previous call; recording starts afresh (keeping allocations).
    pub fn take_sample(&mut self) -> Sample {
        let sample = Sample {
            histos: self.current.histos.clone(),
            counters: std::mem::take(&mut self.current.counters),
            examples: std::mem::take(&mut self.current.examples),
        };
        self.current.histos.reset();
        sample
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_restart_and_examples_are_taken_once() {
        let mut rec = Recorder::default();
        rec.record(Metric::Ping, 1500);
        rec.error(ErrorKind::WrongReply, || "first".to_owned());
        rec.error(ErrorKind::WrongReply, || unreachable!("formatted twice"));
        rec.counters().replies_ok += 3;
        let s = rec.take_sample();
        assert_eq!(s.histos.get(Metric::Ping).len(), 1);
        assert_eq!(s.counters.error(ErrorKind::WrongReply), 2);
        assert_eq!(s.counters.replies_ok, 3);
        assert_eq!(
            s.examples,
            vec![(ErrorKind::WrongReply, "first".to_owned())]
        );
        let s = rec.take_sample();
        assert_eq!(s.histos.get(Metric::Ping).len(), 0);
        assert_eq!(s.counters, Counters::default());
        assert!(s.examples.is_empty());
    }

    #[test]
    fn samples_add_up_beyond_the_initial_range() {
        let mut rec = Recorder::default();
        rec.record(Metric::Ping, 50_000);
        rec.record(Metric::Ping, 7_000_000_000);
        let sample = rec.take_sample();
        let mut total = Histos::default();
        total.add(&sample.histos);
        total.add(&sample.histos);
        let ping = total.get(Metric::Ping);
        assert_eq!(ping.len(), 4);
        assert!(ping.equivalent(ping.max(), 7_000_000_000));
        assert!(ping.equivalent(ping.min(), 50_000));
    }

    #[test]
    fn names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_name(m.name()), Some(m));
        }
        for (i, k) in ErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i);
        }
    }
}
