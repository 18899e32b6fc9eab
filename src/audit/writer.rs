//! A batching, non-blocking log writer for `tracing-subscriber`'s `fmt` layer (feature
//! `json-log`).
//!
//! `tracing-appender`'s `non_blocking` copies every line into a new `Vec`, sends it over a
//! channel and often wakes its parked worker thread for it: per line, an allocation freed on
//! another thread and a futex wake-up, more than the whole [`JsonLines`](super::JsonLines)
//! formatter costs. Here a line is appended to a shared buffer under a short lock, and one
//! worker thread writes the buffer out in batches: no allocation per line, and at most one
//! wake-up per batch.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

use crate::ConfigError;

/// Default size of the line buffer: 1 MiB.
const DEFAULT_LOG_BUFFER: usize = 1024 * 1024;

/// Default longest time a line waits in the buffer before it is written: 1 ms.
const DEFAULT_LOG_MAX_DELAY: Duration = Duration::from_millis(1);

/// Smallest buffer [`LogWriterBuilder::capacity`] accepts: 4 KiB.
const MIN_CAPACITY: usize = 4 * 1024;

/// Default time [`LogWriterGuard`]'s drop waits for the last batch: 1 s.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// A [`MakeWriter`] for `tracing-subscriber`'s `fmt` layer that never blocks the request
/// path: each line is appended to a shared buffer under a short lock, and a worker thread
/// writes the buffer to the wrapped writer in batches, with one `write_all` and one `flush`
/// per batch.
///
/// - **Whole lines.** The `fmt` layer formats each event into a string and hands it over in
///   one `write_all`; this writer accepts each `write` whole or not at all, so a line is never
///   split between batches or interleaved with another thread's line, and lines written by
///   one thread stay in order.
/// - **Lossy, never blocking.** When the buffer is full (the wrapped writer is slower than
///   the log), the line is dropped and counted in [`dropped_lines`](Self::dropped_lines)
///   instead of waiting: a flood of requests must not be able to stall the API through its
///   own log (OWASP Logging Cheat Sheet). `tracing-appender`'s default is lossy too.
/// - **Batches.** The worker sleeps while there is nothing to write. The first line into an
///   empty buffer wakes it; it then waits up to the [max delay](LogWriterBuilder::max_delay)
///   (1 ms by default) or until the buffer is half full, swaps the buffer for its spare one
///   and writes it. Both buffers are reused: no allocation in steady state.
/// - **Shutdown.** Dropping the [`LogWriterGuard`] writes what is buffered, flushes and stops
///   the worker. Keep the guard in `main` for as long as the program logs.
///
/// ```
/// use axum_shield::audit::{JsonLines, JsonLinesFields, LogWriter};
///
/// let (writer, _guard) = LogWriter::new(std::io::stdout());
/// let subscriber = tracing_subscriber::fmt()
///     .fmt_fields(JsonLinesFields::new())
///     .event_format(JsonLines::new())
///     .with_writer(writer.clone())
///     .finish();
/// tracing::subscriber::with_default(subscriber, || tracing::info!("hello"));
/// assert_eq!(writer.dropped_lines(), 0);
/// // `_guard` dropped here: "hello" is written and stdout flushed.
/// ```
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Stops a [`LogWriter`]'s worker thread when dropped, after it has written and flushed
/// every buffered line.
///
/// The drop waits at most the [shutdown timeout](LogWriterBuilder::shutdown_timeout) (1 s
/// by default) for the wrapped writer, so a blocked output cannot hang the process's exit.
#[must_use = "dropping the guard stops the log writer at once"]
pub struct LogWriterGuard {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    shutdown_timeout: Duration,
}

/// Settings of a [`LogWriter`]: buffer size, max delay, shutdown timeout, thread name.
///
/// ```
/// use std::time::Duration;
/// use axum_shield::audit::LogWriter;
///
/// # fn main() -> Result<(), axum_shield::ConfigError> {
/// let (writer, guard) = LogWriter::builder()
///     .capacity(4 * 1024 * 1024)
///     .max_delay(Duration::from_millis(5))
///     .build(std::io::stderr())?;
/// # drop((writer, guard));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LogWriterBuilder {
    capacity: usize,
    max_delay: Duration,
    shutdown_timeout: Duration,
    thread_name: String,
}

/// What the request path and the worker share.
struct Shared {
    state: Mutex<State>,
    /// Wakes the worker: first line into an empty buffer, buffer past half, shutdown.
    wake: Condvar,
    /// Tells the guard the worker has finished.
    done: Condvar,
    capacity: usize,
    max_delay: Duration,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    /// Times the worker woke up (tests check an idle worker sleeps).
    wakeups: AtomicU64,
}

