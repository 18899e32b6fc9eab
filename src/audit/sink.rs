//! Sinks that receive security events besides `tracing`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::event::{SecurityEvent, SecurityEventSink};
use crate::ConfigError;

/// Hands every event to a bounded queue, for a task that forwards them (to a SIEM, a
/// message bus, a file), and never blocks or slows the request path.
///
/// When the queue is full (the forwarder is slow or gone), the event is dropped and counted
/// in [`dropped`](Self::dropped) instead of waiting: an attacker flooding refusals must not be
/// able to stall requests through the audit trail (OWASP Logging Cheat Sheet: logging must not
/// become a denial-of-service vector). The events stay in the `tracing` log either way.
///
/// ```
/// use axum_shield::{audit::ChannelSink, Shield};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), axum_shield::ConfigError> {
/// let (sink, mut events) = ChannelSink::bounded(1024)?;
/// tokio::spawn(async move {
///     while let Some(event) = events.recv().await {
///         let line = serde_json::to_string(&event).unwrap_or_default();
///         // send `line` to your SIEM
/// #       let _ = line;
///     }
/// });
/// let shield = Shield::api().event_sink(sink).build()?;
/// # let _ = shield;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ChannelSink {
    sender: mpsc::Sender<SecurityEvent>,
    dropped: Arc<AtomicU64>,
}

impl ChannelSink {
    /// A sink with a queue of `capacity` events, and the receiving end.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `capacity` is 0.
    pub fn bounded(capacity: usize) -> Result<(Self, mpsc::Receiver<SecurityEvent>), ConfigError> {
        if capacity == 0 || capacity > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(ConfigError::new(
                "event_sink capacity",
                format!("a queue of {capacity} events cannot hold any event"),
                "use a capacity such as 1024",
            ));
        }
        let (sender, receiver) = mpsc::channel(capacity);
        Ok((
            Self {
                sender,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            receiver,
        ))
    }

    /// How many events were dropped because the queue was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl SecurityEventSink for ChannelSink {
    fn record(&self, event: &SecurityEvent) {
        if self.sender.try_send(event.clone()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{EventSinks, SecurityEventKind};

    #[test]
    fn zero_capacity_is_a_config_error() {
        assert!(ChannelSink::bounded(0).is_err());
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let (sink, mut rx) = ChannelSink::bounded(2).unwrap();
        let sinks = EventSinks::new(vec![Arc::new(sink.clone())]);
        let mut extensions = http::Extensions::new();
        extensions.insert(sinks);
        for _ in 0..5 {
            SecurityEvent::for_request(
                SecurityEventKind::ExcessRateLimitExceeded,
                &http::Method::GET,
                &"/x".parse().unwrap(),
                &extensions,
            )
            .emit();
        }
        assert_eq!(sink.dropped(), 3);
        assert_eq!(
            rx.try_recv().unwrap().kind(),
            SecurityEventKind::ExcessRateLimitExceeded
        );
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err());
    }
}
