//! The check step the workers phase runs first: every worker read at once, judged against what the spec's
//! kubelet and Cilium agent need given the files the phase is about to render, and kept as phase output.

use tokio::task::JoinSet;

use super::{evaluate, read_node, rendered, report, requirements, NodeLacks};
use crate::bootstrap::context::Ctx;
use crate::bootstrap::node_files::worker_files;
use crate::bootstrap::BootstrapError;
use crate::events::Event;

/// The phase output of worker `node`'s findings.
pub fn output_file(node: &str) -> String {
    format!("node-checks-{node}.txt")
}

/// Every worker against its startup requirements; the first that lacks one fails the phase (nothing was
/// installed or started yet). Each worker's findings are kept (`node-checks-<worker>.txt`) and said.
pub async fn check_workers(ctx: &Ctx<'_>) -> Result<(), BootstrapError> {
    let (phase, spec, layout) = (ctx.phase, ctx.spec(), ctx.layout());
    // What the spec's own kubelet and Cilium check, whatever preset it names its versions over.
    let versions = spec.versions.pins();
    let pause = ctx.b.manifest.get("pause").expect("every set pins the sandbox image").locator().to_string();
    let mut reads = JoinSet::new();
    for w in spec.workers() {
        let files = worker_files(spec, &w.name, layout, &pause);
        let text = |path: &std::path::Path| {
            files.iter().find(|f| f.path == path).map(|f| f.contents.clone()).expect("the phase renders it")
        };
        let rendered =
            rendered(&versions.kubernetes, &text(&layout.kubelet_config()), &text(&layout.containerd_config))
                .map_err(|detail| BootstrapError::Spec { phase, detail })?;
        let requirements = requirements(&versions, &rendered);
        let session = ctx.session(&w.name).await?;
        let node = w.name.clone();
        reads.spawn(async move {
            let read = read_node(&session, &requirements).await;
            (node, requirements, rendered, read)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = reads.join_next().await {
        results.push(joined.expect("a node check does not panic"));
    }
    results.sort_by(|a, b| a.0.cmp(&b.0));
    for (node, requirements, rendered, read) in results {
        let (facts, raw) = ctx.ssh(read)?;
        let findings = evaluate(&requirements, &facts, &rendered);
        let kept = ctx.keep_output(&output_file(&node), &report(&node, &versions, &findings, &raw))?;
        let missing: Vec<_> = findings.iter().filter(|f| !f.met).cloned().collect();
        if !missing.is_empty() {
            return Err(BootstrapError::NodeLacks {
                phase,
                source: Box::new(NodeLacks { node, versions: versions.clone(), missing, kept }),
            });
        }
        ctx.events.emit(Event::Note(format!(
            "phase workers: {node} meets all {} startup requirements of kubelet {} and Cilium {} ({})",
            findings.len(),
            versions.kubernetes,
            versions.cilium,
            kept.display()
        )));
    }
    Ok(())
}
