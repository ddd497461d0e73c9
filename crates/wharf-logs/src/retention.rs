//! The background retention sweep: expired events are really deleted, not
//! merely hidden, so the store's size follows the retention settings.

use crate::LogStore;
use std::time::Duration;

/// Sweeps every `every`, forever. `now` gives the current time in ms (the
/// caller's clock, so tests can drive it).
pub async fn run(store: LogStore, every: Duration, now: impl Fn() -> i64 + Send + 'static) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let store = store.clone();
        let at = now();
        match tokio::task::spawn_blocking(move || store.sweep_retention(at)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(deleted = n, "log retention sweep"),
            Ok(Err(e)) => tracing::warn!(error = %e, "log retention sweep failed"),
            Err(e) => tracing::warn!(error = %e, "log retention sweep panicked"),
        }
    }
}
