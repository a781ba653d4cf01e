//! Connecting: pinned host keys, authorized client keys, and retries while a node is not up yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kthw::ssh::{KeyPair, Session, SshError, Target};

use crate::sshd::{self, Sshd};

/// How long one refused connect may take, far below the 60 s deadline those tests give it: one handshake on
/// loopback took 17-150 ms here (2 cores, VMs beside it), so 1 s leaves room for a loaded host and none for
/// retrying until the deadline.
const FINAL: Duration = Duration::from_millis(BOUND_MS);
const BOUND_MS: u64 = 1000;

#[tokio::test]
async fn a_wrong_pinned_host_key_is_refused_naming_both_fingerprints() {
    let Some(sshd) = Sshd::start() else { return };
    let impostor = KeyPair::generate("not the node's key");
    let target = Target { host_key: impostor.public_openssh(), ..sshd.target() };

    // A long deadline: a mismatch must be final, not retried until the deadline: a retry would meet the same
    // key again and again until then.
    let started = Instant::now();
    let e = Session::connect(&target, Duration::from_secs(60)).await.unwrap_err();
    let took = started.elapsed();
    eprintln!("a host key mismatch ended connect after {took:?}");
    assert!(took < FINAL, "a mismatch was retried: connect took {took:?}");
    match &e {
        SshError::HostKeyMismatch { node, expected, got } => {
            assert_eq!(node, &target.node);
            assert_eq!(expected, &impostor.fingerprint());
            assert_eq!(got, &sshd.host_key.fingerprint());
        }
        other => panic!("expected a host key mismatch, got {other}"),
    }
    let text = e.to_string();
    assert!(text.contains(&impostor.fingerprint()) && text.contains(&sshd.host_key.fingerprint()), "{text}");
}

#[tokio::test]
async fn a_client_key_the_node_does_not_authorize_is_rejected() {
    let Some(sshd) = Sshd::start() else { return };
    let stranger = Arc::new(KeyPair::generate("stranger"));
    let target = Target { client_key: stranger.clone(), ..sshd.target() };
    let started = Instant::now();
    let e = Session::connect(&target, Duration::from_secs(60)).await.unwrap_err();
    let took = started.elapsed();
    eprintln!("a rejected client key ended connect after {took:?}");
    assert!(took < FINAL, "a rejected key was retried: connect took {took:?}");
    assert!(matches!(&e, SshError::AuthRejected { fingerprint, .. } if fingerprint == &stranger.fingerprint()), "{e}");
}

#[tokio::test]
async fn connect_retries_until_the_server_appears() {
    let Some(()) = sshd::available() else { return };
    let port = sshd::free_port();
    let (host_key, client_key) = (KeyPair::generate("kthw-test host"), Arc::new(KeyPair::generate("kthw-test client")));
    let target = sshd::target(port, &host_key, client_key.clone());

    // The node is still booting: nothing listens on its port yet; its sshd comes up a second later.
    let connecting = tokio::spawn(async move { Session::connect(&target, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!connecting.is_finished(), "connect gave up before the server appeared");
    let _sshd = tokio::task::spawn_blocking(move || Sshd::start_on(port, host_key, client_key)).await.unwrap();

    let node = connecting.await.unwrap().unwrap();
    assert_eq!(node.succeed("echo up").await.unwrap().stdout, b"up\n");
}

#[tokio::test]
async fn with_no_server_connect_reports_the_last_error_after_its_deadline() {
    let target = Target {
        node: "nobody-home".into(),
        ..sshd::target(sshd::free_port(), &KeyPair::generate("host"), Arc::new(KeyPair::generate("client")))
    };
    let e = Session::connect(&target, Duration::from_millis(1500)).await.unwrap_err();
    match &e {
        SshError::Connect { node, addr, last_error, waited } => {
            assert_eq!(node, "nobody-home");
            assert_eq!(*addr, target.addr);
            assert!(last_error.contains("refused"), "{last_error}");
            assert!(*waited >= Duration::from_millis(1000), "gave up after {waited:?}");
        }
        other => panic!("expected a connect error, got {other}"),
    }
}
