//! `kthw up`'s events as a person sees them: live lines per node and per phase on a terminal (a spinner each,
//! with the time so far and what it waits for), plain timestamped lines elsewhere (CI logs, pipes).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kthw::events::Event;
use tokio::sync::mpsc::UnboundedReceiver;

/// Renders events until the sender side is gone.
pub async fn render(mut rx: UnboundedReceiver<Event>) {
    if std::io::stderr().is_terminal() {
        live(rx).await
    } else {
        let start = Instant::now();
        while let Some(e) = rx.recv().await {
            eprintln!("[{:>6.1} s] {e}", start.elapsed().as_secs_f64());
        }
    }
}

async fn live(mut rx: UnboundedReceiver<Event>) {
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner} {prefix:<22} {elapsed:>4} {wide_msg}")
        .expect("a valid template")
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓");
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let mut bar = |key: String, msg: String| {
        let b = bars.entry(key.clone()).or_insert_with(|| {
            let b = multi.add(ProgressBar::new_spinner().with_style(style.clone()).with_prefix(key));
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        b.set_message(msg);
        b.clone()
    };
    while let Some(e) = rx.recv().await {
        match &e {
            Event::ImageBuilding => drop(bar("image".into(), e.to_string())),
            Event::ImageReady { .. } => bar("image".into(), e.to_string()).finish(),
            Event::NodeBooting { node } => drop(bar(format!("node {node}"), "booting".into())),
            // Said above the bars, so that a retry stays on the screen after the node's bar moves on.
            Event::NodeStalled { node, .. } | Event::NodeFailed { node, .. } => {
                multi.println(e.to_string()).unwrap_or(());
                drop(bar(format!("node {node}"), "boot stalled or failed: see above".into()))
            }
            Event::NodeUp { node, took } => {
                bar(format!("node {node}"), format!("answers SSH after {:.1} s", took.as_secs_f64())).finish()
            }
            Event::NodeRestored { node, took, .. } => {
                bar(format!("node {node}"), format!("restored, answers SSH after {:.1} s", took.as_secs_f64())).finish()
            }
            Event::PhaseBegins { phase } => drop(bar(format!("phase {phase}"), phase.describe().into())),
            Event::PhaseEnds { phase, changed, .. } => {
                bar(format!("phase {phase}"), format!("done, {changed} files installed")).finish()
            }
            Event::PhaseFailed { phase, .. } => bar(format!("phase {phase}"), "FAILED".into()).abandon(),
            Event::Waiting { phase, .. } | Event::Waited { phase, .. } => {
                drop(bar(format!("phase {phase}"), e.to_string()))
            }
            Event::Accel { .. } | Event::AccelFallback { .. } | Event::Note(_) => {
                multi.println(e.to_string()).unwrap_or(())
            }
        }
    }
    for b in bars.values() {
        if !b.is_finished() {
            b.abandon();
        }
    }
}
