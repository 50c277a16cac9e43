//! Connection guard: a cap on open connections, and a deadline for a new connection's first
//! bytes.
//!
//! - **Cap.** Every connection holds one file descriptor. Past the process's limit, `accept`
//!   fails and the listener can no longer take the apiserver's calls, nor can the reload loop open
//!   the certificate files. The cap ([`max_connections`]) stays below the limit with room to spare;
//!   a connection over it is closed at once (counted in
//!   `wasm_admission_connections_refused_total`) instead of waiting in the backlog.
//! - **First bytes.** hyper's HTTP/1.1 `header_read_timeout` starts only once the protocol is
//!   known, and the protocol sniffing before it (HTTP/1.1 or HTTP/2?) has no deadline: a client
//!   that completes the TLS handshake and then sends nothing (or one byte of the HTTP/2 preface)
//!   would hold its connection, and its slot under the cap, for ever. A connection must deliver
//!   [`SNIFF_BYTES`] bytes within the deadline; every real request is longer than that.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tracing::warn;

use super::h2_idle::IdleWatch;

/// The length of the HTTP/2 connection preface: once this many bytes have arrived, hyper knows
/// the protocol and its own timeouts take over.
pub const SNIFF_BYTES: u64 = 24;

/// Connections above this are refused even when the descriptor limit would allow more: each one
/// costs memory (TLS state, buffers).
pub const MAX_CONNECTIONS: usize = 16_384;

/// Descriptors kept free for everything that is not a connection: the listeners, the reload
/// loop's file reads, the runtime, standard streams.
pub const RESERVED_FDS: u64 = 128;

/// The plain-HTTP metrics listener's own cap, so that a flood on the HTTPS port never stops
/// Prometheus from seeing it (and the other way round).
pub const METRICS_MAX_CONNECTIONS: usize = 64;

/// Raises the soft limit on open files to the hard limit (as Go programs do at start), and returns
/// the soft limit in force. `None` where it cannot be read.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed by reference.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
        }
        Some(limit.rlim_cur)
    }
    #[cfg(not(unix))]
    None
}

/// The HTTPS connection cap for a descriptor limit: [`MAX_CONNECTIONS`], or less where the limit
/// is lower, keeping [`RESERVED_FDS`] free and room for the metrics listener's
/// [`METRICS_MAX_CONNECTIONS`] (at least 16 connections).
pub fn max_connections(fd_limit: Option<u64>) -> usize {
    let by_fds = fd_limit.map_or(MAX_CONNECTIONS as u64, |l| {
        l.saturating_sub(RESERVED_FDS + METRICS_MAX_CONNECTIONS as u64)
    });
    usize::try_from(by_fds)
        .unwrap_or(MAX_CONNECTIONS)
        .clamp(16, MAX_CONNECTIONS)
}

/// Memory set aside per connection when the cap is derived from a memory limit. Attack 2 of
/// `cargo bench --bench attacks` (10,000 bare connections against a cap of 4096, release build,
/// mimalloc) measured 15 to 20 KiB of RSS per connection held, above the baseline, at its peak
/// (with about 11,000 accepts and closes a second); at 16 KiB, connections get half the limit and
/// the whole process peaked at 70 to 90 MiB of 128 (docs/hardening.md).
pub const BYTES_PER_CONNECTION: u64 = 16 * 1024;

/// The connection cap for a memory limit: connections may take half of it (the other half is
/// the process, the body budget and registry reads), at [`BYTES_PER_CONNECTION`] each; 4096 for
/// 128 MiB. `None` without a limit.
pub fn max_connections_for_memory(memory_limit: Option<u64>) -> Option<usize> {
    let limit = memory_limit?;
    let n = (limit / 2 / BYTES_PER_CONNECTION).clamp(16, MAX_CONNECTIONS as u64);
    usize::try_from(n).ok()
}

/// The cgroup v2 memory limit of this process (`memory.max`), when there is one.
pub fn cgroup_memory_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?;
    text.trim().parse().ok()
}

/// What the listeners share: the permits and the counters.
#[derive(Clone)]
pub struct Guard {
    permits: Arc<Semaphore>,
    max: usize,
    first_bytes_timeout: Duration,
    /// See [`super::h2_idle`]; `None` for no HTTP/2 idle timeout.
    h2_idle_timeout: Option<Duration>,
    open: Gauge,
    refused: Counter,
    last_warning: Arc<AtomicU64>,
    started: tokio::time::Instant,
}

