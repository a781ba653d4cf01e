//! The node's log file: what ran there and what it printed, line by line, as it happened. Several commands may
//! run at once; each line carries the command's number so they can be told apart.

use std::io::Write;
use std::path::Path;

pub(crate) struct NodeLog {
    file: Option<std::fs::File>,
    id: u64,
    partial: [Vec<u8>; 2],
}

const OUT: usize = 0;
const ERR: usize = 1;

impl NodeLog {
    pub(crate) fn open(path: Option<&Path>, id: u64) -> NodeLog {
        let file = path.and_then(|p| match std::fs::OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "cannot append to the node log");
                None
            }
        });
        NodeLog { file, id, partial: [Vec::new(), Vec::new()] }
    }

    pub(crate) fn note(&mut self, what: &str) {
        let line = format!("[ssh #{}] {what}\n", self.id);
        self.write(line.as_bytes());
    }

    pub(crate) fn stdout(&mut self, data: &[u8]) {
        self.stream(OUT, data);
    }

    pub(crate) fn stderr(&mut self, data: &[u8]) {
        self.stream(ERR, data);
    }

    fn stream(&mut self, which: usize, data: &[u8]) {
        if self.file.is_none() {
            return;
        }
        self.partial[which].extend_from_slice(data);
        while let Some(nl) = self.partial[which].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial[which].drain(..=nl).collect();
            self.line(which, &line[..line.len() - 1]);
        }
    }

    fn line(&mut self, which: usize, bytes: &[u8]) {
        let tag = if which == OUT { "out" } else { "err" };
        let line = format!("[ssh #{} {tag}] {}\n", self.id, String::from_utf8_lossy(bytes));
        self.write(line.as_bytes());
    }

    fn write(&mut self, bytes: &[u8]) {
        // One write per line: with O_APPEND, concurrent commands' lines do not tear.
        if let Some(f) = &mut self.file {
            let _ = f.write_all(bytes);
        }
    }
}

impl Drop for NodeLog {
    fn drop(&mut self) {
        for which in [OUT, ERR] {
            if !self.partial[which].is_empty() {
                let rest = std::mem::take(&mut self.partial[which]);
                self.line(which, &rest);
            }
        }
    }
}
