//! Where `serve`'s log lines go: gathered in memory and written to standard error together, at
//! most [`FLUSH_INTERVAL`] after they were logged, instead of one `write(2)` per line.
//!
//! `serve` logs one line per review, so a direct write was a third system call per review next to
//! the request's read and the answer's write, and where standard error is a pipe (a container
//! runtime reads it) each write also woke the reader. Under `benches/load/` load at 25
//! connections that took serve from 31.0 to 37.5 µs of CPU per review (21% more: the reason this
//! module is kept); gathered, a line costs a copy into this buffer (docs/performance.md).
//!
//! Hand-written rather than `tracing-appender`'s non-blocking writer: that one hands each line
//! through a channel to a thread that writes it as soon as it arrives, so under a steady stream of
//! reviews every line still wakes that thread (a futex call and a context switch) and is still one
//! write. Here the flushing thread is woken once per batch, sleeps for the interval while lines
//! gather, and writes them all at once.
//!
//! Bounded: once [`MAX_PENDING`] bytes are waiting, the logging thread writes them out itself, so a
//! stalled reader of standard error slows logging down instead of growing the buffer. Nothing is
//! lost on a normal exit: [`LogGuard`] writes out what is left when `serve` returns. (A process
//! killed outright loses at most the last interval's lines.)

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// The longest a line waits in memory before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// The most bytes that wait in memory: reaching it writes them out at once.
pub const MAX_PENDING: usize = 64 * 1024;

/// The output, shared by every thread that logs ([`MakeWriter`] for tracing-subscriber).
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when a line arrives in an empty buffer, and when the guard is dropped.
    wake: Condvar,
    /// Taken while `pending` is still held, so that batches reach the output in order, and held
    /// while writing, so that lines keep gathering meanwhile.
    out: Mutex<Box<dyn Write + Send>>,
}

struct Pending {
    lines: Vec<u8>,
    /// The other buffer, empty, swapped in while a batch is written: once both have grown, a
    /// batch allocates nothing.
    spare: Vec<u8>,
    closed: bool,
}

/// Writes out the lines still waiting when dropped, and stops the flushing thread.
#[must_use = "dropping the guard writes out the waiting lines; keep it until the program ends"]
pub struct LogGuard {
    shared: Arc<Shared>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

/// Poisoning only means another thread panicked while logging; the bytes are still sound.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LogSink {
    /// A sink over `out`, with its flushing thread. Should the thread not start, every line is
    /// written as it comes.
    pub fn new(out: Box<dyn Write + Send>) -> (LogSink, LogGuard) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                lines: Vec::new(),
                spare: Vec::new(),
                closed: false,
            }),
            wake: Condvar::new(),
            out: Mutex::new(out),
        });
        let flusher = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("log-flush".into())
                .spawn(move || shared.flush_loop())
                .ok()
        };
        if flusher.is_none() {
            lock(&shared.pending).closed = true;
        }
        let guard = LogGuard {
            shared: Arc::clone(&shared),
            flusher,
        };
        (LogSink { shared }, guard)
    }
}

impl Shared {
    fn append(&self, line: &[u8]) {
        let mut pending = lock(&self.pending);
        let was_empty = pending.lines.is_empty();
        pending.lines.extend_from_slice(line);
        if pending.closed || pending.lines.len() >= MAX_PENDING {
            self.write_out(pending);
        } else if was_empty {
            self.wake.notify_one();
        }
    }

    /// Writes the waiting lines. Write errors are dropped, as tracing-subscriber drops them: there
    /// is nowhere left to report them.
    fn write_out(&self, mut pending: MutexGuard<'_, Pending>) {
        if pending.lines.is_empty() {
            return;
        }
        let spare = std::mem::take(&mut pending.spare);
        let mut batch = std::mem::replace(&mut pending.lines, spare);
        let mut out = lock(&self.out);
        drop(pending);
        let _ = out.write_all(&batch);
        let _ = out.flush();
        drop(out);
        batch.clear();
        let mut pending = lock(&self.pending);
        // A burst of long lines is not kept.
        if pending.spare.capacity() < batch.capacity() && batch.capacity() <= 4 * MAX_PENDING {
            pending.spare = batch;
        }
    }

    fn flush_loop(&self) {
        loop {
            let mut pending = lock(&self.pending);
            while pending.lines.is_empty() && !pending.closed {
                pending = self
                    .wake
                    .wait(pending)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if pending.closed {
                self.write_out(pending);
                return;
            }
            // Let the lines of the next moments join this batch.
            drop(pending);
            std::thread::sleep(FLUSH_INTERVAL);
            self.write_out(lock(&self.pending));
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let mut pending = lock(&self.shared.pending);
        pending.closed = true;
        self.shared.wake.notify_one();
        drop(pending);
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        // Left only if the flushing thread panicked: once `closed` is set, `append` writes at once.
        self.shared.write_out(lock(&self.shared.pending));
    }
}

/// One event's writer: tracing-subscriber formats a line whole and writes it in one call.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.shared.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An output that records what reaches it and how many writes it took.
    #[derive(Clone, Default)]
    struct Recorded(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Recorded {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut seen = lock(&self.0);
            seen.0.extend_from_slice(buf);
            seen.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Recorded {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).0.clone()).expect("UTF-8")
        }
        fn writes(&self) -> usize {
            lock(&self.0).1
        }
    }

    fn log(sink: &LogSink, line: &str) {
        sink.make_writer()
            .write_all(line.as_bytes())
            .expect("write");
    }

    #[test]
    fn a_line_reaches_the_output_within_the_interval_without_an_exit() {
        let out = Recorded::default();
        let (sink, _guard) = LogSink::new(Box::new(out.clone()));
        log(&sink, "one\n");
        let start = Instant::now();
        while out.text().is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the line never reached the output"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(out.text(), "one\n");
    }

    #[test]
    fn lines_logged_together_are_written_together() {
        let out = Recorded::default();
        let (sink, guard) = LogSink::new(Box::new(out.clone()));
        for i in 0..100 {
            log(&sink, &format!("line {i}\n"));
        }
        drop(guard);
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(out.text(), expected);
        // One batch, or a few should the interval end mid-way: far from one write per line.
        assert!(out.writes() < 25, "{} writes for 100 lines", out.writes());
    }

    #[test]
    fn the_guard_writes_out_every_waiting_line_in_order_from_many_threads() {
        let out = Recorded::default();
        let (sink, guard) = LogSink::new(Box::new(out.clone()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        log(&sink, &format!("thread {t} line {i}\n"));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        drop(guard);
        let text = out.text();
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("thread {t} line ")))
                .map(|i| i.parse().expect("index"))
                .collect();
            assert_eq!(mine, (0..2000).collect::<Vec<_>>(), "thread {t}");
        }
    }

    #[test]
    fn waiting_lines_never_exceed_the_bound() {
        let out = Recorded::default();
        let (sink, _guard) = LogSink::new(Box::new(out.clone()));
        let line = "x".repeat(999) + "\n";
        for _ in 0..1000 {
            log(&sink, &line);
            let waiting = lock(&sink.shared.pending).lines.len();
            assert!(waiting < MAX_PENDING, "{waiting} bytes waiting");
        }
    }

    #[test]
    fn lines_after_the_guard_is_dropped_are_written_at_once() {
        let out = Recorded::default();
        let (sink, guard) = LogSink::new(Box::new(out.clone()));
        drop(guard);
        log(&sink, "late\n");
        assert_eq!(out.text(), "late\n");
    }
}
