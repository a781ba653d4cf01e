//! Local forwards: a port on the host's loopback that reaches an address as the node sees it, the way the
//! seed's admin kubeconfig reaches the apiserver on 127.0.0.1:6443, or a Unix socket on the node (containerd's
//! CRI socket, which listens on no TCP port). Either way the host connects only to its own loopback (DESIGN.md's
//! network rule); the node's sshd makes the far connection.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::{Session, SshError};

/// A listening local forward. It keeps its node's connection open, and stops listening (cutting the
/// connections it carries) when dropped or closed.
#[derive(Debug)]
pub struct Tunnel {
    /// Where to connect on the host: always 127.0.0.1.
    pub local: SocketAddr,
    accept: JoinHandle<()>,
}

impl Tunnel {
    pub fn close(self) {}
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Session {
    /// Listens on 127.0.0.1:<free port> and carries each connection to `host:port` as seen from the node.
    /// Whether the far end answers is found out per connection (the service may not be up yet): a refused
    /// connection closes the local one and is logged.
    pub async fn forward_local(&self, host: &str, port: u16) -> Result<Tunnel, SshError> {
        self.forward_local_on(0, host, port).await
    }

    /// Like [`Session::forward_local`], on a chosen local port (e.g. 6443, as the seed's admin kubeconfig
    /// expects).
    pub async fn forward_local_on(&self, local_port: u16, host: &str, port: u16) -> Result<Tunnel, SshError> {
        self.listen(local_port, Far::Tcp(host.to_string(), port)).await
    }

    /// Listens on 127.0.0.1:<free port> and carries each connection to the Unix socket `path` on the node
    /// (OpenSSH's `direct-streamlocal@openssh.com` channel, PROTOCOL 2.4, what `ssh -L port:/path` opens; sshd's
    /// `AllowStreamLocalForwarding` defaults to yes). As with [`Session::forward_local`], a socket nobody listens
    /// on closes the local connection and is logged.
    pub async fn forward_local_unix(&self, path: &str) -> Result<Tunnel, SshError> {
        self.listen(0, Far::Unix(path.to_string())).await
    }

    async fn listen(&self, local_port: u16, far: Far) -> Result<Tunnel, SshError> {
        let target = far.to_string();
        let listener = TcpListener::bind(("127.0.0.1", local_port)).await.map_err(|e| SshError::Tunnel {
            node: self.node().to_string(),
            target: target.clone(),
            detail: format!("cannot listen on 127.0.0.1:{local_port}: {e}"),
        })?;
        let local = listener.local_addr().map_err(|e| SshError::Tunnel {
            node: self.node().to_string(),
            target: target.clone(),
            detail: e.to_string(),
        })?;
        tracing::debug!(node = %self.node(), %local, %target, "tunnel listening");
        let session = self.clone();
        let accept = tokio::spawn(async move {
            // Owned here so that aborting the accept loop also ends every connection it carries.
            let mut carried = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, peer)) => {
                            carried.spawn(carry(session.clone(), tcp, peer, far.clone()));
                        }
                        Err(e) => tracing::warn!(node = %session.node(), %local, error = %e, "tunnel accept failed"),
                    },
                    Some(_) = carried.join_next(), if !carried.is_empty() => {}
                }
            }
        });
        Ok(Tunnel { local, accept })
    }
}

/// What a tunnel reaches, as the node sees it.
#[derive(Debug, Clone)]
enum Far {
    Tcp(String, u16),
    Unix(String),
}

impl std::fmt::Display for Far {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Far::Tcp(host, port) => write!(f, "{host}:{port}"),
            Far::Unix(path) => write!(f, "unix:{path}"),
        }
    }
}

async fn carry(session: Session, mut tcp: TcpStream, peer: SocketAddr, far: Far) {
    let _ = tcp.set_nodelay(true);
    let handle = &session.inner.handle;
    let channel = match &far {
        Far::Tcp(host, port) => {
            handle
                .channel_open_direct_tcpip(
                    host.as_str(),
                    u32::from(*port),
                    peer.ip().to_string(),
                    u32::from(peer.port()),
                )
                .await
        }
        Far::Unix(path) => handle.channel_open_direct_streamlocal(path.as_str()).await,
    };
    let channel = match channel {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(node = %session.node(), target = %far, error = %e,
                "the node could not open the tunnel's connection");
            return;
        }
    };
    let mut stream = channel.into_stream();
    if let Err(e) = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await {
        tracing::debug!(node = %session.node(), target = %far, error = %e, "tunnel connection ended");
    }
}