struct State {
    /// Lines waiting for the worker; its capacity is reserved once and never grows.
    lines: Vec<u8>,
    worker: Worker,
    shutdown: bool,
    finished: bool,
}

/// What the worker is doing, so that writers notify it only when it waits for them: a
/// notification is a syscall even when nobody waits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Worker {
    /// Waiting for the first line, without a timeout.
    Idle,
    /// Letting a batch grow until the max delay or half a buffer.
    Gathering,
    /// Notified, or writing a batch: nobody needs to wake it.
    Busy,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // The lock is only held to append, swap or set flags, which leave the state valid even if
    // a thread panicked while holding it: carry on rather than panic the request path.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LogWriter {
    /// A writer to `output` with the default settings (1 MiB buffer, 1 ms max delay), and the
    /// guard that flushes it on drop.
    ///
    /// # Panics
    ///
    /// If the operating system cannot start the worker thread (as `std::thread::spawn`);
    /// [`LogWriter::builder`] returns that as an error instead.
    pub fn new<W: Write + Send + 'static>(output: W) -> (Self, LogWriterGuard) {
        match Self::builder().build(output) {
            Ok(pair) => pair,
            Err(e) => panic!("{e}"),
        }
    }

    /// A builder to choose the buffer size, max delay, shutdown timeout and thread name.
    pub fn builder() -> LogWriterBuilder {
        LogWriterBuilder::default()
    }

    /// How many lines were dropped because the buffer was full (or longer than the buffer).
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// How many batches the wrapped writer failed to write or flush (their lines are lost).
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }

    fn append(&self, line: &[u8]) {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        let len = state.lines.len();
        if line.len() > shared.capacity - len || state.finished {
            let gathering = state.worker == Worker::Gathering;
            if gathering {
                state.worker = Worker::Busy;
            }
            drop(state);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            if gathering {
                shared.wake.notify_one();
            }
            return;
        }
        state.lines.extend_from_slice(line);
        let notify = match state.worker {
            Worker::Idle => true,
            Worker::Gathering => state.lines.len() > shared.capacity / 2,
            Worker::Busy => false,
        };
        if notify {
            state.worker = Worker::Busy;
        }
        drop(state);
        if notify {
            shared.wake.notify_one();
        }
    }
}

/// Appends the whole of `buf` as one unit, or drops it when the buffer is full; never blocks
/// on the output, never fails. `flush` does nothing: the worker flushes after each batch.
impl Write for &LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            self.append(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// As for `&LogWriter`.
impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogWriter")
            .field("capacity", &self.shared.capacity)
            .field("max_delay", &self.shared.max_delay)
            .field("dropped_lines", &self.dropped_lines())
            .field("write_errors", &self.write_errors())
            .finish()
    }
}

impl Default for LogWriterBuilder {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_LOG_BUFFER,
            max_delay: DEFAULT_LOG_MAX_DELAY,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            thread_name: "axum-shield-log".to_owned(),
        }
    }
}

impl LogWriterBuilder {
    /// Bytes of lines the buffer holds (default 1 MiB, at least 4 KiB); lines that do not fit
    /// are dropped. Two buffers of this size are reserved (one being written while the other
    /// fills); memory is only touched as lines arrive.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Longest time the worker lets a batch grow after its first line (default 1 ms); it
    /// writes earlier when the buffer is half full. A longer delay means fewer wake-ups and
    /// larger writes, and more lines lost if the process crashes; `Duration::ZERO` writes
    /// each batch as soon as the worker is awake.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Longest time [`LogWriterGuard`]'s drop waits for the worker to write and flush the last
    /// batch (default 1 s), so a blocked output cannot hang the process's exit.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Name of the worker thread (default `axum-shield-log`).
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// Starts the worker thread writing to `output`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the capacity is below 4 KiB, or when the operating system
    /// cannot start the worker thread.
    pub fn build<W: Write + Send + 'static>(
        self,
        output: W,
    ) -> Result<(LogWriter, LogWriterGuard), ConfigError> {
        if self.capacity < MIN_CAPACITY {
            return Err(ConfigError::new(
                "log writer capacity",
                format!(
                    "a buffer of {} bytes is too small for log lines",
                    self.capacity
                ),
                "use at least 4096 bytes, e.g. the default of 1 MiB",
            ));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                lines: Vec::with_capacity(self.capacity),
                worker: Worker::Busy,
                shutdown: false,
                finished: false,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
            capacity: self.capacity,
            max_delay: self.max_delay,
            dropped: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
        });
        let worker_shared = Arc::clone(&shared);
        let worker = thread::Builder::new()
            .name(self.thread_name)
            .spawn(move || run_worker(&worker_shared, output))
            .map_err(|e| {
                ConfigError::new(
                    "log writer thread",
                    format!("the worker thread could not start: {e}"),
                    "check the process's thread limit",
                )
            })?;
        Ok((
            LogWriter {
                shared: Arc::clone(&shared),
            },
            LogWriterGuard {
                shared,
                worker: Some(worker),
                shutdown_timeout: self.shutdown_timeout,
            },
        ))
    }
}

