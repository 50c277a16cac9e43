//! The HTTP/2 idle timeout (issue 23, finding 3). hyper closes idle HTTP/1.1 connections
//! (`header_read_timeout`) but has no such setting for HTTP/2: a client that sent the preface
//! and SETTINGS and answers PINGs kept its connection, and its place under the connection cap,
//! for as long as it liked.
//!
//! [`IdleWatch`] reads the client's bytes as they arrive (after TLS) and follows the HTTP/2
//! frame headers. A connection on which no request frame (HEADERS, CONTINUATION or DATA) has
//! arrived for the timeout is closed; PING, SETTINGS, WINDOW_UPDATE and the rest do not count.
//! The timeout is above the longest a review can take after its last frame (the apiserver's
//! budget is at most 30 s), so a stream still being answered is never cut. A connection that
//! does not start with the HTTP/2 preface is left alone.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Idle HTTP/2 connections are closed after this long without a request frame.
pub const DEFAULT_H2_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;

enum Phase {
    /// Matching the preface; this many bytes matched so far.
    Preface(usize),
    /// In the frames: a frame header being read, or a payload being skipped.
    Frames {
        header: [u8; FRAME_HEADER],
        have: usize,
        skip: usize,
    },
    /// Not HTTP/2.
    Off,
}

/// Watches one connection's incoming bytes.
pub struct IdleWatch {
    phase: Phase,
    timeout: Duration,
    last_request_frame: Instant,
    timer: Pin<Box<Sleep>>,
}

impl IdleWatch {
    pub fn new(timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            phase: Phase::Preface(0),
            timeout,
            last_request_frame: now,
            timer: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }

    /// Follows the bytes just read.
    pub fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.phase {
                Phase::Off => return,
                Phase::Preface(matched) => {
                    let n = (PREFACE.len() - *matched).min(bytes.len());
                    if bytes[..n] != PREFACE[*matched..*matched + n] {
                        self.phase = Phase::Off;
                        return;
                    }
                    *matched += n;
                    bytes = &bytes[n..];
                    if *matched == PREFACE.len() {
                        self.phase = Phase::Frames {
                            header: [0; FRAME_HEADER],
                            have: 0,
                            skip: 0,
                        };
                    }
                }
                Phase::Frames { header, have, skip } => {
                    if *skip > 0 {
                        let n = (*skip).min(bytes.len());
                        *skip -= n;
                        bytes = &bytes[n..];
                        continue;
                    }
                    let n = (FRAME_HEADER - *have).min(bytes.len());
                    header[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == FRAME_HEADER {
                        *have = 0;
                        *skip = usize::from(header[0]) << 16
                            | usize::from(header[1]) << 8
                            | usize::from(header[2]);
                        if matches!(header[3], DATA | HEADERS | CONTINUATION) {
                            self.last_request_frame = Instant::now();
                        }
                    }
                }
            }
        }
    }

    /// Ready when the connection is HTTP/2 and has been idle for the timeout; registers a wake-up
    /// otherwise.
    pub fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if matches!(self.phase, Phase::Off | Phase::Preface(_)) {
            return Poll::Pending;
        }
        loop {
            let due = self.last_request_frame + self.timeout;
            if self.timer.deadline() != due {
                self.timer.as_mut().reset(due);
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) if Instant::now() >= due => return Poll::Ready(()),
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    pub fn is_http2(&self) -> bool {
        matches!(self.phase, Phase::Frames { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![
            (payload >> 16) as u8,
            (payload >> 8) as u8,
            payload as u8,
            kind,
            0,
            0,
            0,
            0,
            1,
        ];
        f.resize(FRAME_HEADER + payload, 0xAB);
        f
    }

    #[tokio::test]
    async fn only_request_frames_count_as_activity() {
        let mut watch = IdleWatch::new(Duration::from_secs(10));
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0)); // SETTINGS
        // Split at odd places: the parser must follow frames across reads.
        for chunk in bytes.chunks(5) {
            watch.observe(chunk);
        }
        assert!(watch.is_http2());
        let start = watch.last_request_frame;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut pings = Vec::new();
        for _ in 0..3 {
            pings.extend(frame(0x6, 8)); // PING
        }
        watch.observe(&pings);
        assert_eq!(watch.last_request_frame, start, "PINGs do not count");
        let mut request = frame(HEADERS, 300);
        request.extend(frame(DATA, 70_000));
        for chunk in request.chunks(4096) {
            watch.observe(chunk);
        }
        assert!(watch.last_request_frame > start);
        // The DATA payload was skipped whole: a PING after it is read as a frame header.
        let after = watch.last_request_frame;
        tokio::time::sleep(Duration::from_millis(5)).await;
        watch.observe(&frame(0x6, 8));
        assert_eq!(watch.last_request_frame, after);
    }

    #[tokio::test]
    async fn http1_is_left_alone() {
        let mut watch = IdleWatch::new(Duration::from_secs(10));
        watch.observe(b"POST /mutate HTTP/1.1\r\n");
        assert!(!watch.is_http2());
        assert!(matches!(watch.phase, Phase::Off));
    }
}
