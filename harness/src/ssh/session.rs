//! One pinned, authenticated connection to a node, and commands run over it.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::ssh_key::{Algorithm, PublicKey};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Preferred, Sig};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::log::NodeLog;
use super::{shell_quote, SshError, Target};

/// Deadline of `succeed` and `fail` unless [`Session::with_deadline`] says otherwise.
const DEFAULT_COMMAND_DEADLINE: Duration = Duration::from_secs(300);
/// One connection attempt (TCP, key exchange, authentication) may take this long before it is retried; a
/// TCG guest under load is slow but never this slow.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(20);
/// OpenSSH's default MaxSessions is 10 session channels per connection; stay under it and queue the rest.
const MAX_SESSION_CHANNELS: usize = 8;
/// How much of a command's output an error quotes.
const ERROR_TAIL_BYTES: usize = 2048;
/// Longer deadlines are not enforced on the node (nothing legitimately runs for a day).
const MAX_NODE_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// What a command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// The exit status; `None` when the command was killed by a signal (see `signal`) or sent none.
    pub status: Option<u32>,
    /// The signal that ended the command, as OpenSSH names it (`KILL`, `TERM`...).
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Where [`Session::exec_streaming`] hands output as it arrives.
type OutputSink<'a> = &'a mut (dyn FnMut(Stream, &[u8]) + Send);

/// Which of a command's output streams a piece of output came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// stdout as text, invalid UTF-8 replaced.
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text, invalid UTF-8 replaced.
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// "status 1", "signal KILL", or "no exit status".
    pub fn describe_status(&self) -> String {
        match (&self.status, &self.signal) {
            (Some(s), _) => format!("status {s}"),
            (None, Some(sig)) => format!("signal {sig}"),
            (None, None) => "no exit status".into(),
        }
    }

    /// What a person wants to see when a wait gives up: the status and the end of both streams.
    pub fn summary(&self) -> String {
        format!(
            "{}\nstdout: {}\nstderr: {}",
            self.describe_status(),
            tail(&self.stdout, ERROR_TAIL_BYTES),
            tail(&self.stderr, ERROR_TAIL_BYTES)
        )
    }
}

/// The last `max` bytes of `bytes` as text.
pub(crate) fn tail(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    let text = String::from_utf8_lossy(&bytes[start..]);
    if start > 0 {
        format!("...{text}")
    } else {
        text.into_owned()
    }
}

/// A connection to one node. Clones share the connection; commands, transfers and tunnels may run over it at
/// the same time. The connection closes when the last clone (and the last [`super::Tunnel`]) is dropped.
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<Inner>,
    default_deadline: Duration,
}

pub(crate) struct Inner {
    pub(crate) node: String,
    pub(crate) handle: Handle<PinnedHostKey>,
    log: Option<std::path::PathBuf>,
    next_id: AtomicU64,
    session_channels: Semaphore,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("node", &self.inner.node).finish()
    }
}

/// Accepts exactly the pinned key, and remembers what else a server presented so the error can name it.
pub(crate) struct PinnedHostKey {
    expected: PublicKey,
    presented: Arc<Mutex<Option<String>>>,
}

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let presented = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.expected.key_data() => {
                return Ok(true)
            }
            PublicKeyOrCertificate::PublicKey { key, .. } => key.fingerprint(Default::default()).to_string(),
            PublicKeyOrCertificate::Certificate(cert) => {
                format!("a certificate for {}", cert.public_key().fingerprint(Default::default()))
            }
        };
        *self.presented.lock().expect("not poisoned") = Some(presented);
        Ok(false)
    }
}

/// Why one connection attempt failed: worth another try (the node is booting or restoring), or not.
enum AttemptError {
    Retry(String),
    Fatal(SshError),
}