/// Marks the worker finished and wakes the guard, also when the output panicked.
struct Finished<'a>(&'a Shared);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.finished = true;
        state.lines.clear();
        drop(state);
        self.0.done.notify_all();
    }
}

fn run_worker<W: Write>(shared: &Shared, mut output: W) {
    let _finished = Finished(shared);
    let mut spare: Vec<u8> = Vec::with_capacity(shared.capacity);
    let mut state = lock(&shared.state);
    loop {
        // Sleep until there is a line (or shutdown): no periodic wake-ups while idle.
        while state.lines.is_empty() && !state.shutdown {
            state.worker = Worker::Idle;
            state = shared
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            shared.wakeups.fetch_add(1, Ordering::Relaxed);
        }
        if state.lines.is_empty() {
            break; // shutdown, nothing left
        }
        // Let the batch grow, up to the max delay or half a buffer.
        let deadline = Instant::now() + shared.max_delay;
        while !state.shutdown && state.lines.len() <= shared.capacity / 2 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state.worker = Worker::Gathering;
            state = shared
                .wake
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            shared.wakeups.fetch_add(1, Ordering::Relaxed);
        }
        state.worker = Worker::Busy;
        std::mem::swap(&mut state.lines, &mut spare);
        drop(state);
        if output
            .write_all(&spare)
            .and_then(|()| output.flush())
            .is_err()
        {
            shared.write_errors.fetch_add(1, Ordering::Relaxed);
        }
        spare.clear();
        state = lock(&shared.state);
    }
    drop(state);
    if output.flush().is_err() {
        shared.write_errors.fetch_add(1, Ordering::Relaxed);
    }
}

impl LogWriterGuard {
    /// How many lines were dropped because the buffer was full (or longer than the buffer).
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// How many batches the wrapped writer failed to write or flush (their lines are lost).
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }
}

impl Drop for LogWriterGuard {
    fn drop(&mut self) {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        state.shutdown = true;
        drop(state);
        shared.wake.notify_one();
        let state = lock(&shared.state);
        let (state, _) = shared
            .done
            .wait_timeout_while(state, self.shutdown_timeout, |s| !s.finished)
            .unwrap_or_else(PoisonError::into_inner);
        let finished = state.finished;
        drop(state);
        if let Some(worker) = self.worker.take() {
            if finished {
                // Returns at once: the worker has nothing left to do. Its panic, if the
                // output panicked, is not ours to propagate.
                let _ = worker.join();
            }
            // Otherwise the output is blocked: leave the thread behind rather than hang.
        }
    }
}

