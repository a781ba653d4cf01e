//! Tunnels: a loopback port on the host reaching a service as the node sees it.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::sshd::Sshd;

/// Writes back what `conn` reads until it ends.
async fn echo_back(conn: impl tokio::io::AsyncRead + tokio::io::AsyncWrite) {
    let (mut r, mut w) = tokio::io::split(conn);
    let _ = tokio::io::copy(&mut r, &mut w).await;
}

/// A TCP echo service on the node's side (here: the sshd host's loopback).
async fn echo_service() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            tokio::spawn(echo_back(listener.accept().await.unwrap().0));
        }
    });
    port
}

/// Sends `payload` through the tunnel at `local` to an echo service, and checks it all comes back.
async fn echoes(local: std::net::SocketAddr, payload: Vec<u8>) {
    let conn = TcpStream::connect(local).await.unwrap();
    let (mut r, mut w) = conn.into_split();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    writer.await.unwrap();
    assert!(back == payload, "echoed {} bytes of {}, or different ones", back.len(), payload.len());
}

#[tokio::test]
async fn a_tunnel_carries_bytes_both_ways_until_it_is_dropped() {
    let Some(sshd) = Sshd::start() else { return };
    let node = sshd.connect().await;
    let echo = echo_service().await;

    let tunnel = node.forward_local("127.0.0.1", echo).await.unwrap();
    assert!(tunnel.local.ip().is_loopback());
    assert_ne!(tunnel.local.port(), echo);

    // Two connections at once, each with its own payload, larger than one channel window.
    let payloads: Vec<Vec<u8>> = (0..2u8).map(|k| (0..3_000_000u32).map(|i| (i as u8) ^ k).collect()).collect();
    let mut runs = Vec::new();
    for payload in payloads {
        let local = tunnel.local;
        runs.push(tokio::spawn(echoes(local, payload)));
    }
    for run in runs {
        run.await.unwrap();
    }

    let local = tunnel.local;
    drop(tunnel);
    let refused = TcpStream::connect(local).await;
    assert!(refused.is_err(), "a dropped tunnel stops listening");
}

#[tokio::test]
async fn a_tunnel_to_a_closed_port_closes_the_local_connection() {
    let Some(sshd) = Sshd::start() else { return };
    let node = sshd.connect().await;
    let closed = crate::sshd::free_port();

    let tunnel = node.forward_local("127.0.0.1", closed).await.unwrap();
    let mut conn = TcpStream::connect(tunnel.local).await.unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(conn.read(&mut buf).await.unwrap_or(0), 0, "the local connection ends");
    // The session survives a refused forward.
    node.succeed("true").await.unwrap();
}

#[tokio::test]
async fn a_unix_socket_forward_carries_bytes_to_a_socket_only_the_node_side_has() {
    let Some(sshd) = Sshd::start() else { return };
    let node = sshd.connect().await;
    // An echo service on a Unix socket (as containerd's CRI listens), on the sshd's side of the connection.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        loop {
            tokio::spawn(echo_back(listener.accept().await.unwrap().0));
        }
    });

    let tunnel = node.forward_local_unix(path.to_str().unwrap()).await.unwrap();
    assert!(tunnel.local.ip().is_loopback());
    // Larger than one channel window, so flow control is exercised.
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    echoes(tunnel.local, payload).await;

    // A socket nobody listens on closes the local connection; the session survives it.
    let missing = node.forward_local_unix(dir.path().join("nobody.sock").to_str().unwrap()).await.unwrap();
    let mut conn = TcpStream::connect(missing.local).await.unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(conn.read(&mut buf).await.unwrap_or(0), 0, "the local connection ends");
    node.succeed("true").await.unwrap();
}
