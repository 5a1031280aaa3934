//! The coordinator: starts one worker per thread, walks them through the phases (ramp,
//! hold, request steps, close), gathers their interval samples into the interval log and
//! the phase totals, measures loadgen's own CPU and memory, and builds the summary.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use mio::Waker;

use crate::histo::{ErrorKind, Histos, Metric, Sample};
use crate::logs::{self, LogWriter};
use crate::progress::Progress;
use crate::report::{self, Cost, Errors, Requests, Saturation, Sessions, Step, Summary, Target};
use crate::schedule::Nanos;
use crate::worker::{Clock, Command, IDLE_PHASE, Plan, Report, Worker};

/// `--saturate` settings.
#[derive(Debug, Clone)]
pub struct SaturationOptions {
    pub slo_p99: Duration,
    pub step_factor: f64,
    pub max_rate: f64,
    pub refine: u32,
}

/// Everything about a run besides the plan the workers share.
#[derive(Debug)]
pub struct Options {
    pub hold: Duration,
    pub rate: f64,
    pub duration: Duration,
    pub saturation: Option<SaturationOptions>,
    pub max_error_ratio: f64,
    pub hdr_log: Option<PathBuf>,
    pub progress: bool,
    pub nofile_limit: u64,
    pub target: Target,
}

/// A finished run: the summary and the histograms behind its table.
#[derive(Debug)]
pub struct Finished {
    pub summary: Summary,
    pub histos: Histos,
}

/// Phase ids in commands and samples.
const RAMP_PHASE: u32 = 0;
/// Above this loadgen reports that it may have been the bottleneck.
const BUSY_UTILIZATION: f64 = 0.8;
/// Sends later than this at p99 mean loadgen's own lag is part of the latencies.
const LATE_SEND: Nanos = 1_000_000;
/// How many times `--saturate` divides a failing starting rate by the step factor.
const MAX_STEPS_DOWN: u32 = 4;
/// Slack for workers to report beyond the time a phase may legitimately take.
const GRACE: Duration = Duration::from_secs(30);

/// One phase's (or the whole run's) merged samples.
#[derive(Debug, Default)]
struct Totals {
    sample: Sample,
}

impl Totals {
    fn add(&mut self, sample: &Sample) {
        self.sample.histos.add(&sample.histos);
        self.sample.counters.add(&sample.counters);
    }
}

struct Coordinator<'a> {
    clock: Clock,
    threads: usize,
    interval: Nanos,
    workers: Vec<(Sender<Command>, Waker)>,
    reports: Receiver<Report>,
    /// Intervals still waiting for some thread's sample: merged sample and how many
    /// threads have closed the interval.
    buckets: BTreeMap<u64, (Sample, usize)>,
    phases: BTreeMap<u32, Totals>,
    all: Totals,
    examples: Vec<(ErrorKind, String)>,
    started: usize,
    done: BTreeMap<u32, usize>,
    closed: usize,
    log: Option<LogWriter<'a, 'a, BufWriter<File>>>,
    log_error: Option<String>,
    progress: Progress,
    /// What the run is doing, for progress lines.
    phase: String,
    /// Logins that succeeded so far, for progress lines.
    logins: u64,
}

