//! Faults that clean up after themselves: [`TestCluster::fault`](super::TestCluster::fault) injects one
//! (`kthw fault`'s, [`crate::cluster::Fault`]) and returns a guard that reverts it when dropped, so a test that
//! fails half-way leaves no link down and no VM paused behind it.

use std::time::Duration;

use super::{TestCluster, TestError};
use crate::cluster::{Cluster, Fault};
use crate::ssh::shell_quote;

/// `systemctl start` of a stopped unit, on KVM; scaled under TCG.
const START_UNIT: Duration = Duration::from_secs(60);

/// What undoes a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Revert {
    Fault(Fault),
    /// A stopped or killed unit is started again (its failed state cleared first).
    StartUnit(String),
}

/// The undoing of `fault`: None for what is itself an undoing (`link-up`, `resume`, a zero delay or loss)
/// and for a reset, which nothing undoes.
fn revert_of(fault: &Fault) -> Option<Revert> {
    match fault {
        Fault::LinkDown => Some(Revert::Fault(Fault::LinkUp)),
        Fault::Pause => Some(Revert::Fault(Fault::Resume)),
        Fault::Delay { ms } if *ms > 0 => Some(Revert::Fault(Fault::Delay { ms: 0 })),
        Fault::Loss { percent } if *percent > 0 => Some(Revert::Fault(Fault::Loss { percent: 0 })),
        Fault::StopUnit(unit) | Fault::KillUnit(unit) => Some(Revert::StartUnit(unit.clone())),
        Fault::LinkUp | Fault::Resume | Fault::Reset | Fault::Delay { .. } | Fault::Loss { .. } => None,
    }
}

/// A fault in force on one node; dropping the guard reverts it (a failure to revert is printed, as a drop
/// cannot return it: call [`FaultGuard::revert`] to see it as an error).
///
/// ```no_run
/// # async fn f(cluster: kthw::testkit::TestCluster) -> Result<(), kthw::testkit::TestError> {
/// use kthw::cluster::Fault;
/// let w1 = cluster.node("worker-node-1")?;
/// let down = cluster.fault("worker-node-1", Fault::LinkDown).await?;
/// w1.wait_until_fails("ping -c1 -W1 10.0.0.4").await?;
/// down.revert().await?;
/// w1.wait_until_succeeds("ping -c1 -W1 10.0.0.4").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FaultGuard {
    cluster: TestCluster,
    node: String,
    fault: Fault,
    revert: Option<Revert>,
    said: String,
}

impl FaultGuard {
    pub(super) async fn inject(cluster: TestCluster, node: &str, fault: Fault) -> Result<FaultGuard, TestError> {
        let said = cluster.cluster().inject(node, &fault).await.map_err(|e| fault_err(node, &fault, e))?;
        let revert = revert_of(&fault);
        Ok(FaultGuard { cluster, node: node.to_string(), fault, revert, said })
    }

    /// What injecting the fault did, as `kthw fault` says it.
    pub fn said(&self) -> &str {
        &self.said
    }

    /// The fault in force.
    pub fn fault(&self) -> &Fault {
        &self.fault
    }

    /// Reverts the fault now; what reverting did.
    pub async fn revert(mut self) -> Result<String, TestError> {
        match self.revert.take() {
            Some(r) => undo(self.cluster.cluster(), &self.node, &r).await,
            None => Ok(format!("{} on {} has nothing to revert", self.fault, self.node)),
        }
    }
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        let Some(revert) = self.revert.take() else { return };
        let node = self.node.clone();
        let undone = self
            .cluster
            .cluster()
            .block_on_a_thread("kthw-fault-revert", |c| Box::pin(async move { undo(c, &node, &revert).await }));
        match undone {
            Ok(Ok(said)) => {
                tracing::info!(node = %self.node, fault = %self.fault, "reverted when its guard dropped: {said}")
            }
            Ok(Err(e)) => {
                eprintln!("fault {} on {} could not be reverted: {}", self.fault, self.node, crate::chain(&e))
            }
            Err(e) => eprintln!("fault {} on {} could not be reverted: {e}", self.fault, self.node),
        }
    }
}

async fn undo(cluster: &Cluster, node: &str, revert: &Revert) -> Result<String, TestError> {
    match revert {
        Revert::Fault(f) => cluster.inject(node, f).await.map_err(|e| fault_err(node, f, e)),
        Revert::StartUnit(unit) => {
            let q = shell_quote(unit);
            let cmd = format!("systemctl reset-failed {q} 2>/dev/null; systemctl start {q}");
            let session = cluster
                .session(node)
                .await
                .map_err(|e| TestError::Cluster { cluster: cluster.name().into(), source: Box::new(e) })?;
            let s = session.with_deadline(cluster.accel().scale(START_UNIT));
            s.succeed(&cmd).await.map_err(|e| TestError::Ssh { node: node.into(), cmd, source: Box::new(e) })?;
            Ok(format!("unit {unit} started again"))
        }
    }
}

fn fault_err(node: &str, fault: &Fault, e: crate::cluster::FaultError) -> TestError {
    TestError::Fault { node: node.to_string(), fault: fault.to_string(), source: Box::new(e) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_that_can_be_undone_has_its_undoing() {
        assert_eq!(revert_of(&Fault::LinkDown), Some(Revert::Fault(Fault::LinkUp)));
        assert_eq!(revert_of(&Fault::Pause), Some(Revert::Fault(Fault::Resume)));
        assert_eq!(revert_of(&Fault::Delay { ms: 200 }), Some(Revert::Fault(Fault::Delay { ms: 0 })));
        assert_eq!(revert_of(&Fault::Loss { percent: 30 }), Some(Revert::Fault(Fault::Loss { percent: 0 })));
        assert_eq!(revert_of(&Fault::KillUnit("etcd".into())), Some(Revert::StartUnit("etcd".into())));
        assert_eq!(revert_of(&Fault::StopUnit("etcd".into())), Some(Revert::StartUnit("etcd".into())));
        for undoing in [Fault::LinkUp, Fault::Resume, Fault::Reset, Fault::Delay { ms: 0 }, Fault::Loss { percent: 0 }]
        {
            assert_eq!(revert_of(&undoing), None, "{undoing}");
        }
    }
}