impl fmt::Debug for LogWriterGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogWriterGuard")
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// An output that records what it is given, shared with the test.
    #[derive(Clone, Default)]
    struct Recorder {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<AtomicUsize>,
        delay: Duration,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            thread::sleep(self.delay);
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Recorder {
        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
        }
    }

    fn line(thread: usize, n: usize) -> String {
        format!(
            "{{\"thread\":{thread},\"n\":{n},\"pad\":\"{}\"}}\n",
            "x".repeat(n % 97)
        )
    }

    #[test]
    fn concurrent_lines_arrive_whole_in_order_and_all() {
        let out = Recorder::default();
        let (writer, guard) = LogWriter::builder()
            .capacity(64 * 1024 * 1024)
            .build(out.clone())
            .unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                thread::spawn(move || {
                    for n in 0..10_000 {
                        (&writer).write_all(line(t, n).as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        assert_eq!(writer.dropped_lines(), 0);
        let text = out.text();
        let mut next = [0usize; 4];
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let t = v["thread"].as_u64().unwrap() as usize;
            let n = v["n"].as_u64().unwrap() as usize;
            assert_eq!(n, next[t], "thread {t} out of order");
            assert_eq!(format!("{l}\n"), line(t, n));
            next[t] += 1;
        }
        assert_eq!(next, [10_000; 4]);
        assert!(
            out.writes.load(Ordering::SeqCst) < 40_000,
            "lines were batched"
        );
    }

    #[test]
    fn dropping_the_guard_flushes() {
        let out = Recorder::default();
        let (writer, guard) = LogWriter::builder()
            .max_delay(Duration::from_secs(60))
            .build(out.clone())
            .unwrap();
        (&writer).write_all(b"last words\n").unwrap();
        drop(guard);
        assert_eq!(out.text(), "last words\n");
        // After shutdown, lines are dropped and counted, not kept forever.
        (&writer).write_all(b"too late\n").unwrap();
        assert_eq!(writer.dropped_lines(), 1);
    }

    #[test]
    fn a_full_buffer_drops_and_counts_rather_than_blocks() {
        let out = Recorder {
            delay: Duration::from_millis(300),
            ..Recorder::default()
        };
        let (writer, guard) = LogWriter::builder()
            .capacity(4096)
            .shutdown_timeout(Duration::from_secs(5))
            .build(out.clone())
            .unwrap();
        let line = [b'x'; 99].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        let start = Instant::now();
        for _ in 0..1_000 {
            (&writer).write_all(&line).unwrap();
        }
        assert!(start.elapsed() < Duration::from_millis(200), "never blocks");
        let dropped = writer.dropped_lines();
        assert!(dropped >= 1_000 - 2 * 40, "dropped {dropped}");
        drop(guard);
        assert_eq!(out.text().len() as u64, (1_000 - dropped) * 100);
    }

    #[test]
    fn a_line_longer_than_the_buffer_is_dropped() {
        let out = Recorder::default();
        let (writer, guard) = LogWriter::builder()
            .capacity(4096)
            .build(out.clone())
            .unwrap();
        (&writer).write_all(&[b'y'; 5000]).unwrap();
        (&writer).write_all(b"short\n").unwrap();
        drop(guard);
        assert_eq!(writer.dropped_lines(), 1);
        assert_eq!(out.text(), "short\n");
    }

    #[test]
    fn an_idle_worker_sleeps() {
        let out = Recorder::default();
        let (writer, guard) = LogWriter::new(out.clone());
        (&writer).write_all(b"one\n").unwrap();
        thread::sleep(Duration::from_millis(50));
        let writes = out.writes.load(Ordering::SeqCst);
        let wakeups = writer.shared.wakeups.load(Ordering::SeqCst);
        thread::sleep(Duration::from_millis(200));
        assert_eq!(writes, 1);
        assert_eq!(
            out.writes.load(Ordering::SeqCst),
            writes,
            "no writes while idle"
        );
        assert_eq!(
            writer.shared.wakeups.load(Ordering::SeqCst),
            wakeups,
            "no wake-ups while idle"
        );
        // One wake-up for the first line, at most a few for the batch's timeout.
        assert!(wakeups <= 3, "{wakeups} wake-ups for one line");
        drop(guard);
    }

    #[test]
    fn a_poisoned_lock_does_not_panic_writers() {
        let out = Recorder::default();
        let (writer, guard) = LogWriter::new(out.clone());
        let shared = Arc::clone(&writer.shared);
        let _ = thread::spawn(move || {
            let _state = shared.state.lock().unwrap();
            panic!("poison the lock");
        })
        .join();
        assert!(writer.shared.state.is_poisoned());
        (&writer).write_all(b"still logged\n").unwrap();
        drop(guard);
        assert_eq!(out.text(), "still logged\n");
    }

    #[test]
    fn a_failing_output_is_counted() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (writer, guard) = LogWriter::new(Broken);
        (&writer).write_all(b"lost\n").unwrap();
        drop(guard);
        assert_eq!(writer.write_errors(), 1);
    }

    #[test]
    fn a_blocked_output_does_not_hang_shutdown() {
        let out = Recorder {
            delay: Duration::from_secs(3),
            ..Recorder::default()
        };
        let (writer, guard) = LogWriter::builder()
            .shutdown_timeout(Duration::from_millis(100))
            .build(out)
            .unwrap();
        (&writer).write_all(b"stuck\n").unwrap();
        thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        drop(guard);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_tiny_buffer_is_a_config_error() {
        assert!(LogWriter::builder()
            .capacity(100)
            .build(io::sink())
            .is_err());
    }
}
