//! Interruption: what a long command (an `up`, a scenario, a benchmark) races its work against, so that ^C
//! drops the work's futures, and with them every cluster handle, which tears its cluster down.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves with the signal's name at the first SIGINT or SIGTERM; never, where they cannot be watched.
pub async fn interrupted() -> &'static str {
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
