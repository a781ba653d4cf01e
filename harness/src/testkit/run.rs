//! A test body run on its cluster so that its failure explains itself: an error it returns or a panic it
//! raises leaves a failure bundle whose reason names the test and the message, the cluster is kept as
//! `KTHW_KEEP` says (with how to get in and how to run the test again there), and the test gets
//! [`TestError::Failed`] naming the bundle.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use super::{panics, Builder, TestCluster, TestError};
use crate::up::{home_to_name, keep_after_failure, tell_bundle};

/// Starts the cluster `builder` describes for test `test`, runs `body` on it, and on failure (an `Err` or a
/// panic) makes the bundle before the cluster goes. An error of another kind enters through
/// [`TestError::other`]; a check of the test's own through [`TestError::check`].
///
/// ```no_run
/// use kthw::phase::Phase;
/// use kthw::testkit::{run, TestCluster, TestError};
///
/// #[tokio::test]
/// async fn etcd_answers() -> Result<(), TestError> {
///     let spec = kthw::ClusterSpec { etcd_from: kthw::spec::Origin::Debian, ..Default::default() };
///     run(TestCluster::at(Phase::Etcd).spec(spec), "etcd_answers", async |cluster| {
///         let cp = cluster.node("control-plane-1")?;
///         cp.wait_for_unit("etcd").await?;
///         let health = cp.succeed("etcdctl endpoint health 2>&1 || true").await?;
///         if !health.contains("is healthy") {
///             return Err(TestError::check(format!("etcd is not healthy: {health}")));
///         }
///         Ok(())
///     })
///     .await
/// }
/// ```
pub async fn run<F>(builder: Builder, test: &str, body: F) -> Result<(), TestError>
where
    F: AsyncFnOnce(TestCluster) -> Result<(), TestError>,
{
    let cluster = builder.start(test).await?;
    let outcome = CatchUnwind(Box::pin(body(cluster.clone()))).await;
    let message = match outcome {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => crate::chain(&e),
        Err(payload) => {
            // Caught here, so no drop of the cluster will ask for the note of it.
            let _ = panics::last();
            panics::message(&*payload)
        }
    };
    Err(failed(cluster, message).await)
}

/// The bundle, the keeping and the error of a test body (or a golden state's setup step) that failed on
/// `cluster` with `message`.
pub(super) async fn failed(cluster: TestCluster, message: String) -> TestError {
    let test = cluster.test().clone();
    let reason = panics::reason(&test.name, &message);
    eprintln!("{reason}: making a failure bundle before the teardown");
    let started = Instant::now();
    let extras = cluster.extras();
    let made = crate::bundle::collect_for_test(
        cluster.cluster(),
        cluster.paths(),
        cluster.bootstrap(),
        &reason,
        &test,
        &extras,
    )
    .await
    .map_err(|e| crate::chain(&e));
    let bundle = tell_bundle(cluster.name(), made, started).map(|m| m.dir);
    let (keep, ttl) = cluster.keep();
    let paths = cluster.paths().clone();
    let name = cluster.name().to_string();
    match cluster.into_running() {
        Ok(mut running) => {
            eprintln!("{}", keep_after_failure(&mut running.cluster, &paths, keep, ttl));
            if running.cluster.state().kept {
                eprintln!("{}", test.rerun(&name, home_to_name(&paths).as_deref()));
            }
        }
        Err(_) => eprintln!(
            "cluster {name} is still held elsewhere (by a task the test spawned?), so it is not kept; it is torn \
             down when its last handle goes"
        ),
    }
    TestError::Failed { test: test.name, message, bundle }
}

/// A future whose panic is caught and returned as its payload, as `std::panic::catch_unwind` does for a
/// closure: the test's panic becomes a failure to explain instead of an unwinding through the runtime.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_future_gives_its_payload_and_a_finished_one_its_output() {
        panics::note_messages();
        let caught = CatchUnwind(Box::pin(async {
            tokio::task::yield_now().await;
            panic!("3 pods, not 2");
        }))
        .await;
        assert_eq!(panics::message(&*caught.unwrap_err()), "3 pods, not 2");
        assert_eq!(CatchUnwind(Box::pin(async { 7 })).await.unwrap(), 7);
    }
}
