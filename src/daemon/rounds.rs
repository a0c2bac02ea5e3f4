//! What the daemon does by itself every few seconds (repairing degraded mirrors,
//! growing thin pools): a blocking round, off the async threads, on a fixed interval,
//! with state kept from one round to the next (what was last logged).

use std::time::Duration;

/// Runs `round` every `interval` until the runtime ends; `what` names it in the log
/// when a round panics (the next round still runs).
pub fn spawn<S, F>(interval: Duration, what: &'static str, round: F)
where
    S: Default + Send + 'static,
    F: Fn(&mut S) + Send + Sync + 'static,
{
    let round = std::sync::Arc::new(round);
    tokio::spawn(async move {
        let mut state = S::default();
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            let round = round.clone();
            let mut s = std::mem::take(&mut state);
            // Rounds take VG locks and do I/O.
            match tokio::task::spawn_blocking(move || {
                round(&mut s);
                s
            })
            .await
            {
                Ok(s) => state = s,
                Err(e) => tracing::error!("{what} round failed: {e}"),
            }
        }
    });
}
