//! SSH to nodes with russh: pinned host keys, commands with deadlines, file transfer, tunnels.
//!
//! Trust is never on first use: every node's host key is made by the harness ([`keys`]), handed to the node at
//! boot, and pinned here; a node presenting any other key is refused with both fingerprints in the error.
//! Commands, transfers and tunnels share one connection per node ([`Session`], cheap to clone).

mod error;
mod interactive;
pub mod keys;
mod log;
mod quote;
mod session;
mod transfer;
mod tunnel;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use error::{Direction, SshError};
pub use keys::KeyPair;
pub use quote::shell_quote;
pub use session::{Output, Session, Stream};
pub use tunnel::Tunnel;

/// Where and how to reach one node.
#[derive(Debug, Clone)]
pub struct Target {
    /// The node's name, used in every error and log line.
    pub node: String,
    /// Always a loopback forward (`127.0.0.1:<port>` → node:22): the host never routes into the cluster.
    pub addr: SocketAddr,
    pub user: String,
    /// The node's host public key in OpenSSH format (`ssh-ed25519 AAAA...`), made by the harness and pinned.
    pub host_key: String,
    /// The cluster's client key, authorized on every node.
    pub client_key: Arc<KeyPair>,
    /// The node's log file: every command, its output and every transfer are appended here.
    pub log: Option<PathBuf>,
}
