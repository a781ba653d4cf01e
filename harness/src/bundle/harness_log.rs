//! The harness's own log for bundles: the process that may make one (`kthw up`, `kthw bundle`) tees its
//! tracing output into a bounded buffer here, and the bundle writes the buffer out as `harness.log`. In
//! memory, so no log files pile up on a host that makes no bundle.

use std::collections::VecDeque;
use std::sync::Mutex;

/// The end of the log is what explains a failure; older lines go first.
pub const LOG_CAP: usize = 4 * 1024 * 1024;

static TAIL: Mutex<Option<VecDeque<u8>>> = Mutex::new(None);

/// A `tracing_subscriber` writer into the buffer; asking for one turns capturing on.
#[derive(Debug, Clone, Copy)]
pub struct Capture;

/// Starts capturing this process's log; hand the result to a `fmt` layer as its writer.
pub fn capture() -> Capture {
    TAIL.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(VecDeque::new);
    Capture
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(tail) = TAIL.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            tail.extend(buf);
            let over = tail.len().saturating_sub(LOG_CAP);
            tail.drain(..over);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        *self
    }
}

/// What was captured so far, or None when this process captures nothing (a library caller with its own
/// logging, such as a test).
pub fn snapshot() -> Option<Vec<u8>> {
    TAIL.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|t| t.iter().copied().collect())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_capture_keeps_the_end_of_the_log_within_its_cap() {
        assert_eq!(snapshot(), None, "nothing is kept until capturing starts");
        let mut w = capture();
        w.write_all(b"first line\n").unwrap();
        assert_eq!(snapshot().unwrap(), b"first line\n");
        let long = vec![b'x'; LOG_CAP];
        w.write_all(&long).unwrap();
        w.write_all(b"last line\n").unwrap();
        let kept = snapshot().unwrap();
        assert_eq!(kept.len(), LOG_CAP);
        assert!(kept.ends_with(b"x\nlast line\n") || kept.ends_with(b"xlast line\n"));
        assert!(!kept.starts_with(b"first"), "the oldest bytes went first");
    }
}