impl Coordinator<'_> {
    fn broadcast(&self, command: Command) {
        for (sender, waker) in &self.workers {
            let _ = sender.send(command);
            let _ = waker.wake();
        }
    }

    /// Handles reports until `done` holds; an error if a worker fails or `limit` passes.
    fn wait(
        &mut self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.reports.recv_timeout(left) {
                Ok(report) => self.handle(report)?,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "internal error: workers did not finish {what} within {limit:?}"
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("workers stopped during {what}"));
                }
            }
        }
        Ok(())
    }

    /// Handles reports for `length`.
    fn idle(&mut self, length: Duration) -> Result<(), String> {
        let end = Instant::now() + length;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.reports.recv_timeout(left) {
                Ok(report) => self.handle(report)?,
                Err(RecvTimeoutError::Timeout) => return Ok(()),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("workers stopped during the hold".to_owned());
                }
            }
        }
    }

    fn handle(&mut self, report: Report) -> Result<(), String> {
        match report {
            Report::Started => self.started += 1,
            Report::Sample {
                interval,
                boundary,
                phase,
                sample,
            } => {
                for (kind, detail) in &sample.examples {
                    if !self.examples.iter().any(|(k, _)| k == kind) {
                        self.examples.push((*kind, detail.clone()));
                    }
                }
                self.all.add(&sample);
                if phase != IDLE_PHASE {
                    self.phases.entry(phase).or_default().add(&sample);
                }
                let bucket = self.buckets.entry(interval).or_default();
                bucket.0.histos.add(&sample.histos);
                bucket.0.counters.add(&sample.counters);
                if boundary {
                    bucket.1 += 1;
                    if bucket.1 >= self.threads {
                        self.emit_through(interval);
                    }
                }
            }
            Report::PhaseDone { phase } => *self.done.entry(phase).or_default() += 1,
            Report::Closed => self.closed += 1,
            Report::Fatal { thread, error } => {
                return Err(format!("worker thread {thread} failed: {error}"));
            }
        }
        Ok(())
    }

    fn phase_done(&self, phase: u32) -> bool {
        self.done.get(&phase).copied().unwrap_or(0) >= self.threads
    }

    /// Writes out every interval up to and including `last`.
    fn emit_through(&mut self, last: u64) {
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > last {
                break;
            }
            let (interval, (sample, _)) = entry.remove_entry();
            self.emit(interval, &sample);
        }
    }

    fn emit(&mut self, interval: u64, sample: &Sample) {
        let length = Duration::from_nanos(self.interval);
        let offset = length * interval as u32;
        if let Some(log) = self.log.as_mut() {
            for metric in Metric::ALL {
                let h = sample.histos.get(metric);
                if h.is_empty() {
                    continue;
                }
                if let Err(e) = logs::write(log, metric.name(), offset, length, h) {
                    self.log_error.get_or_insert(e.to_string());
                }
            }
        }
        let c = &sample.counters;
        self.logins += c.logins_ok;
        if self.progress.enabled() {
            let per_second = |n: u64| n as f64 / length.as_secs_f64();
            let requests = sample.histos.get(Metric::Requests);
            let p99 = if requests.is_empty() {
                "-".to_owned()
            } else {
                report::human_us(requests.value_at_quantile(0.99) as f64 / 1e3)
            };
            self.progress.show(format!(
                "[{:>6.1}s] {:<18} logins {:>7}  logins/s {:>7.0}  sent/s {:>8.0}  ok/s {:>8.0}  p99 {:>9}  errors {}",
                offset.as_secs_f64() + length.as_secs_f64(),
                self.phase,
                self.logins,
                per_second(c.logins_ok),
                per_second(c.requests_sent),
                per_second(c.replies_ok),
                p99,
                c.total_errors()
            ));
        }
    }
}

/// Runs the whole load test.
pub fn run(plan: Plan, options: Options) -> Result<Finished, String> {
    let mut log_file = match &options.hdr_log {
        Some(path) => {
            Some(BufWriter::new(File::create(path).map_err(|e| {
                format!("cannot create {}: {e}", path.display())
            })?))
        }
        None => None,
    };
    let mut serializer = V2DeflateSerializer::new();
    let clock = Clock::new();
    let wall_start = SystemTime::now();
    let log = match log_file.as_mut() {
        Some(file) => Some(
            logs::begin(
                file,
                &mut serializer,
                wall_start,
                &format!("Logged with loadgen {}", env!("CARGO_PKG_VERSION")),
            )
            .map_err(|e| format!("cannot write the interval log: {e}"))?,
        ),
        None => None,
    };
    let threads = plan.threads;
    let plan = Arc::new(plan);
    let (report_tx, report_rx) = mpsc::channel();
    let mut workers = Vec::with_capacity(threads);
    let mut handles: Vec<JoinHandle<()>> = Vec::with_capacity(threads);
    for thread in 0..threads {
        let (command_tx, command_rx) = mpsc::channel();
        let (worker, waker) =
            Worker::new(thread, plan.clone(), clock, command_rx, report_tx.clone())
                .map_err(|e| format!("cannot start worker thread: {e}"))?;
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-{thread}"))
            .spawn(move || worker.run())
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        workers.push((command_tx, waker));
        handles.push(handle);
    }
    drop(report_tx);
    let mut c = Coordinator {
        clock,
        threads,
        interval: plan.interval,
        workers,
        reports: report_rx,
        buckets: BTreeMap::new(),
        phases: BTreeMap::new(),
        all: Totals::default(),
        examples: Vec::new(),
        started: 0,
        done: BTreeMap::new(),
        closed: 0,
        log,
        log_error: None,
        progress: Progress::new(options.progress),
        phase: "starting".to_owned(),
        logins: 0,
    };
    let result = drive(&mut c, &plan, &options);
    // Always close, so sessions end cleanly even after a failure.
    c.phase = "closing".to_owned();
    c.broadcast(Command::Close);
    let close_limit =
        Duration::from_nanos(plan.profile.timeout).min(Duration::from_secs(5)) + GRACE;
    let closed = c.wait(close_limit, "closing", |c| c.closed >= c.threads);
    c.workers.clear();
    for handle in handles {
        let _ = handle.join();
    }
    c.emit_through(u64::MAX);
    c.progress.finish();
    let log_error = c.log_error.take();
    let mut all = std::mem::take(&mut c.all);
    let examples = std::mem::take(&mut c.examples);
    drop(c);
    if let Some(file) = log_file.as_mut() {
        file.flush()
            .map_err(|e| format!("cannot write the interval log: {e}"))?;
    }
    if let Some(e) = log_error {
        return Err(format!("cannot write the interval log: {e}"));
    }
    let mut finished = result?;
    closed?;
    // Recounted over everything, closing included.
    finished.summary.errors = Errors::new(
        &all.sample.counters,
        plan.sessions,
        &examples,
        options.max_error_ratio,
    );
    finished.histos = std::mem::take(&mut all.sample.histos);
    finished.summary.latency_us = report::rows(&finished.histos).into_iter().collect();
    judge(&mut finished.summary, options.saturation.is_some());
    Ok(finished)
}

