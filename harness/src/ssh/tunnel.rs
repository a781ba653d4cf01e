//! Local forwards: a port on the host's loopback that reaches an address as the node sees it, the way the
//! seed's admin kubeconfig reaches the apiserver on 127.0.0.1:6443.

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
        let target = format!("{host}:{port}");
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
        let host = host.to_string();
        let accept = tokio::spawn(async move {
            // Owned here so that aborting the accept loop also ends every connection it carries.
            let mut carried = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, peer)) => {
                            carried.spawn(carry(session.clone(), tcp, peer, host.clone(), port));
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

async fn carry(session: Session, mut tcp: TcpStream, peer: SocketAddr, host: String, port: u16) {
    let _ = tcp.set_nodelay(true);
    let channel = session
        .inner
        .handle
        .channel_open_direct_tcpip(host.as_str(), u32::from(port), peer.ip().to_string(), u32::from(peer.port()))
        .await;
    let channel = match channel {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(node = %session.node(), target = %format!("{host}:{port}"), error = %e,
                "the node could not open the tunnel's connection");
            return;
        }
    };
    let mut stream = channel.into_stream();
    if let Err(e) = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await {
        tracing::debug!(node = %session.node(), target = %format!("{host}:{port}"), error = %e, "tunnel connection ended");
    }
}