impl Guard {
    pub fn new(max: usize, first_bytes_timeout: Duration, open: Gauge, refused: Counter) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            first_bytes_timeout,
            h2_idle_timeout: None,
            open,
            refused,
            last_warning: Arc::new(AtomicU64::new(0)),
            started: tokio::time::Instant::now(),
        }
    }

    /// Closes HTTP/2 connections with no request frame for `timeout` ([`super::h2_idle`]).
    pub fn with_h2_idle_timeout(mut self, timeout: Duration) -> Self {
        self.h2_idle_timeout = Some(timeout);
        self
    }

    /// Wraps an acceptor (TLS, or none for the metrics listener) so that its connections are
    /// counted against the cap and held to the first-bytes deadline.
    pub fn acceptor<A>(&self, inner: A) -> GuardAcceptor<A> {
        GuardAcceptor {
            inner,
            guard: self.clone(),
        }
    }

    fn refuse(&self) {
        self.refused.inc();
        // One log line per 10 seconds at most: a flood must not become a flood of logs. Times are
        // seconds since start plus one, so 0 means "never logged".
        let now = self.started.elapsed().as_secs() + 1;
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now >= last + 10)
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                max_connections = self.max,
                "connection cap reached: new connections are closed at once until others end"
            );
        }
    }
}

/// The acceptor of [`Guard::acceptor`].
#[derive(Clone)]
pub struct GuardAcceptor<A> {
    inner: A,
    guard: Guard,
}

impl<A, S> Accept<TcpStream, S> for GuardAcceptor<A>
where
    A: Accept<TcpStream, S>,
    A::Future: Send + 'static,
    A::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = Guarded<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Ok(permit) = self.guard.permits.clone().try_acquire_owned() else {
            self.guard.refuse();
            drop(stream);
            return Box::pin(std::future::ready(Err(io::Error::other(
                "connection cap reached",
            ))));
        };
        let slot = Slot::new(permit, self.guard.open.clone());
        // Answers go out as they are written. With Nagle's algorithm on, the last TLS record of an
        // answer waited for the apiserver's delayed ACK: measured through kube-apiserver
        // (benches/apiserver.rs), only 53% of its calls took at most 5 ms, the mean 20 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let timeout = self.guard.first_bytes_timeout;
        let idle = self.guard.h2_idle_timeout;
        let handshake = self.inner.accept(stream, service);
        Box::pin(async move {
            // The slot is held through the handshake: a connection still shaking hands counts.
            let (stream, service) = handshake.await?;
            let mut guarded = Guarded::new(stream, slot, timeout);
            guarded.idle = idle.map(IdleWatch::new);
            Ok((guarded, service))
        })
    }
}

/// One connection's place under the cap, given back when the connection ends.
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, open: Gauge) -> Self {
        open.inc();
        Self {
            _permit: permit,
            open,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A stream that holds its [`Slot`] and fails its reads with `TimedOut` when its first
/// [`SNIFF_BYTES`] bytes do not arrive in time.
pub struct Guarded<S> {
    inner: S,
    _slot: Slot,
    received: u64,
    deadline: Option<Pin<Box<Sleep>>>,
    idle: Option<IdleWatch>,
}

impl<S> Guarded<S> {
    fn new(inner: S, slot: Slot, timeout: Duration) -> Self {
        Self {
            inner,
            _slot: slot,
            received: 0,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            idle: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_ready() {
            if let Some(idle) = this.idle.as_mut() {
                idle.observe(&buf.filled()[before..]);
            }
        } else if let Some(idle) = this.idle.as_mut()
            && idle.poll_idle(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "HTTP/2 connection idle: no request for the idle timeout",
            )));
        }
        let Some(deadline) = this.deadline.as_mut() else {
            return polled;
        };
        if polled.is_ready() {
            this.received += (buf.filled().len() - before) as u64;
            if this.received >= SNIFF_BYTES {
                this.deadline = None;
            }
            return polled;
        }
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client sent no request in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_stays_below_the_descriptor_limit() {
        assert_eq!(max_connections(None), MAX_CONNECTIONS);
        assert_eq!(max_connections(Some(1_048_576)), MAX_CONNECTIONS);
        assert_eq!(max_connections(Some(1024)), 1024 - 128 - 64);
        assert_eq!(max_connections(Some(20)), 16);
    }

    #[test]
    fn the_connection_cap_follows_the_memory_limit() {
        assert_eq!(max_connections_for_memory(None), None);
        assert_eq!(max_connections_for_memory(Some(128 << 20)), Some(4096));
        assert_eq!(max_connections_for_memory(Some(256 << 20)), Some(8192));
        assert_eq!(
            max_connections_for_memory(Some(64 << 30)),
            Some(MAX_CONNECTIONS)
        );
        assert_eq!(max_connections_for_memory(Some(1 << 20)), Some(32));
        assert_eq!(max_connections_for_memory(Some(256 << 10)), Some(16));
    }
}
