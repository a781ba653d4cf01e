//! `kthw::ssh` against real nodes, run inside a test that already booted a cluster (a boot is the cost here):
//! bytes and statuses of commands, deadlines, pinned host keys, a 256 MiB upload, and a tunnel from the host
//! through control-plane-1 to a service that listens only on worker-node-1's cluster address.

use std::time::{Duration, Instant};

use kthw::cluster::Cluster;
use kthw::ssh::{keys, KeyPair, Session, SshError, Target};
use kthw_tests::write_random_file;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONTROL_PLANE: &str = "control-plane-1";
const WORKER: &str = "worker-node-1";
/// The echo service's port on the worker.
const ECHO_PORT: u16 = 7070;

/// Every check below, on the nodes of `cluster` (which must have control-plane-1 and worker-node-1).
pub async fn ssh_checks(cluster: &Cluster) {
    commands_round_trip_bytes_and_statuses(cluster).await;
    a_deadline_ends_sleep_100_on_the_node(cluster).await;
    a_wrong_pinned_host_key_is_refused(cluster).await;
    a_256_mib_upload_arrives_intact(cluster).await;
    a_tunnel_reaches_a_service_on_the_workers_cluster_address_only(cluster).await;
}

async fn commands_round_trip_bytes_and_statuses(cluster: &Cluster) {
    let node = cluster.session(WORKER).await.unwrap();
    let out = node
        .exec(r"printf 'out\377\000x\n'; printf 'err\376' >&2; exit 3", cluster.accel().scale(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.status, Some(3), "{}", out.summary());
    assert_eq!(out.stdout, b"out\xff\x00x\n");
    assert_eq!(out.stderr, b"err\xfe");

    let e = node.succeed("echo to-stderr >&2; exit 7").await.unwrap_err();
    assert!(
        matches!(&e, SshError::CommandFailed { node, status, stderr, .. }
        if node == WORKER && status == "status 7" && stderr.contains("to-stderr")),
        "{e}"
    );
}

async fn a_deadline_ends_sleep_100_on_the_node(cluster: &Cluster) {
    let node = cluster.session(CONTROL_PLANE).await.unwrap();
    // Not scaled for TCG: `echo` runs within a second of the command starting even there.
    let deadline = Duration::from_secs(5);
    let pidfile = "/run/kthw-sleep.pid";
    let started = Instant::now();
    let e = node.exec(&format!("echo started; sleep 100 & echo $! > {pidfile}; wait"), deadline).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the deadline did not end the command: {:?}",
        started.elapsed()
    );
    match &e {
        SshError::Timeout { node, after, last_output, .. } => {
            assert_eq!((node.as_str(), *after), (CONTROL_PLANE, deadline));
            assert!(last_output.contains("started"), "the output so far is reported: {last_output}");
        }
        other => panic!("expected a timeout, got {other}"),
    }
    // Killed on the node too, not only given up on; and the connection still works.
    node.wait_until_succeeds(&format!("! kill -0 $(cat {pidfile})"), cluster.accel().scale(Duration::from_secs(10)))
        .await
        .unwrap();
    node.succeed(&format!("rm {pidfile}")).await.unwrap();
}

async fn a_wrong_pinned_host_key_is_refused(cluster: &Cluster) {
    let real = cluster.target(WORKER).unwrap();
    let impostor = KeyPair::generate("not worker-node-1's key");
    let pinned_wrong = Target { host_key: impostor.public_openssh(), ..real.clone() };
    // A long deadline: a mismatch must be final at once, not retried like a node that is still booting.
    let started = std::time::Instant::now();
    let e = Session::connect(&pinned_wrong, Duration::from_secs(120)).await.unwrap_err();
    // One handshake: 17-150 ms against a loopback sshd (the ssh tier); a guest's sshd under TCG answers slower,
    // so the same 1 s bound scaled for the accelerator, still far below the 120 s a retry would run into.
    let took = started.elapsed();
    eprintln!("a host key mismatch ended connect after {took:?}");
    assert!(took < cluster.accel().scale(Duration::from_secs(1)), "a mismatch was retried: {took:?}");
    let presented = keys::fingerprint_of(&real.host_key).unwrap();
    match &e {
        SshError::HostKeyMismatch { node, expected, got } => {
            assert_eq!(node, WORKER);
            assert_eq!(expected, &impostor.fingerprint());
            assert_eq!(got, &presented);
        }
        other => panic!("expected a host key mismatch, got {other}"),
    }
    let text = e.to_string();
    assert!(text.contains(WORKER) && text.contains(&impostor.fingerprint()) && text.contains(&presented), "{text}");
}

