//! The least CPU an open-loop client can spend per request over loopback TCP on this
//! machine: one thread sends a fixed-size request on a constant-rate schedule (timerfd,
//! as loadgen does), round-robin over N connections, and reads each reply; an echo server
//! runs on another thread. No XMPP, no TLS, no histograms: what is left is the kernel's
//! work for one send, one receive and the wakeups, which loadgen cannot avoid either.
//! Compare its figures with loadgen's "CPU per request" from a run at the same rate and
//! session count.
//!
//! ```sh
//! cargo run --release -p loadgen --example loopback_floor -- 1000 10000 10
//! ```
//! (connections, requests per second, seconds; prints the client thread's CPU per request,
//! user and system together, from getrusage(RUSAGE_THREAD): this kernel splits the two by
//! sampling at its tick, too coarsely to tell them apart per request).

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

/// The size of a SIC request as loadgen sends it, and of the echo.
const REQUEST: &[u8] = b"<iq type='get' id='12345'><address xmlns='urn:xmpp:sic:1'/></iq>";
const TIMER: Token = Token(usize::MAX);

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments: CONNECTIONS RATE SECONDS"))
        .collect();
    let (connections, rate, seconds) = match args[..] {
        [] => (1000, 10_000, 10),
        [c, r, s] if c > 0 && r > 0 && s > 0 => (c as usize, r, s),
        _ => panic!("arguments: CONNECTIONS RATE SECONDS (all above 0)"),
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || echo(listener, connections));
    let (sent, received, cpu) = client(address, connections, rate, seconds);
    println!(
        "{sent} requests over {connections} connections at {rate}/s, {received} replies: \
         client CPU per request {:.2}µs",
        cpu.as_secs_f64() * 1e6 / sent as f64
    );
}

/// User plus system CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    let time =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    time(usage.user_time()) + time(usage.system_time())
}

fn client(
    address: SocketAddr,
    connections: usize,
    rate: u64,
    seconds: u64,
) -> (u64, u64, Duration) {
    let mut poll = Poll::new().expect("poll");
    let mut streams = Vec::with_capacity(connections);
    for i in 0..connections {
        let stream = std::net::TcpStream::connect(address).expect("connect");
        streams.push(registered(&poll, stream, i));
    }
    let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK).expect("timerfd");
    poll.registry()
        .register(
            &mut SourceFd(&timer.as_fd().as_raw_fd()),
            TIMER,
            Interest::READABLE,
        )
        .expect("register timer");
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let interval = Duration::from_secs(1) / rate as u32;
    let total = rate * seconds;
    let (mut sent, mut received_bytes) = (0u64, 0u64);
    let cpu_before = thread_cpu();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds + 5);
    while received_bytes < total * REQUEST.len() as u64 && Instant::now() < deadline {
        let now = Instant::now();
        while sent < total && start + interval * sent as u32 <= now {
            let stream = &mut streams[sent as usize % connections];
            let n = stream.write(REQUEST).expect("send");
            assert_eq!(
                n,
                REQUEST.len(),
                "the socket buffer never fills at this size"
            );
            sent += 1;
        }
        let timeout = if sent < total {
            let due = start + interval * sent as u32;
            let delay = due
                .saturating_duration_since(Instant::now())
                .max(Duration::from_micros(1));
            timer
                .set(
                    Expiration::OneShot(TimeSpec::from_duration(delay)),
                    TimerSetTimeFlags::empty(),
                )
                .expect("arm timer");
            None
        } else {
            Some(Duration::from_millis(100))
        };
        poll.poll(&mut events, timeout).expect("poll");
        for event in &events {
            if event.token() == TIMER {
                continue;
            }
            let stream = &mut streams[event.token().0];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => panic!("the echo server closed a connection"),
                    Ok(n) => {
                        received_bytes += n as u64;
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
    }
    (
        sent,
        received_bytes / REQUEST.len() as u64,
        thread_cpu() - cpu_before,
    )
}

/// A connected socket as both ends use it: no Nagle delay, non-blocking, polled for
/// reading under `token`.
fn registered(poll: &Poll, stream: std::net::TcpStream, token: usize) -> TcpStream {
    stream.set_nodelay(true).expect("nodelay");
    stream.set_nonblocking(true).expect("nonblocking");
    let mut stream = TcpStream::from_std(stream);
    poll.registry()
        .register(&mut stream, Token(token), Interest::READABLE)
        .expect("register");
    stream
}

/// Echoes every byte back on the connection it came from.
fn echo(listener: TcpListener, connections: usize) {
    let mut poll = Poll::new().expect("poll");
    let mut streams = Vec::with_capacity(connections);
    for i in 0..connections {
        let (stream, _) = listener.accept().expect("accept");
        streams.push(registered(&poll, stream, i));
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        poll.poll(&mut events, None).expect("poll");
        for event in &events {
            let stream = &mut streams[event.token().0];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        stream.write_all(&buf[..n]).expect("echo");
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
    }
}
