//! The `cilium` phase.

use crate::bootstrap::context::Ctx;
use crate::bootstrap::BootstrapError;

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Vec<String>, BootstrapError> {
    Err(BootstrapError::Node { phase: ctx.phase, detail: "this phase is not built yet".into() })
}
