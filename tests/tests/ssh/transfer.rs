//! Files: streamed, atomic, with the mode asked for.

use std::time::Duration;

use kthw::ssh::SshError;
use kthw_tests::write_random_file;

use crate::sshd::Sshd;

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn a_256_mib_upload_arrives_intact_without_being_held_in_memory() {
    let Some(sshd) = Sshd::start() else { return };
    let node = sshd.connect().await;
    let local = sshd.dir.path().join("big.bin");
    let expected = write_random_file(&local, 256).unwrap();
    let rss_before = memory_kib("VmRSS");

    let remote = sshd.path("uploaded/big.bin");
    std::fs::create_dir(sshd.dir.path().join("uploaded")).unwrap();
    node.upload(&local, &remote, 0o640).await.unwrap();

    let peak_growth_mib = (memory_kib("VmHWM").saturating_sub(rss_before)) / 1024;
    assert!(peak_growth_mib < 64, "uploading 256 MiB raised peak memory by {peak_growth_mib} MiB: not streamed");
    let sum = node.succeed(&format!("sha256sum {remote}")).await.unwrap().stdout_lossy();
    assert_eq!(sum.split_whitespace().next(), Some(expected.as_str()));
    assert_eq!(node.succeed(&format!("stat -c %a {remote}")).await.unwrap().stdout, b"640\n");
    let leftovers = node.succeed(&format!("ls -A {}", sshd.path("uploaded"))).await.unwrap().stdout_lossy();
    assert_eq!(leftovers, "big.bin\n", "no temporary file is left beside the upload");
}

#[tokio::test]
async fn an_upload_replaces_an_existing_file_and_a_missing_directory_is_reported() {
    let Some(sshd) = Sshd::start() else { return };
    let node = sshd.connect().await;
    let remote = sshd.path("config");

    node.upload_bytes(b"first\n", &remote, 0o600).await.unwrap();
    node.upload_bytes(b"second\xff\n", &remote, 0o755).await.unwrap();
    assert_eq!(std::fs::read(&remote).unwrap(), b"second\xff\n");
    assert_eq!(node.succeed(&format!("stat -c %a {remote}")).await.unwrap().stdout, b"755\n");

    let nowhere = sshd.path("no/such/dir/file");
    let e = node.upload_bytes(b"x", &nowhere, 0o644).await.unwrap_err();
    assert!(matches!(&e, SshError::Transfer { remote, .. } if remote == &nowhere), "{e}");
    let text = e.to_string();
    assert!(text.contains(&sshd.target().node) && text.contains("No such file or directory"), "{text}");
}

#[tokio::test]
async fn a_download_round_trips_bytes_into_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let Some(sshd) = Sshd::start() else { return };
    let node = sshd.connect().await;
    let content: Vec<u8> = (0..3 * MIB + 17).map(|i| (i * 7 % 256) as u8).collect();
    let remote = sshd.path("remote.bin");
    node.upload_bytes(&content, &remote, 0o644).await.unwrap();

    let local_dir = tempfile::tempdir().unwrap();
    let local = local_dir.path().join("fetched.bin");
    node.download(&remote, &local).await.unwrap();
    assert!(std::fs::read(&local).unwrap() == content, "downloaded bytes differ");
    assert_eq!(std::fs::metadata(&local).unwrap().permissions().mode() & 0o777, 0o600);

    let e = node.download(&sshd.path("absent"), &local_dir.path().join("absent")).await.unwrap_err();
    assert!(e.to_string().contains("No such file or directory"), "{e}");
    let names: Vec<_> = std::fs::read_dir(local_dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["fetched.bin"], "a failed download leaves nothing behind");
    // Still usable afterwards.
    node.exec("true", Duration::from_secs(5)).await.unwrap();
}

/// A field of /proc/self/status, in KiB.
fn memory_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
