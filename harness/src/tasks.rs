//! Work spread over tasks, one per node: every result gathered, the first error returned, a task's panic
//! passed on as a panic (a bug, not a failure to report).

use tokio::task::JoinSet;

/// Every task's result, in the order they finished; the first error ends the wait (the other tasks are
/// aborted when the set is dropped).
pub async fn join_all<T: 'static, E: 'static>(mut set: JoinSet<Result<T, E>>) -> Result<Vec<T>, E> {
    let mut all = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => all.push(r?),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    Ok(all)
}
