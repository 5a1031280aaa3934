//! One event-loop thread: a mio poll, a slab of sessions, a timer wheel for timeouts and a
//! timerfd for precise send times. It runs the phases the coordinator commands (login
//! ramp, request phases, close) for its share of the sessions and the request rate, and
//! sends a measurement sample every interval.
//!
//! The loop is here; the sessions it drives are in `conn` (with their TLS modes in `step`
//! and `compact`), their buffers in `shared`, their bookkeeping in `slab` and `wheel`, and
//! what it exchanges with the coordinator in `plan` and `protocol`.

mod compact;
mod conn;
mod plan;
mod protocol;
mod shared;
mod slab;
mod step;
mod wheel;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use self::conn::{Conn, Outcome, connect_failure};
pub use self::plan::{Clock, Plan};
pub use self::protocol::{Command, IDLE_PHASE, Report};
use self::shared::Shared;
use self::slab::Slab;
use self::wheel::Wheel;
use crate::client::{Client, Ctx, Failure, State};
use crate::histo::ErrorKind;
use crate::net;
use crate::schedule::{Nanos, Schedule};
use crate::sys;

const WAKER: Token = Token(usize::MAX);
const TIMER: Token = Token(usize::MAX - 1);
/// Longest wait for servers to close streams at the end.
const MAX_CLOSE_WAIT: Nanos = 5_000_000_000;

struct Ramp {
    schedule: Schedule,
    /// Most logins in progress at once on this thread.
    limit: usize,
    in_progress: usize,
    finished: u64,
}

struct Requests {
    schedule: Schedule,
    /// When the schedule ends.
    end: Nanos,
    /// When to stop waiting for the last replies.
    hard_end: Nanos,
}

pub struct Worker {
    thread: usize,
    plan: Arc<Plan>,
    clock: Clock,
    poll: Poll,
    events: Events,
    timer: TimerFd,
    /// The deadline the timerfd is set to.
    armed: Option<Nanos>,
    commands: Receiver<Command>,
    reports: Sender<Report>,
    conns: Slab,
    sh: Shared,
    wheel: Wheel,
    expired: Vec<(u32, u32)>,
    /// Sessions that can take a request, round robin.
    queue: VecDeque<(u32, u32)>,
    phase: u32,
    ramp: Option<Ramp>,
    requests: Option<Requests>,
    /// Deadline for the servers to close our streams, once closing.
    closing: Option<Nanos>,
    /// Requests sent and not answered, over all sessions.
    outstanding: u64,
    /// The current measurement interval.
    interval: u64,
}