/// CPU time and wall clock at one moment.
#[derive(Debug, Clone, Copy)]
struct Mark {
    cpu: Duration,
    at: Instant,
}

impl Mark {
    fn now() -> Self {
        Mark {
            cpu: host::cpu_time().unwrap_or_default().total(),
            at: Instant::now(),
        }
    }

    fn since(&self, earlier: &Mark) -> (f64, f64) {
        (
            (self.cpu.saturating_sub(earlier.cpu)).as_secs_f64(),
            (self.at - earlier.at).as_secs_f64(),
        )
    }
}

/// Sessions that must come up after the ramp's midway mark for RSS per idle session.
const MIN_SESSIONS_FOR_IDLE_RSS: u64 = 1000;

/// RSS growth per session after the ramp's midway mark (`midway`: RSS and sessions up
/// then). Only when enough sessions came up after it: with fewer, the memory freed by
/// finished logins hides what the later sessions keep (and ramps shorter than a couple
/// of sample intervals, whose mark comes at the end, are not split at all).
fn idle_session_rss(midway: Option<(u64, u64)>, established: u64, rss_after: u64) -> Option<f64> {
    let (rss_midway, up) = midway?;
    let after = established.saturating_sub(up);
    (after >= MIN_SESSIONS_FOR_IDLE_RSS && after * 4 >= established)
        .then(|| rss_after.saturating_sub(rss_midway) as f64 / after as f64)
}