impl Session {
    /// Connects and authenticates, retrying while nothing answers or the connection drops (a node booting or
    /// being restored), until `deadline`. A wrong host key or a rejected client key is final.
    pub async fn connect(target: &Target, deadline: Duration) -> Result<Session, SshError> {
        let expected = PublicKey::from_openssh(target.host_key.trim()).map_err(|e| SshError::HostKeyMismatch {
            node: target.node.clone(),
            expected: format!("an unparseable pinned key ({e}): {:?}", target.host_key),
            got: "(not asked)".into(),
        })?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(100);
        let mut last_error: Option<String> = None;
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            if let (true, Some(last_error)) = (left.is_zero(), &last_error) {
                return Err(SshError::Connect {
                    node: target.node.clone(),
                    addr: target.addr,
                    last_error: last_error.clone(),
                    waited: start.elapsed(),
                });
            }
            let why = match tokio::time::timeout(left.min(ATTEMPT_LIMIT), attempt(target, &expected)).await {
                Ok(Ok(handle)) => {
                    tracing::debug!(node = %target.node, addr = %target.addr, after = ?start.elapsed(), "connected");
                    return Ok(Session::new(target, handle));
                }
                Ok(Err(AttemptError::Fatal(e))) => return Err(e),
                Ok(Err(AttemptError::Retry(why))) => why,
                Err(_) => format!("no SSH handshake within {:?}", left.min(ATTEMPT_LIMIT)),
            };
            tracing::trace!(node = %target.node, error = %why, "connect attempt failed; retrying");
            last_error = Some(why);
            tokio::time::sleep(pause.min(deadline.saturating_sub(start.elapsed()))).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    fn new(target: &Target, handle: Handle<PinnedHostKey>) -> Session {
        Session {
            inner: Arc::new(Inner {
                node: target.node.clone(),
                handle,
                log: target.log.clone(),
                next_id: AtomicU64::new(1),
                session_channels: Semaphore::new(MAX_SESSION_CHANNELS),
            }),
            default_deadline: DEFAULT_COMMAND_DEADLINE,
        }
    }

    /// The node this session talks to.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// A handle on the same connection whose `succeed` and `fail` give up after `deadline`.
    pub fn with_deadline(&self, deadline: Duration) -> Session {
        Session { inner: self.inner.clone(), default_deadline: deadline }
    }

    /// Whether the connection is gone (the node went down or was restored); connect again then.
    pub fn is_closed(&self) -> bool {
        self.inner.handle.is_closed()
    }

    /// Runs `cmd` under the user's shell with no stdin, and collects its status and output. Past `deadline`
    /// a [`SshError::Timeout`] carries what it had printed, and the command and everything it started are
    /// killed on the node.
    pub async fn exec(&self, cmd: &str, deadline: Duration) -> Result<Output, SshError> {
        self.exec_inner(cmd, deadline, None).await
    }

    /// [`Session::exec`], handing each piece of output to `on_output` as it arrives (`Stream::Stdout` or
    /// `Stream::Stderr`) instead of collecting it: the returned output holds the exit status only.
    pub async fn exec_streaming(
        &self,
        cmd: &str,
        deadline: Duration,
        mut on_output: impl FnMut(Stream, &[u8]) + Send,
    ) -> Result<Output, SshError> {
        self.exec_inner(cmd, deadline, Some(&mut on_output)).await
    }

    async fn exec_inner(
        &self,
        cmd: &str,
        deadline: Duration,
        mut stream: Option<OutputSink<'_>>,
    ) -> Result<Output, SshError> {
        let (_permit, mut log) = self.begin(&format!("$ {cmd}")).await;
        let started = Instant::now();
        let mut channel = self.open_session(&format!("run `{cmd}`")).await?;
        channel
            .exec(true, with_deadline_on_node(cmd, deadline))
            .await
            .map_err(|e| self.protocol(format!("run `{cmd}`"), e))?;
        channel.eof().await.map_err(|e| self.protocol(format!("close stdin of `{cmd}`"), e))?;

        let mut out = Output::default();
        let mut refused = false;
        let finished = tokio::time::timeout(deadline, async {
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        log.stdout(&data);
                        match stream.as_mut() {
                            Some(f) => f(Stream::Stdout, &data),
                            None => out.stdout.extend_from_slice(&data),
                        }
                    }
                    ChannelMsg::ExtendedData { data, .. } => {
                        log.stderr(&data);
                        match stream.as_mut() {
                            Some(f) => f(Stream::Stderr, &data),
                            None => out.stderr.extend_from_slice(&data),
                        }
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => out.signal = Some(signal_name_of(&signal_name)),
                    ChannelMsg::Failure => refused = true,
                    _ => {}
                }
            }
        })
        .await;

