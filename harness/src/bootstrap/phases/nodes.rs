//! The `nodes` phase on a cluster that is up (`Cluster::up` booted it): every node answers SSH.

use crate::bootstrap::context::Ctx;
use crate::bootstrap::BootstrapError;

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Vec<String>, BootstrapError> {
    for n in ctx.cluster.nodes() {
        ctx.session(&n.name).await?;
    }
    Ok(Vec::new())
}