async fn a_256_mib_upload_arrives_intact(cluster: &Cluster) {
    let scratch = tempfile::tempdir().unwrap();
    let local = scratch.path().join("big.bin");
    let expected = tokio::task::spawn_blocking({
        let local = local.clone();
        move || write_random_file(&local, 256).unwrap()
    })
    .await
    .unwrap();
    let node = cluster.session(WORKER).await.unwrap();
    node.succeed("mkdir -p /var/tmp/kthw-upload").await.unwrap();
    let remote = "/var/tmp/kthw-upload/big.bin";

    let started = Instant::now();
    node.upload(&local, remote, 0o640).await.unwrap();
    eprintln!("uploaded 256 MiB to {WORKER} in {:.1} s", started.elapsed().as_secs_f64());

    let sum = node.succeed(&format!("sha256sum {remote}")).await.unwrap().stdout_lossy();
    assert_eq!(sum.split_whitespace().next(), Some(expected.as_str()), "{sum}");
    assert_eq!(node.succeed(&format!("stat -c %a {remote}")).await.unwrap().stdout, b"640\n");
    let left = node.succeed("ls -A /var/tmp/kthw-upload").await.unwrap().stdout_lossy();
    assert_eq!(left, "big.bin\n", "no temporary file is left beside the upload");
    node.succeed("rm -r /var/tmp/kthw-upload").await.unwrap();
}

async fn a_tunnel_reaches_a_service_on_the_workers_cluster_address_only(cluster: &Cluster) {
    let address = cluster.node(WORKER).unwrap().address;
    let worker = cluster.session(WORKER).await.unwrap();
    worker
        .succeed(&format!(
            "systemd-run --unit=kthw-echo socat TCP-LISTEN:{ECHO_PORT},bind={address},reuseaddr,fork EXEC:cat"
        ))
        .await
        .unwrap();
    let listening = worker
        .wait_until_succeeds(
            &format!("ss -Hltn 'sport = :{ECHO_PORT}'"),
            cluster.accel().scale(Duration::from_secs(10)),
        )
        .await
        .unwrap()
        .stdout_lossy();
    assert!(listening.contains(&format!("{address}:{ECHO_PORT}")), "{listening}");

    let tunnel = cluster.session(CONTROL_PLANE).await.unwrap().forward_local(&address.to_string(), ECHO_PORT).await;
    let tunnel = tunnel.unwrap();
    assert!(tunnel.local.ip().is_loopback());
    let payload: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
    let echoed = tokio::time::timeout(cluster.accel().scale(Duration::from_secs(30)), echo(tunnel.local, &payload))
        .await
        .expect("the echo through the tunnel did not finish in time");
    assert!(echoed == payload, "echoed {} bytes of {}, or different ones", echoed.len(), payload.len());
    drop(tunnel);

    // The same port on the worker's other addresses (loopback, the user-mode NIC) refuses: the service is on
    // the cluster address, which is what the tunnel reached. The cluster address is the probe's control.
    let addresses = worker.succeed("ip -o -4 addr show").await.unwrap().stdout_lossy();
    // "2: eth0    inet 10.0.0.5/24 brd ..." per address.
    let addresses: Vec<&str> =
        addresses.lines().filter_map(|l| l.split_whitespace().nth(3)?.split('/').next()).collect();
    let others: Vec<&str> = addresses.iter().copied().filter(|a| *a != address.to_string()).collect();
    assert!(others.contains(&"127.0.0.1") && others.len() >= 2, "the worker's other addresses: {others:?}");
    let probe = |addr: &str| format!("socat -u OPEN:/dev/null TCP:{addr}:{ECHO_PORT},connect-timeout=5");
    worker.succeed(&probe(&address.to_string())).await.unwrap();
    for other in others {
        let refused = worker.fail(&probe(other)).await.unwrap();
        assert!(refused.stderr_lossy().contains("Connection refused"), "{other}: {}", refused.summary());
    }
    worker.succeed("systemctl stop kthw-echo").await.unwrap();
}

/// Sends `payload` through a fresh connection to `local` and reads back as many bytes.
async fn echo(local: std::net::SocketAddr, payload: &[u8]) -> Vec<u8> {
    let conn = TcpStream::connect(local).await.unwrap();
    let (mut r, mut w) = conn.into_split();
    let mut back = vec![0u8; payload.len()];
    let (sent, read) = tokio::join!(w.write_all(payload), r.read_exact(&mut back));
    sent.unwrap();
    read.unwrap();
    back
}