fn drive(c: &mut Coordinator<'_>, plan: &Plan, options: &Options) -> Result<Finished, String> {
    c.wait(GRACE, "starting", |c| c.started >= c.threads)?;
    let timeout = Duration::from_nanos(plan.profile.timeout);
    let rss_before = host::memory().map_or(0, |memory| memory.resident);
    let before_ramp = Mark::now();
    c.phase = "login ramp".to_owned();
    c.broadcast(Command::Ramp {
        start: c.clock.now() + 1_000_000,
        phase: RAMP_PHASE,
    });
    let sessions = plan.sessions as f64;
    // Logins are bounded by their own timeouts (about six steps each); this is a backstop.
    let ramp_limit = Duration::from_secs_f64(sessions / plan.setup_rate)
        + timeout * 6 * (sessions / plan.concurrency.max(1) as f64).ceil().max(1.0) as u32
        + GRACE;
    // RSS and sessions up once half of them are: the growth after that is what more
    // sessions cost, without the histograms and buffers that grow early in any run.
    let mut midway: Option<(u64, u64)> = None;
    c.wait(ramp_limit, "the login ramp", |c| {
        let up = c
            .phases
            .get(&RAMP_PHASE)
            .map_or(0, |p| p.sample.counters.logins_ok);
        if midway.is_none() && up > 0 && up * 2 >= plan.sessions {
            midway = Some((host::memory().map_or(0, |memory| memory.resident), up));
        }
        c.phase_done(RAMP_PHASE)
    })?;
    let after_ramp = Mark::now();
    let rss_after = host::memory().map_or(0, |memory| memory.resident);
    let ramp = c.phases.remove(&RAMP_PHASE).unwrap_or_default();
    let established = ramp.sample.counters.logins_ok;
    let started = ramp.sample.counters.logins_started;
    let (ramp_cpu, ramp_wall) = after_ramp.since(&before_ramp);

    let mut steps = Vec::new();
    let mut request_cpu = 0.0;
    let mut request_wall = 0.0;
    let mut last_rate = options.rate;
    if established > 0 && options.rate > 0.0 {
        c.phase = "hold".to_owned();
        c.idle(options.hold)?;
        let mut phase = RAMP_PHASE;
        let mut run_step = |c: &mut Coordinator<'_>, rate: f64| -> Result<Step, String> {
            phase += 1;
            c.phase = format!("requests @ {rate:.0}/s");
            let before = Mark::now();
            let length = options.duration;
            c.broadcast(Command::Requests {
                start: c.clock.now() + 2_000_000,
                length: length.as_nanos() as Nanos,
                rate,
                phase,
            });
            c.wait(length + timeout * 2 + GRACE, "a request phase", |c| {
                c.phase_done(phase)
            })?;
            let (cpu, wall) = Mark::now().since(&before);
            request_cpu += cpu;
            request_wall += wall;
            let totals = c.phases.remove(&phase).unwrap_or_default();
            Ok(step_result(
                &totals.sample,
                rate,
                cpu,
                wall,
                plan.threads,
                options,
            ))
        };
        match &options.saturation {
            None => steps.push(run_step(c, options.rate)?),
            Some(sat) => {
                let mut rate = options.rate;
                let mut passing: Option<f64> = None;
                let mut failing: Option<f64> = None;
                while rate <= sat.max_rate {
                    let step = run_step(c, rate)?;
                    let pass = step.pass;
                    steps.push(step);
                    if pass {
                        passing = Some(rate);
                        rate *= sat.step_factor;
                    } else {
                        failing = Some(rate);
                        break;
                    }
                }
                // Even the starting rate failed: step down until one passes.
                let mut rate = options.rate;
                for _ in 0..MAX_STEPS_DOWN {
                    if passing.is_some() {
                        break;
                    }
                    rate /= sat.step_factor;
                    let step = run_step(c, rate)?;
                    if step.pass {
                        passing = Some(rate);
                    } else {
                        failing = Some(rate);
                    }
                    steps.push(step);
                }
                for _ in 0..sat.refine {
                    let (Some(low), Some(high)) = (passing, failing) else {
                        break;
                    };
                    let rate = (low + high) / 2.0;
                    let step = run_step(c, rate)?;
                    if step.pass {
                        passing = Some(rate)
                    } else {
                        failing = Some(rate)
                    }
                    steps.push(step);
                }
                last_rate = passing.unwrap_or(options.rate);
            }
        }
    } else if established > 0 {
        c.phase = "hold".to_owned();
        c.idle(options.hold)?;
    }

    let counters = &c.all.sample.counters;
    let requests = Requests {
        rate: last_rate,
        due: counters.requests_due,
        sent: counters.requests_sent,
        ok: counters.replies_ok,
        late_replies: counters.late_replies,
        achieved_rate: if request_wall > 0.0 {
            counters.replies_ok as f64 / request_wall
        } else {
            0.0
        },
    };
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(plan.threads)
        .max(1);
    let average_rss = if established > 0 {
        rss_after.saturating_sub(rss_before) as f64 / established as f64
    } else {
        0.0
    };
    let loadgen = Cost {
        threads: plan.threads,
        ramp_cpu_seconds: ramp_cpu,
        cpu_per_login_us: if started > 0 {
            ramp_cpu * 1e6 / started as f64
        } else {
            0.0
        },
        request_cpu_seconds: request_cpu,
        cpu_per_request_us: if counters.requests_sent > 0 {
            request_cpu * 1e6 / counters.requests_sent as f64
        } else {
            0.0
        },
        request_cpu_utilization: if request_wall > 0.0 {
            request_cpu / (request_wall * cores as f64)
        } else {
            0.0
        },
        rss_before_ramp_bytes: rss_before,
        rss_after_ramp_bytes: rss_after,
        rss_per_session_bytes: average_rss,
        rss_per_idle_session_bytes: idle_session_rss(midway, established, rss_after),
        nofile_limit: options.nofile_limit,
    };
    let summary = Summary {
        pass: true,
        failure: None,
        target: options.target.clone(),
        sessions: Sessions {
            requested: plan.sessions,
            started,
            established,
            tls_compacted: c.all.sample.counters.tls_compacted,
            ramp_seconds: ramp_wall,
            setup_rate: if ramp_wall > 0.0 {
                established as f64 / ramp_wall
            } else {
                0.0
            },
        },
        requests,
        errors: Errors::new(
            counters,
            plan.sessions,
            &c.examples,
            options.max_error_ratio,
        ),
        latency_us: BTreeMap::new(),
        loadgen,
        warnings: Vec::new(),
        saturation: options.saturation.as_ref().map(|sat| Saturation {
            slo_p99_us: sat.slo_p99.as_secs_f64() * 1e6,
            max_rate: steps
                .iter()
                .filter(|s| s.pass)
                .map(|s| s.rate)
                .reduce(f64::max),
            steps: steps.clone(),
        }),
    };
    Ok(Finished {
        summary,
        histos: Histos::default(),
    })
}

