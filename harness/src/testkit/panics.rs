//! A test that panics while it holds its cluster (a failed `assert!` outside [`super::run`]) still leaves a
//! bundle naming the test and the panic's message: the cluster's panic hook makes it before the teardown,
//! and the message comes from a panic hook that notes it on the panicking thread (the one that then drops
//! the cluster) before handing on to the hook that was there (the test harness's, which prints it).

use std::any::Any;
use std::cell::RefCell;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use crate::bundle::{Extras, TestRecord};
use crate::keep::Keep;
use crate::paths::Paths;
use crate::up::{bundle_in_a_drop, keep_after_failure, Running};

thread_local! {
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once per process, the hook that notes each panic's message and location for its thread.
pub(super) fn note_messages() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            let text = format!("{}{at}", message(info.payload()));
            LAST.with(|l| *l.borrow_mut() = Some(text));
            previous(info);
        }));
    });
}

/// The last panic's message on this thread, once.
pub(super) fn last() -> Option<String> {
    LAST.with(|l| l.borrow_mut().take())
}

/// A panic's message from its payload: what `panic!` and `assert!` were given.
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a payload that is no text".to_string()
    }
}

/// What a test's failure bundle gives as its reason.
pub fn reason(test: &str, message: &str) -> String {
    format!("test {test} failed: {message}")
}

/// Arms `running`'s cluster so that a panic of the thread holding it makes a bundle naming test `test`
/// with the panic's message and what the test attached, then keeps the cluster as `keep` says.
pub(super) fn arm(
    running: &mut Running,
    paths: &Paths,
    test: &TestRecord,
    extras: &Arc<Mutex<Extras>>,
    keep: Keep,
    ttl: Duration,
) {
    let (paths, test, extras, bootstrap) = (paths.clone(), test.clone(), extras.clone(), running.bootstrap.clone());
    running.cluster.on_panic(move |cluster| {
        let message = last().unwrap_or_else(|| "it panicked (the message went to the test's output)".into());
        let reason = reason(&test.name, &message);
        let extras = extras.lock().unwrap_or_else(|p| p.into_inner()).clone();
        bundle_in_a_drop(cluster, &reason, |c| {
            Box::pin(crate::bundle::collect_for_test(c, &paths, &bootstrap, &reason, &test, &extras))
        });
        let kept = keep_after_failure(cluster, &paths, keep, ttl);
        eprintln!("{kept}");
        if cluster.state().kept {
            eprintln!("{}", test.rerun(cluster.name(), crate::up::home_to_name(&paths).as_deref()));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panics_message_is_read_from_either_payload_and_noted_for_its_thread() {
        note_messages();
        let caught = std::panic::catch_unwind(|| panic!("etcd has {} members, not 3", 2)).unwrap_err();
        assert_eq!(message(&*caught), "etcd has 2 members, not 3");
        let noted = last().unwrap();
        assert!(noted.starts_with("etcd has 2 members, not 3 at harness/src/testkit/panics.rs:"), "{noted}");
        assert_eq!(last(), None, "read once");
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(message(&*caught), "a panic with a payload that is no text");
        assert_eq!(reason("etcd_answers", "no leader"), "test etcd_answers failed: no leader");
    }
}
