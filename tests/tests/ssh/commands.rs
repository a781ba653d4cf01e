//! Commands: status and output as bytes, deadlines, and the helpers that read like intent.

use std::time::{Duration, Instant};

use kthw::ssh::SshError;

use crate::sshd::Sshd;

#[tokio::test]
async fn exit_status_stdout_and_stderr_round_trip_with_non_utf8_bytes() {
    let Some(sshd) = Sshd::start() else { return };
    let node = sshd.connect().await;

    let out =
        node.exec(r"printf 'out\377\000x\n'; printf 'err\376' >&2; exit 3", Duration::from_secs(10)).await.unwrap();
    assert_eq!(out.status, Some(3));
    assert_eq!(out.stdout, b"out\xff\x00x\n");
    assert_eq!(out.stderr, b"err\xfe");

    let e = node.succeed("echo to-stderr >&2; exit 7").await.unwrap_err();
    assert!(
        matches!(&e, SshError::CommandFailed { status, stderr, .. } if status == "status 7" && stderr.contains("to-stderr")),
        "{e}"
    );
    assert!(e.to_string().contains(&sshd.target().node), "the error names the node: {e}");
    assert!(e.to_string().contains("exit 7"), "the error names the command: {e}");

    assert_eq!(node.fail("exit 1").await.unwrap().status, Some(1));
    assert!(matches!(node.fail("true").await, Err(SshError::UnexpectedSuccess { .. })));
    assert_eq!(node.succeed("echo hello").await.unwrap().stdout_lossy(), "hello\n");

    let log = std::fs::read_to_string(sshd.dir.path().join("node.log")).unwrap();
    assert!(log.contains("$ echo hello") && log.contains("out] hello") && log.contains("err] to-stderr"), "{log}");
}

/// Twelve commands of 0.2 s at once end well before the 2.4 s they take one after another.
const AT_ONCE_MS: u64 = 1200;
/// A 1 s deadline ends the command within this, not after the command's own 100 s.
const DEADLINE_END_MS: u64 = 2000;

#[tokio::test]
async fn several_commands_run_at_once_over_one_connection() {
    let Some(sshd) = Sshd::start() else { return };
    let node = sshd.connect().await;
    // More than OpenSSH's 10 sessions per connection: the rest queue instead of failing.
    let runs = (0..12).map(|i| {
        let node = node.clone();
        async move { node.succeed(&format!("sleep 0.2; echo {i}")).await.unwrap().stdout_lossy() }
    });
    let started = Instant::now();
    let outs = futures_join_all(runs).await;
    let took = started.elapsed();
    eprintln!("12 commands of 0.2 s each took {took:?} together");
    // One after another they take 2.4 s; at once, two waves of 0.2 s (the session's 8 channels, then 4).
    assert!(took < Duration::from_millis(AT_ONCE_MS), "the commands ran one after another: {took:?}");
    assert_eq!(outs, (0..12).map(|i| format!("{i}\n")).collect::<Vec<_>>());
}

async fn futures_join_all<F: std::future::Future<Output = String> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<String> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outs = Vec::new();
    for h in handles {
        outs.push(h.await.unwrap());
    }
    outs
}

#[tokio::test]
async fn a_deadline_ends_sleep_100_and_kills_it_on_the_node() {
    let Some(sshd) = Sshd::start() else { return };
    let node = sshd.connect().await;
    let pidfile = sshd.path("sleep.pid");

    let started = Instant::now();
    let e = node
        .exec(&format!("echo started; sleep 100 & echo $! > {pidfile}; wait"), Duration::from_secs(1))
        .await
        .unwrap_err();
    let took = started.elapsed();
    eprintln!("a 1 s deadline ended `sleep 100` after {took:?}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(DEADLINE_END_MS),
        "the deadline did not end the command: {took:?}"
    );
    match &e {
        SshError::Timeout { cmd, after, last_output, .. } => {
            assert!(cmd.contains("sleep 100"));
            assert_eq!(*after, Duration::from_secs(1));
            assert!(last_output.contains("started"), "the output so far is reported: {last_output}");
        }
        other => panic!("expected a timeout, got {other}"),
    }
    // The sleep is gone on the node too, and the connection still works.
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    node.wait_until_succeeds(&format!("! kill -0 {}", pid.trim()), Duration::from_secs(10)).await.unwrap();
    node.succeed("true").await.unwrap();
}

#[tokio::test]
async fn wait_until_succeeds_returns_once_a_file_appears() {
    let Some(sshd) = Sshd::start() else { return };
    let node = sshd.connect().await;
    let flag = sshd.path("flag");

    let writer = {
        let flag = flag.clone();
        tokio::spawn(async move {
            // What is waited for happens later, as a node's service would come up.
            tokio::time::sleep(Duration::from_millis(700)).await;
            std::fs::write(flag, "up\n").unwrap();
        })
    };
    let out = node.wait_until_succeeds(&format!("cat {flag}"), Duration::from_secs(10)).await.unwrap();
    assert_eq!(out.stdout, b"up\n");
    writer.await.unwrap();
}

#[tokio::test]
async fn wait_until_succeeds_times_out_reporting_the_last_output() {
    let Some(sshd) = Sshd::start() else { return };
    let node = sshd.connect().await;
    let missing = sshd.path("never-there");

    let e = node
        .wait_until_succeeds(&format!("echo checking; cat {missing}"), Duration::from_millis(1500))
        .await
        .unwrap_err();
    match &e {
        SshError::Timeout { after, last_output, .. } => {
            assert_eq!(*after, Duration::from_millis(1500));
            assert!(last_output.contains("status 1"), "{last_output}");
            assert!(last_output.contains("checking"), "{last_output}");
            assert!(last_output.contains("No such file or directory"), "{last_output}");
        }
        other => panic!("expected a timeout, got {other}"),
    }
}

#[tokio::test]
async fn streamed_output_arrives_as_it_is_printed_not_at_the_end() {
    let Some(sshd) = Sshd::start() else { return };
    let node = sshd.connect().await;
    let start = Instant::now();
    let mut seen: Vec<(kthw::ssh::Stream, String, Duration)> = Vec::new();
    let out = node
        .exec_streaming("echo first; echo oops >&2; sleep 2; echo second; exit 4", Duration::from_secs(20), |s, d| {
            seen.push((s, String::from_utf8_lossy(d).into_owned(), start.elapsed()))
        })
        .await
        .unwrap();
    assert_eq!(out.status, Some(4));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "streamed output is handed on, not kept");
    let first = seen.iter().find(|(_, d, _)| d.contains("first")).expect("first arrives");
    let second = seen.iter().find(|(_, d, _)| d.contains("second")).expect("second arrives");
    assert!(first.2 + Duration::from_millis(1500) <= second.2, "first came before the sleep ended: {seen:?}");
    assert!(seen.iter().any(|(s, d, _)| *s == kthw::ssh::Stream::Stderr && d.contains("oops")), "{seen:?}");
}
