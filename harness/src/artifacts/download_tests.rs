//! Downloads against a real HTTP/1.1 server on 127.0.0.1 that misbehaves on cue: what lands on disk, how many
//! requests it took, and which ranges were asked for.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;
use crate::artifacts::test_server::{quick, refused_port, Reply, Seen, Server, HOLD};
use crate::artifacts::{Algorithm, Checksum};

/// 3 MiB of bytes that are not a repetition of one block, so that a misplaced range changes the sum.
fn body() -> Vec<u8> {
    (0..3 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn part_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("payload.tar.gz.part")
}

fn assert_complete(part: &std::path::Path, body: &[u8]) {
    let on_disk = Checksum::of_file(Algorithm::Sha256, part).unwrap();
    assert_eq!(on_disk.hex, sha256(body), "the file on disk is the served body");
}

fn ranges(seen: &[Seen]) -> Vec<Option<String>> {
    seen.iter().map(|s| s.range.clone()).collect()
}

#[test]
fn a_good_server_is_asked_once_without_a_range() {
    let body = body();
    let server = Server::start(body.clone(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let part = part_in(&dir);
    let size = quick().fetch(&server.url("/v1/payload.tar.gz"), &part, "payload").unwrap();
    assert_eq!(size, body.len() as u64);
    assert_complete(&part, &body);
    assert_eq!(server.requests(), [Seen { path: "/v1/payload.tar.gz".into(), range: None }]);
}

#[test]
fn a_truncated_body_is_resumed_with_a_range_request() {
    let body = body();
    let cut = 1_000_000;
    let server = Server::start(body.clone(), &[Reply::Truncate(cut)]);
    let dir = tempfile::tempdir().unwrap();
    let part = part_in(&dir);
    quick().fetch(&server.url("/payload"), &part, "payload").unwrap();
    assert_complete(&part, &body);
    assert_eq!(ranges(&server.requests()), [None, Some(format!("bytes={cut}-"))]);
}

#[test]
fn a_partial_file_from_an_earlier_run_is_resumed() {
    let body = body();
    let server = Server::start(body.clone(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let part = part_in(&dir);
    std::fs::write(&part, &body[..12345]).unwrap();
    quick().fetch(&server.url("/payload"), &part, "payload").unwrap();
    assert_complete(&part, &body);
    assert_eq!(ranges(&server.requests()), [Some("bytes=12345-".to_string())]);
}

#[test]
fn a_server_that_ignores_range_gets_the_file_started_over() {
    let body = body();
    let server = Server::start(body.clone(), &[Reply::Truncate(500_000), Reply::IgnoreRange]);
    let dir = tempfile::tempdir().unwrap();
    let part = part_in(&dir);
    quick().fetch(&server.url("/payload"), &part, "payload").unwrap();
    assert_complete(&part, &body);
    assert_eq!(std::fs::metadata(&part).unwrap().len(), body.len() as u64, "the 200 body replaced, not appended");
    assert_eq!(ranges(&server.requests()), [None, Some("bytes=500000-".to_string())]);
}

#[test]
fn a_complete_partial_file_is_recognised_from_the_416_answer() {
    let body = body();
    let server = Server::start(body.clone(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let part = part_in(&dir);
    std::fs::write(&part, &body).unwrap();
    let size = quick().fetch(&server.url("/payload"), &part, "payload").unwrap();
    assert_eq!(size, body.len() as u64);
    assert_complete(&part, &body);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_stalled_body_is_abandoned_after_the_stall_timeout_and_resumed() {
    let body = body();
    let server = Server::start(body.clone(), &[Reply::StallAfter(200_000), Reply::Silent]);
    let dir = tempfile::tempdir().unwrap();
    let part = part_in(&dir);
    let started = Instant::now();
    quick().fetch(&server.url("/payload"), &part, "payload").unwrap();
    let took = started.elapsed();
    assert_complete(&part, &body);
    // The stalled body, the silent server, then resumed requests until one completes: one, unless the host is so
    // loaded that a served body also pauses past the 300 ms stall window (seen once on 2 busy cores).
    let seen = ranges(&server.requests());
    assert!(seen.len() >= 3, "{seen:?}");
    assert_eq!(seen[0], None);
    assert!(seen[1..].iter().all(|r| r.as_deref().is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-")));
    // Two stalls of 300 ms each, each abandoned before the server's hold ends.
    assert!(took >= Duration::from_millis(600) && took < HOLD, "took {took:?}");
}

#[test]
fn not_found_is_final_and_names_the_status() {
    let server = Server::start(body(), &[Reply::Status(404)]);
    let dir = tempfile::tempdir().unwrap();
    let part = part_in(&dir);
    let err = quick().fetch(&server.url("/nope"), &part, "payload").unwrap_err();
    assert!(matches!(err, DownloadError::Refused { status } if status == 404), "{err:?}");
    assert!(err.to_string().contains("404 Not Found"), "{err}");
    assert_eq!(server.requests().len(), 1, "a 404 is not retried");
    assert!(!part.exists(), "nothing written for a refusal");
}

#[test]
fn forbidden_is_final_too() {
    let server = Server::start(body(), &[Reply::Status(403)]);
    let dir = tempfile::tempdir().unwrap();
    let err = quick().fetch(&server.url("/secret"), &part_in(&dir), "payload").unwrap_err();
    assert!(matches!(err, DownloadError::Refused { status } if status == 403), "{err:?}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn server_errors_are_retried_until_the_download_succeeds() {
    let body = body();
    let server = Server::start(body.clone(), &[Reply::Status(500), Reply::Status(503)]);
    let dir = tempfile::tempdir().unwrap();
    let part = part_in(&dir);
    quick().fetch(&server.url("/payload"), &part, "payload").unwrap();
    assert_complete(&part, &body);
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn retries_run_out_with_the_last_failure_as_the_cause() {
    let server = Server::start(body(), &[Reply::Status(502); 10]);
    let dir = tempfile::tempdir().unwrap();
    let err = quick().fetch(&server.url("/payload"), &part_in(&dir), "payload").unwrap_err();
    let DownloadError::GaveUp { attempts, last } = &err else { panic!("{err:?}") };
    assert_eq!(*attempts, 4);
    assert!(matches!(last, Attempt::Status(s) if *s == 502), "{last:?}");
    assert_eq!(server.requests().len(), 4, "exactly the configured number of tries");
    // The message says what happened; the cause is only in the chain, not repeated.
    assert!(!err.to_string().contains("502"), "{err}");
    assert!(std::error::Error::source(&err).unwrap().to_string().contains("502 Bad Gateway"));
}

#[test]
fn a_refused_connection_is_retried_then_reported() {
    // A loopback port nothing listens on: refused at once, and nothing leaves this machine.
    let refused = refused_port();
    let dir = tempfile::tempdir().unwrap();
    let err = quick().fetch(&format!("http://127.0.0.1:{}/x", refused.port), &part_in(&dir), "payload").unwrap_err();
    let DownloadError::GaveUp { attempts: 4, last: Attempt::Connect(_) } = &err else { panic!("{err:?}") };
}

#[test]
fn the_backoff_doubles_up_to_its_ceiling() {
    let server = Server::start(body(), &[Reply::Status(500); 10]);
    let dir = tempfile::tempdir().unwrap();
    let slow = Download {
        attempts: 4,
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(150),
        ..quick()
    };
    let started = Instant::now();
    slow.fetch(&server.url("/payload"), &part_in(&dir), "payload").unwrap_err();
    // Waits of 100, 150 (capped from 200) and 150 ms between the four tries.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn progress_lines_show_percent_size_and_rate() {
    let mib = 1024 * 1024;
    assert_eq!(progress_line("etcd", 5 * mib, Some(20 * mib), 2.0 * MIB), "etcd:  25% 5.0 of 20.0 MiB, 2.0 MiB/s");
    assert_eq!(progress_line("etcd", 3 * mib / 2, None, 0.5 * MIB), "etcd: 1.5 MiB, 0.5 MiB/s");
}

#[test]
fn content_ranges_are_parsed_as_first_byte_and_length() {
    assert_eq!(parse_content_range("bytes 100-199/1000"), (Some(100), Some(1000)));
    assert_eq!(parse_content_range("bytes 100-199/*"), (Some(100), None));
    assert_eq!(parse_content_range("items 1-2/3"), (None, None));
}
