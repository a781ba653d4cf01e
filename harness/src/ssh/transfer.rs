//! Files to and from a node, streamed over an exec channel (`cat` into a temporary file, then `mv`), so
//! neither side ever holds a whole file and a reader of the destination sees the old file or the new one,
//! never half of one.
//!
//! Why not SFTP: a plain byte stream keeps the channel window full without request/acknowledge round trips,
//! and OpenSSH's SFTP rename refuses to replace an existing file unless the posix-rename extension is used,
//! which russh-sftp's high-level client does not expose. The node needs only a POSIX shell and coreutils.

use std::path::{Path, PathBuf};
use std::time::Instant;

use russh::ChannelMsg;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::error::Direction;
use super::session::{tail, Output};
use super::{shell_quote, Session, SshError};

/// Bytes per channel write: large enough to amortise the hand-off to russh's session task, small enough to
/// keep memory flat.
const CHUNK: usize = 256 * 1024;

impl Session {
    /// Copies the local file `local` to `remote` on the node with permissions `mode`, atomically.
    pub async fn upload(&self, local: &Path, remote: &str, mode: u32) -> Result<(), SshError> {
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| self.upload_error(&local.display().to_string(), remote, format!("cannot open it: {e}")))?;
        self.put(file, &local.display().to_string(), remote, mode).await
    }

    /// Writes `data` to `remote` on the node with permissions `mode`, atomically.
    pub async fn upload_bytes(&self, data: &[u8], remote: &str, mode: u32) -> Result<(), SshError> {
        self.put(data, &format!("({} bytes)", data.len()), remote, mode).await
    }

    async fn put<R: AsyncRead + Unpin>(
        &self,
        mut source: R,
        what: &str,
        remote: &str,
        mode: u32,
    ) -> Result<(), SshError> {
        let (_permit, mut log) = self.begin(&format!("upload {what} -> {remote} (mode {mode:o})")).await;
        let started = Instant::now();
        let dir = remote_dir(remote);
        let script = format!(
            "set -e; t=$(mktemp {dir}/.kthw-upload.XXXXXX); trap 'rm -f \"$t\"' EXIT; cat > \"$t\"; \
             chmod {mode:o} \"$t\"; mv -f \"$t\" {remote}; trap - EXIT",
            dir = shell_quote(dir),
            remote = shell_quote(remote),
        );
        let channel = self.open_session(&format!("upload to {remote}")).await?;
        channel.exec(true, script).await.map_err(|e| self.protocol(format!("start the upload to {remote}"), e))?;
        let (mut rx, tx) = channel.split();

        let send = async {
            let mut total = 0u64;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = source.read(&mut buf).await.map_err(|e| format!("reading {what}: {e}"))?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                tx.data_bytes(buf).await.map_err(|e| format!("sending: {e}"))?;
                total += n as u64;
            }
            tx.eof().await.map_err(|e| format!("sending end of file: {e}"))?;
            Ok::<u64, String>(total)
        };
        let receive = async {
            let mut out = Output::default();
            while let Some(msg) = rx.wait().await {
                collect(&mut out, msg);
            }
            out
        };
        tokio::pin!(send, receive);
        let mut sent = None;
        // The remote side may give up early (no such directory, disk full): then stop sending at once.
        let out = loop {
            tokio::select! {
                r = &mut send, if sent.is_none() => sent = Some(r),
                out = &mut receive => break out,
            }
        };
        let result = match (sent, out.success()) {
            (Some(Ok(bytes)), true) => Ok(bytes),
            (Some(Err(e)), _) => Err(e),
            (_, false) => {
                Err(format!("the node's side ended with {}: {}", out.describe_status(), tail(&out.stderr, 2048)))
            }
            (None, true) => Err("the node's side finished before all data was sent".into()),
        };
        match result {
            Ok(bytes) => {
                log.note(&format!("uploaded {bytes} bytes in {:.2}s", started.elapsed().as_secs_f64()));
                Ok(())
            }
            Err(detail) => {
                log.note(&format!("upload failed: {detail}"));
                Err(self.upload_error(what, remote, detail))
            }
        }
    }

    /// Copies `remote` from the node to the local file `local`, atomically (a temporary file beside it, then a
    /// rename). The local file is private (0600): what the harness downloads is mostly credentials.
    pub async fn download(&self, remote: &str, local: &Path) -> Result<(), SshError> {
        let (_permit, mut log) = self.begin(&format!("download {remote} -> {}", local.display())).await;
        let started = Instant::now();
        let tmp = temp_beside(local);
        let result = self.fetch_into(remote, &tmp).await;
        let result = match result {
            Ok(bytes) => {
                tokio::fs::rename(&tmp, local).await.map(|_| bytes).map_err(|e| format!("renaming into place: {e}"))
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(bytes) => {
                log.note(&format!("downloaded {bytes} bytes in {:.2}s", started.elapsed().as_secs_f64()));
                Ok(())
            }
            Err(detail) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                log.note(&format!("download failed: {detail}"));
                Err(SshError::Transfer {
                    node: self.node().to_string(),
                    direction: Direction::Download,
                    local: local.display().to_string(),
                    remote: remote.to_string(),
                    detail,
                })
            }
        }
    }

    async fn fetch_into(&self, remote: &str, tmp: &Path) -> Result<u64, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        let mut file = tokio::io::BufWriter::with_capacity(CHUNK, tokio::fs::File::from_std(file));
        let mut channel = self.open_session(&format!("download {remote}")).await.map_err(|e| e.to_string())?;
        channel
            .exec(true, format!("cat -- {}", shell_quote(remote)))
            .await
            .map_err(|e| format!("starting cat: {e}"))?;
        channel.eof().await.map_err(|e| format!("closing stdin: {e}"))?;
        let mut out = Output::default();
        let mut bytes = 0u64;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    file.write_all(&data).await.map_err(|e| format!("writing {}: {e}", tmp.display()))?;
                    bytes += data.len() as u64;
                }
                other => collect(&mut out, other),
            }
        }
        if !out.success() {
            return Err(format!("the node's side ended with {}: {}", out.describe_status(), tail(&out.stderr, 2048)));
        }
        file.flush().await.map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        file.get_ref().sync_all().await.map_err(|e| format!("syncing {}: {e}", tmp.display()))?;
        Ok(bytes)
    }

    fn upload_error(&self, local: &str, remote: &str, detail: String) -> SshError {
        SshError::Transfer {
            node: self.node().to_string(),
            direction: Direction::Upload,
            local: local.to_string(),
            remote: remote.to_string(),
            detail,
        }
    }
}

/// Status and stderr of a transfer's command; its stdout is the payload, handled by the caller.
fn collect(out: &mut Output, msg: ChannelMsg) {
    match msg {
        ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
        ChannelMsg::ExtendedData { data, .. } => out.stderr.extend_from_slice(&data),
        ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
        ChannelMsg::ExitSignal { signal_name, .. } => out.signal = Some(format!("{signal_name:?}")),
        _ => {}
    }
}

/// The directory part of a remote path, as `dirname` would give it.
fn remote_dir(remote: &str) -> &str {
    match remote.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) => "/",
        Some((dir, _)) => dir,
        None => ".",
    }
}

fn temp_beside(local: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    local.with_file_name(format!(".{name}.kthw-download.{}.{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::remote_dir;

    #[test]
    fn the_temporary_file_goes_in_the_destination_directory() {
        assert_eq!(remote_dir("/etc/kubernetes/admin.kubeconfig"), "/etc/kubernetes");
        assert_eq!(remote_dir("/ca.pem"), "/");
        assert_eq!(remote_dir("ca.pem"), ".");
        assert_eq!(remote_dir("certs/ca.pem"), "certs");
    }
}