fn step_result(
    sample: &Sample,
    rate: f64,
    cpu: f64,
    wall: f64,
    threads: usize,
    options: &Options,
) -> Step {
    let requests = sample.histos.get(Metric::Requests);
    let due = sample.counters.requests_due.max(1);
    let error_ratio = sample.counters.total_errors() as f64 / due as f64;
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(threads)
        .max(1);
    let utilization = if wall > 0.0 {
        cpu / (wall * cores as f64)
    } else {
        0.0
    };
    let p99 = requests.value_at_quantile(0.99) as f64 / 1e3;
    let slo = options
        .saturation
        .as_ref()
        .map_or(f64::INFINITY, |s| s.slo_p99.as_secs_f64() * 1e6);
    Step {
        rate,
        achieved_rate: if wall > 0.0 {
            sample.counters.replies_ok as f64 / wall
        } else {
            0.0
        },
        p50_us: requests.value_at_quantile(0.5) as f64 / 1e3,
        p99_us: p99,
        max_us: requests.max() as f64 / 1e3,
        error_ratio,
        loadgen_cpu_utilization: utilization,
        pass: !requests.is_empty() && p99 <= slo && error_ratio <= options.max_error_ratio,
    }
}

/// Decides pass or fail and adds the warnings that qualify the numbers.
fn judge(summary: &mut Summary, saturating: bool) {
    let send_lag_p99 = summary
        .latency_us
        .get(Metric::SendLag.name())
        .map(|r| r.p99);
    let mut failure = None;
    if summary.sessions.established == 0 {
        let why = summary
            .errors
            .examples
            .values()
            .next()
            .cloned()
            .unwrap_or_else(|| "no reason recorded".to_owned());
        failure = Some(format!("no session could log in: {why}"));
    } else if saturating {
        if summary
            .saturation
            .as_ref()
            .is_none_or(|s| s.max_rate.is_none())
        {
            failure = Some("no request rate stayed within the latency bound".to_owned());
        }
    } else if summary.errors.ratio > summary.errors.max_ratio {
        failure = Some(format!(
            "error ratio {:.6} is above the allowed {} ({} errors)",
            summary.errors.ratio, summary.errors.max_ratio, summary.errors.total
        ));
    }
    if summary.sessions.established < summary.sessions.requested && summary.sessions.established > 0
    {
        summary.warnings.push(format!(
            "only {} of {} sessions logged in",
            summary.sessions.established, summary.sessions.requested
        ));
    }
    if summary.loadgen.request_cpu_utilization > BUSY_UTILIZATION {
        summary.warnings.push(format!(
            "loadgen used {:.0}% of its CPU while sending: it may be the bottleneck (add --threads or machines)",
            summary.loadgen.request_cpu_utilization * 100.0
        ));
    }
    if let Some(lag) = send_lag_p99.filter(|&lag| lag * 1e3 > LATE_SEND as f64) {
        let cause = if summary.loadgen.request_cpu_utilization > BUSY_UTILIZATION {
            "loadgen was busy"
        } else {
            "no session had a free pipeline slot (the server fell behind, or raise --sessions or --pipeline) or loadgen's threads were descheduled"
        };
        summary.warnings.push(format!(
            "1% of requests left more than {} after their intended time ({cause}); that wait is part of the latencies",
            report::human_us(lag)
        ));
    }
    summary.pass = failure.is_none();
    summary.failure = failure;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_session_rss_counts_only_a_large_enough_second_half() {
        // 10,000 sessions, 5,000 up at the mark: 4 MB more for the other 5,000.
        let rss = idle_session_rss(Some((100_000_000, 5_000)), 10_000, 104_000_000);
        assert_eq!(rss, Some(800.0));
        // Memory freed by finished logins can make RSS shrink: that is no growth.
        assert_eq!(
            idle_session_rss(Some((100_000_000, 5_000)), 10_000, 90_000_000),
            Some(0.0)
        );
        // Too few sessions after the mark, a mark at the very end, or no mark at all.
        assert_eq!(idle_session_rss(Some((1, 600)), 1_200, 2), None);
        assert_eq!(idle_session_rss(Some((1, 9_000)), 10_000, 2), None);
        assert_eq!(idle_session_rss(None, 10_000, 2), None);
    }
}