        if finished.is_err() {
            let _ = channel.close().await;
            log.note(&format!("killed after {deadline:?}"));
            return Err(SshError::Timeout {
                node: self.inner.node.clone(),
                cmd: cmd.to_string(),
                after: deadline,
                last_output: out.summary(),
            });
        }
        if refused {
            return Err(SshError::CommandFailed {
                node: self.inner.node.clone(),
                cmd: cmd.to_string(),
                status: "refused by the server (exec request failed)".into(),
                stderr: String::new(),
            });
        }
        log.note(&format!("{} after {:.2?}", out.describe_status(), started.elapsed()));
        Ok(out)
    }

    /// Runs `cmd`, which must exit 0; otherwise the error carries its status and the end of its stderr.
    pub async fn succeed(&self, cmd: &str) -> Result<Output, SshError> {
        let out = self.exec(cmd, self.default_deadline).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(SshError::CommandFailed {
                node: self.inner.node.clone(),
                cmd: cmd.to_string(),
                status: out.describe_status(),
                stderr: tail(&out.stderr, ERROR_TAIL_BYTES),
            })
        }
    }

    /// Runs `cmd`, which must not exit 0; returns its output for the caller to check why it failed.
    pub async fn fail(&self, cmd: &str) -> Result<Output, SshError> {
        let out = self.exec(cmd, self.default_deadline).await?;
        if out.success() {
            Err(SshError::UnexpectedSuccess {
                node: self.inner.node.clone(),
                cmd: cmd.to_string(),
                stdout: tail(&out.stdout, ERROR_TAIL_BYTES),
            })
        } else {
            Ok(out)
        }
    }

    /// Runs `cmd` until it exits 0 or `deadline` passes; the timeout error reports the last attempt's output.
    /// A lost connection ends the wait at once: no attempt could succeed over it.
    pub async fn wait_until_succeeds(&self, cmd: &str, deadline: Duration) -> Result<Output, SshError> {
        let start = Instant::now();
        let mut last: Option<Output> = None;
        let mut pause = Duration::from_millis(100);
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(SshError::Timeout {
                    node: self.inner.node.clone(),
                    cmd: cmd.to_string(),
                    after: deadline,
                    last_output: last.map_or_else(|| "(no attempt finished)".into(), |o| o.summary()),
                });
            }
            match self.exec(cmd, left).await {
                Ok(out) if out.success() => return Ok(out),
                Ok(out) => last = Some(out),
                Err(SshError::Timeout { last_output: running, .. }) => {
                    // The deadline cut an attempt short: the last one that finished says more about why.
                    let last_output = match last {
                        Some(finished) => finished.summary(),
                        None => format!("the only attempt was still running; its output so far: {running}"),
                    };
                    return Err(SshError::Timeout {
                        node: self.inner.node.clone(),
                        cmd: cmd.to_string(),
                        after: deadline,
                        last_output,
                    });
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(pause.min(deadline.saturating_sub(start.elapsed()))).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Takes one of the connection's session-channel slots and opens the node log for one operation.
    pub(crate) async fn begin(&self, what: &str) -> (SemaphorePermit<'_>, NodeLog) {
        let permit = self.inner.session_channels.acquire().await.expect("the semaphore is never closed");
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut log = NodeLog::open(self.inner.log.as_deref(), id);
        log.note(what);
        (permit, log)
    }

    pub(crate) async fn open_session(&self, what: &str) -> Result<russh::Channel<client::Msg>, SshError> {
        self.inner
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.protocol(format!("open a channel to {what}"), e))
    }

    pub(crate) fn protocol(&self, what: String, source: russh::Error) -> SshError {
        SshError::Protocol { node: self.inner.node.clone(), what, source: Box::new(source) }
    }
}

/// `cmd` wrapped so the node kills it, and every process it started, shortly after `deadline`. The client
/// cannot do it: OpenSSH ignores the SSH "signal" request for root sessions (no post-auth privilege
/// separation), and closing a channel without a terminal leaves the command running.
fn with_deadline_on_node(cmd: &str, deadline: Duration) -> String {
    if deadline > MAX_NODE_DEADLINE {
        return cmd.to_string();
    }
    // A little later than the client's own deadline, so the client reports the timeout with the output so far.
    let secs = (deadline + Duration::from_secs(1)).as_secs_f64();
    // coreutils `timeout` runs the command in its own process group and kills the whole group.
    format!("exec timeout -s KILL {secs:.3}s \"$SHELL\" -c {}", shell_quote(cmd))
}

fn signal_name_of(sig: &Sig) -> String {
    match sig {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

async fn attempt(target: &Target, expected: &PublicKey) -> Result<Handle<PinnedHostKey>, AttemptError> {
    let presented = Arc::new(Mutex::new(None));
    let handler = PinnedHostKey { expected: expected.clone(), presented: presented.clone() };
    let handle = match client::connect(config(), target.addr, handler).await {
        Ok(h) => h,
        Err(e) => {
            if let Some(got) = presented.lock().expect("not poisoned").take() {
                return Err(AttemptError::Fatal(SshError::HostKeyMismatch {
                    node: target.node.clone(),
                    expected: expected.fingerprint(Default::default()).to_string(),
                    got,
                }));
            }
            return Err(AttemptError::Retry(e.to_string()));
        }
    };
    let key = PrivateKeyWithHashAlg::new(Arc::new(target.client_key.private_key().clone()), None);
    let mut handle = handle;
    match handle.authenticate_publickey(&target.user, key).await {
        Ok(r) if r.success() => Ok(handle),
        Ok(_) => Err(AttemptError::Fatal(SshError::AuthRejected {
            node: target.node.clone(),
            user: target.user.clone(),
            fingerprint: target.client_key.fingerprint(),
        })),
        Err(e) => Err(AttemptError::Retry(format!("authentication did not complete: {e}"))),
    }
}

fn config() -> Arc<client::Config> {
    Arc::new(client::Config {
        preferred: Preferred {
            // Only the algorithm of the pinned key: a server must prove that key, not offer another.
            key: Cow::Borrowed(&[Algorithm::Ed25519]),
            // ChaCha20-Poly1305 first, as OpenSSH does: the node's sshd is what limits a transfer, and a TCG
            // node's CPU (qemu64) has no AES-NI, where software AES-GCM ran at half the speed (8 vs 21 MB/s
            // to a TCG node). With AES-NI (KVM) either is far faster than the rest of the path.
            cipher: Cow::Borrowed(&[
                russh::cipher::CHACHA20_POLY1305,
                russh::cipher::AES_256_GCM,
                russh::cipher::AES_128_GCM,
            ]),
            // Nodes are on the same host: compression would only cost CPU.
            compression: Cow::Borrowed(&[russh::compression::NONE]),
            ..Preferred::DEFAULT
        },
        nodelay: true,
        // A node that stops answering (paused, killed) is noticed within a minute instead of never.
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        ..Default::default()
    })
}