impl Worker {
    /// Sets up the poll, the waker the coordinator uses to interrupt it, and the timer.
    pub fn new(
        thread: usize,
        plan: Arc<Plan>,
        clock: Clock,
        commands: Receiver<Command>,
        reports: Sender<Report>,
    ) -> io::Result<(Self, Waker)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        poll.registry().register(
            &mut SourceFd(&timer.as_fd().as_raw_fd()),
            TIMER,
            Interest::READABLE,
        )?;
        let per_thread_accounts = plan
            .accounts
            .count()
            .min(plan.sessions)
            .div_ceil(plan.threads as u64);
        let now = clock.now();
        let worker = Self {
            thread,
            clock,
            poll,
            events: Events::with_capacity(1024),
            timer,
            armed: None,
            commands,
            reports,
            conns: Slab::default(),
            sh: Shared::new(per_thread_accounts.max(1) as usize),
            wheel: Wheel::new(plan.profile.timeout, now),
            expired: Vec::new(),
            queue: VecDeque::new(),
            phase: IDLE_PHASE,
            ramp: None,
            requests: None,
            closing: None,
            outstanding: 0,
            interval: now / plan.interval,
            plan,
        };
        Ok((worker, waker))
    }

    /// Runs until told to close (or the coordinator goes away).
    pub fn run(mut self) {
        sys::tighten_timer_slack();
        let _ = self.reports.send(Report::Started);
        if let Err(e) = self.event_loop() {
            let _ = self.reports.send(Report::Fatal {
                thread: self.thread,
                error: e.to_string(),
            });
        }
    }

    fn event_loop(&mut self) -> io::Result<()> {
        loop {
            if !self.commands() {
                return Ok(());
            }
            let now = self.clock.now();
            self.expire_timeouts(now);
            self.advance(now);
            if self
                .closing
                .is_some_and(|deadline| self.conns.len == 0 || now >= deadline)
            {
                self.finish_close();
                return Ok(());
            }
            let timeout = self.arm(now)?;
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            // Take the events out so sessions can borrow the worker while they are walked.
            let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
            for event in &events {
                let token = event.token();
                if token == WAKER || token == TIMER {
                    continue;
                }
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                self.conn_event(token.0, readable, event.is_writable());
            }
            self.events = events;
            if self.armed.is_some_and(|at| self.clock.now() >= at) {
                self.armed = None;
            }
        }
    }

    /// Applies coordinator commands; `false` once the coordinator is gone.
    fn commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Ramp { start, phase }) => {
                    self.flush_sample(false);
                    self.phase = phase;
                    let plan = &self.plan;
                    let share = (plan.sessions + (plan.threads - 1 - self.thread) as u64)
                        / plan.threads as u64;
                    self.ramp = Some(Ramp {
                        schedule: Schedule::counted(
                            start,
                            plan.setup_rate,
                            self.thread,
                            plan.threads,
                            share,
                        ),
                        limit: plan.concurrency.div_ceil(plan.threads).max(1),
                        in_progress: 0,
                        finished: 0,
                    });
                }
                Ok(Command::Requests {
                    start,
                    length,
                    rate,
                    phase,
                }) => {
                    self.flush_sample(false);
                    self.phase = phase;
                    let end = start + length;
                    self.requests = Some(Requests {
                        schedule: Schedule::interleaved(
                            start,
                            length,
                            rate,
                            self.thread,
                            self.plan.threads,
                        ),
                        end,
                        hard_end: end + 2 * self.plan.profile.timeout,
                    });
                }
                Ok(Command::Close) => self.begin_close(),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Sets the timerfd for the next thing due and returns the poll timeout.
    fn arm(&mut self, now: Nanos) -> io::Result<Duration> {
        const FALLBACK: Duration = Duration::from_secs(1);
        let wake = self.next_wake();
        if wake <= now {
            return Ok(Duration::ZERO);
        }
        // An earlier wake still pending is fine: the next one is computed then.
        if self.armed.is_none_or(|at| at > wake || at <= now) {
            let delay = TimeSpec::from_duration(Duration::from_nanos(wake - now));
            self.timer
                .set(Expiration::OneShot(delay), TimerSetTimeFlags::empty())
                .map_err(io::Error::from)?;
            self.armed = Some(wake);
        }
        Ok(FALLBACK)
    }

    fn next_wake(&self) -> Nanos {
        let mut wake = (self.interval + 1) * self.plan.interval;
        if let Some(ramp) = &self.ramp
            && ramp.in_progress < ramp.limit
        {
            wake = ramp.schedule.next_time().map_or(wake, |t| t.min(wake));
        }
        if let Some(requests) = &self.requests {
            if !self.queue.is_empty() {
                wake = requests.schedule.next_time().map_or(wake, |t| t.min(wake));
            }
            wake = wake.min(if requests.schedule.finished() {
                requests.hard_end
            } else {
                requests.end
            });
        }
        if let Some(t) = self.wheel.next_time() {
            wake = wake.min(t);
        }
        if let Some(deadline) = self.closing {
            wake = wake.min(deadline);
        }
        wake
    }

    fn ctx(&mut self, now: Nanos) -> Ctx<'_> {
        self.sh.split(&self.plan, now).0
    }

    /// Runs the time-driven work: logins and requests due, phase ends, samples.
    fn advance(&mut self, now: Nanos) {
        self.start_logins(now);
        self.send_requests();
        self.check_phase_end(now);
        while now >= (self.interval + 1) * self.plan.interval {
            self.flush_sample(true);
            self.interval += 1;
        }
    }

    fn start_logins(&mut self, now: Nanos) {
        loop {
            let Some(ramp) = self.ramp.as_mut() else {
                return;
            };
            if ramp.in_progress >= ramp.limit {
                return;
            }
            let Some((job, _)) = ramp.schedule.take(now) else {
                return;
            };
            ramp.in_progress += 1;
            let session = job * self.plan.threads as u64 + self.thread as u64;
            self.open(session);
        }
    }

    fn open(&mut self, session: u64) {
        let plan = self.plan.clone();
        let local = (!plan.local_ips.is_empty())
            .then(|| plan.local_ips[(session % plan.local_ips.len() as u64) as usize]);
        let now = self.clock.now();
        let registered = net::connect(plan.server, local).and_then(|mut sock| {
            let (index, generation) = self.conns.vacant();
            match self.poll.registry().register(
                &mut sock,
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                Ok(()) => Ok((sock, index, generation)),
                Err(e) => {
                    self.conns.release(index);
                    Err(e)
                }
            }
        });
        let (sock, index, generation) = match registered {
            Ok(registered) => registered,
            Err(e) => {
                let failure = connect_failure(plan.server, &e);
                let rec = &mut self.sh.rec;
                rec.counters().logins_started += 1;
                rec.error(failure.kind, || failure.detail);
                self.login_finished();
                return;
            }
        };
        let client = Client::new(session, &mut self.ctx(now));
        let conn = Conn::new(sock, client);
        self.conns.fill(index, conn);
        self.after(index, generation, State::Connecting, 0, Ok(Outcome::Open));
    }

    fn login_finished(&mut self) {
        if let Some(ramp) = self.ramp.as_mut() {
            ramp.in_progress = ramp.in_progress.saturating_sub(1);
            ramp.finished += 1;
        }
    }

    fn conn_event(&mut self, index: usize, readable: bool, writable: bool) {
        let plan = self.plan.clone();
        let clock = self.clock;
        let Some((generation, conn)) = self.conns.get_any(index) else {
            return;
        };
        let (state, outstanding) = (conn.client.state(), conn.client.outstanding());
        let result = conn.on_event(&plan, &mut self.sh, clock, readable, writable);
        self.after(index, generation, state, outstanding, result);
    }

    /// Bookkeeping after a session ran: drop it on failure or close, note a finished
    /// login, requeue it for requests, and keep a timeout entry for it.
    fn after(
        &mut self,
        index: usize,
        generation: u32,
        before: State,
        before_outstanding: usize,
        result: Result<Outcome, Failure>,
    ) {
        if result != Ok(Outcome::Open) {
            // The session ends here: whatever it had outstanding is settled by dropping
            // it, and a login still in progress is finished (unsuccessfully).
            self.outstanding = self.outstanding.saturating_sub(before_outstanding as u64);
            if !matches!(before, State::Ready | State::Closing) {
                self.login_finished();
            }
            self.drop_conn(index, result.err());
            return;
        }
        let timeout = self.plan.profile.timeout;
        let pipeline = &self.plan.profile;
        let Some(conn) = self.conns.get(index, generation) else {
            return;
        };
        let state = conn.client.state();
        let outstanding = conn.client.outstanding();
        let free = conn.client.free_slots(pipeline) > 0;
        let mut push_timer = None;
        if conn.timer_at == 0
            && let Some(at) = conn.client.next_deadline(timeout)
        {
            conn.timer_at = at;
            push_timer = Some(at);
        }
        let enqueue = free && !conn.queued;
        if enqueue {
            conn.queued = true;
        }
        self.outstanding =
            (self.outstanding + outstanding as u64).saturating_sub(before_outstanding as u64);
        if let Some(at) = push_timer {
            self.wheel.push(at, index, generation);
        }
        if enqueue {
            self.queue.push_back((index as u32, generation));
        }
        if before != State::Ready && state == State::Ready {
            self.login_finished();
        }
    }

    /// Removes a session; a failure counts as an error, and so does each request the
    /// session still had outstanding.
    fn drop_conn(&mut self, index: usize, failure: Option<Failure>) {
        let Some(mut conn) = self.conns.remove(index) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.sock);
        let Some(failure) = failure else { return };
        if conn.client.state() != State::Closing {
            let now = self.clock.now();
            let mut ctx = self.ctx(now);
            ctx.rec.error(failure.kind, || failure.detail);
            conn.client.abandon(&mut ctx);
        }
    }

    fn expire_timeouts(&mut self, now: Nanos) {
        self.wheel.expire(now, &mut self.expired);
        let expired = std::mem::take(&mut self.expired);
        for &(index, generation) in &expired {
            let plan = self.plan.clone();
            let Some(conn) = self.conns.get(index as usize, generation) else {
                continue;
            };
            conn.timer_at = 0;
            let (state, outstanding) = (conn.client.state(), conn.client.outstanding());
            let (mut ctx, _) = self.sh.split(&plan, now);
            let result = conn.client.check_timeouts(&mut ctx).map(|_| Outcome::Open);
            self.after(index as usize, generation, state, outstanding, result);
        }
        self.expired = expired;
        self.expired.clear();
    }

    /// Hands due requests to sessions with a free pipeline slot, round robin.
    fn send_requests(&mut self) {
        let Some(mut requests) = self.requests.take() else {
            return;
        };
        let plan = self.plan.clone();
        let clock = self.clock;
        while requests
            .schedule
            .next_time()
            .is_some_and(|t| t <= clock.now())
        {
            let Some((index, generation)) = self.queue.pop_front() else {
                break;
            };
            let Some(conn) = self.conns.get(index as usize, generation) else {
                continue;
            };
            conn.queued = false;
            if conn.client.free_slots(&plan.profile) == 0 {
                continue;
            }
            let now = clock.now();
            let Some((job, intended)) = requests.schedule.take(now) else {
                break;
            };
            let kind = plan
                .mix
                .kind(job * plan.threads as u64 + self.thread as u64);
            let (state, outstanding) = (conn.client.state(), conn.client.outstanding());
            let (mut ctx, _) = self.sh.split(&plan, now);
            conn.client.send_request(&mut ctx, kind, intended);
            let result = conn.send_out(&mut self.sh).map(|()| Outcome::Open);
            self.after(index as usize, generation, state, outstanding, result);
        }
        self.requests = Some(requests);
    }

    fn check_phase_end(&mut self, now: Nanos) {
        if self
            .ramp
            .as_ref()
            .is_some_and(|r| r.schedule.finished() && r.finished >= r.schedule.total())
        {
            self.ramp = None;
            self.end_phase();
        }
        let Some(requests) = &self.requests else {
            return;
        };
        let drained = requests.schedule.finished() && self.outstanding == 0;
        if !(drained || (now >= requests.end && self.conns.len == 0) || now >= requests.hard_end) {
            return;
        }
        let unsent = requests.schedule.total() - requests.schedule.taken();
        let total = requests.schedule.total();
        self.requests = None;
        let plan = self.plan.clone();
        for index in 0..self.conns.slots.len() {
            let Some((_, conn)) = self.conns.get_any(index) else {
                continue;
            };
            let (mut ctx, _) = self.sh.split(&plan, now);
            conn.client.expire_all(&mut ctx);
        }
        self.outstanding = 0;
        let rec = &mut self.sh.rec;
        rec.counters().requests_due += total;
        rec.errors(ErrorKind::Unsent, unsent, || {
            "no session was free to send the request before the phase ended".to_owned()
        });
        self.end_phase();
    }

    fn end_phase(&mut self) {
        self.flush_sample(false);
        let _ = self.reports.send(Report::PhaseDone { phase: self.phase });
        self.phase = IDLE_PHASE;
    }

    fn flush_sample(&mut self, boundary: bool) {
        let sample = Box::new(self.sh.rec.take_sample());
        let _ = self.reports.send(Report::Sample {
            interval: self.interval,
            boundary,
            phase: self.phase,
            sample,
        });
    }

    fn begin_close(&mut self) {
        let plan = self.plan.clone();
        let now = self.clock.now();
        self.ramp = None;
        self.requests = None;
        self.queue.clear();
        for index in 0..self.conns.slots.len() {
            let Some((generation, conn)) = self.conns.get_any(index) else {
                continue;
            };
            let (state, outstanding) = (conn.client.state(), conn.client.outstanding());
            let (mut ctx, _) = self.sh.split(&plan, now);
            conn.client.close(&mut ctx);
            // The stream close goes first, TLS close_notify behind it.
            let result = conn.send_closing(&mut self.sh).map(|()| Outcome::Open);
            self.after(index, generation, state, outstanding, result);
        }
        self.closing = Some(now + plan.profile.timeout.min(MAX_CLOSE_WAIT));
    }

    fn finish_close(&mut self) {
        for index in 0..self.conns.slots.len() {
            self.conns.remove(index);
        }
        self.flush_sample(false);
        let _ = self.reports.send(Report::Closed);
    }
}
