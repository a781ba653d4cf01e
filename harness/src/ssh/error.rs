use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong talking to a node over SSH. Each variant names the node and what ran there,
/// so a failure in a log says where to look without a backtrace.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "could not connect to {node} at {addr} within {waited:?}: {last_error} \
         (is the node up? `kthw` logs its serial console in the run directory)"
    )]
    Connect { node: String, addr: SocketAddr, last_error: String, waited: Duration },

    #[error(
        "host key mismatch for {node}: expected {expected}, the server presented {got}; refusing to connect \
         (the node was not booted with the host key this harness made for it, or something else answers on its port)"
    )]
    HostKeyMismatch { node: String, expected: String, got: String },

    #[error("{node} rejected public key {fingerprint} for user {user} (is it in the node's authorized_keys?)")]
    AuthRejected { node: String, user: String, fingerprint: String },

    #[error("on {node}: `{cmd}` exited with {status}; stderr ends with:\n{stderr}")]
    CommandFailed { node: String, cmd: String, status: String, stderr: String },

    #[error("on {node}: `{cmd}` was expected to fail but succeeded; stdout ends with:\n{stdout}")]
    UnexpectedSuccess { node: String, cmd: String, stdout: String },

    #[error("on {node}: `{cmd}` did not finish within {after:?}; last output:\n{last_output}")]
    Timeout { node: String, cmd: String, after: Duration, last_output: String },

    #[error("{direction} {local} {} {node}:{remote} failed: {detail}", direction.arrow())]
    Transfer { node: String, direction: Direction, local: String, remote: String, detail: String },

    #[error("tunnel 127.0.0.1 -> {target} through {node}: {detail}")]
    Tunnel { node: String, target: String, detail: String },

    #[error("SSH session to {node}: {what}")]
    Protocol {
        node: String,
        what: String,
        #[source]
        source: Box<russh::Error>,
    },

    #[error("terminal: {what}")]
    Terminal {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("SSH key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
}

/// Which way a file went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upload,
    Download,
}

impl Direction {
    fn arrow(self) -> &'static str {
        match self {
            Direction::Upload => "->",
            Direction::Download => "<-",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        })
    }
}
