//! A shell on a node for a person at a terminal: what `kthw ssh NAME NODE` opens.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use russh::ChannelMsg;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::{Session, SshError};

/// OpenSSH's convention when no exit status arrives (the shell was killed, the connection dropped).
const NO_STATUS: u32 = 255;
/// How soon the stdin reader notices that the shell has ended.
const STDIN_POLL: Duration = Duration::from_millis(100);

impl Session {
    /// Opens a login shell with the local terminal's size, the terminal in raw mode while it runs, resizes
    /// passed on, and returns the shell's exit status. Without a terminal on stdin it runs the shell on plain
    /// pipes, as `ssh -T` would.
    pub async fn interactive(&self) -> Result<u32, SshError> {
        let (_permit, mut log) = self.begin("interactive shell").await;
        let tty = is_tty();
        let mut channel = self.open_session("open a shell").await?;
        if tty {
            let (cols, rows) = window_size();
            let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
            channel
                .request_pty(true, &term, cols, rows, 0, 0, &[])
                .await
                .map_err(|e| self.protocol("request a terminal".into(), e))?;
        }
        channel.request_shell(true).await.map_err(|e| self.protocol("start a shell".into(), e))?;
        let _raw = if tty { Some(RawMode::enable()?) } else { None };

        let mut resized = signal(SignalKind::window_change())
            .map_err(|source| SshError::Terminal { what: "watch resizes", source })?;
        let mut stdin = Stdin::spawn()?;
        let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
        let mut stdin_open = true;
        let mut status = None;
        loop {
            tokio::select! {
                read = stdin.chunks.recv(), if stdin_open => match read {
                    Some(chunk) if !chunk.is_empty() => {
                        channel.data(&chunk[..]).await.map_err(|e| self.protocol("send input".into(), e))?
                    }
                    _ => {
                        stdin_open = false;
                        let _ = channel.eof().await;
                    }
                },
                _ = resized.recv() => {
                    let (cols, rows) = window_size();
                    let _ = channel.window_change(cols, rows, 0, 0).await;
                }
                msg = channel.wait() => match msg {
                    None => break,
                    Some(ChannelMsg::Data { data }) => {
                        let _ = stdout.write_all(&data).await;
                        let _ = stdout.flush().await;
                    }
                    Some(ChannelMsg::ExtendedData { data, .. }) => {
                        let _ = stderr.write_all(&data).await;
                        let _ = stderr.flush().await;
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                    Some(_) => {}
                },
            }
        }
        let status = status.unwrap_or(NO_STATUS);
        log.note(&format!("interactive shell ended with status {status}"));
        Ok(status)
    }
}

/// The local stdin, read on a thread of its own that stops soon after the session ends. Not tokio's stdin: its
/// read cannot be cancelled, and would hold up the runtime's shutdown (and `kthw ssh`'s exit) until the person
/// pressed a key after the remote shell had already ended.
struct Stdin {
    /// Chunks as read; an empty chunk (or the sender gone) is the end of input.
    chunks: mpsc::Receiver<Vec<u8>>,
    stop: Arc<AtomicBool>,
}

impl Stdin {
    fn spawn() -> Result<Stdin, SshError> {
        let (tx, chunks) = mpsc::channel(4);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("kthw-ssh-stdin".into())
            .spawn(move || {
                let mut stdin = std::io::stdin().lock();
                let mut buf = vec![0u8; 16 * 1024];
                while !stopped.load(Ordering::Relaxed) {
                    // Only read what is there, so the loop gets to check `stopped` again.
                    if !readable(libc::STDIN_FILENO, STDIN_POLL) {
                        continue;
                    }
                    let chunk = match stdin.read(&mut buf) {
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => Vec::new(),
                        Ok(n) => buf[..n].to_vec(),
                    };
                    let end = chunk.is_empty();
                    if tx.blocking_send(chunk).is_err() || end {
                        break;
                    }
                }
            })
            .map_err(|source| SshError::Terminal { what: "start reading the terminal", source })?;
        Ok(Stdin { chunks, stop })
    }
}

impl Drop for Stdin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Whether `fd` has input (or an end of input, or an error) within `wait`.
fn readable(fd: libc::c_int, wait: Duration) -> bool {
    let mut pollfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let millis = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll reads and writes the one pollfd we own.
    unsafe { libc::poll(&mut pollfd, 1, millis) > 0 }
}

fn is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// Columns and rows of the terminal on stdout (80x24 when it has none).
fn window_size() -> (u32, u32) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 && ws.ws_row > 0 {
        (u32::from(ws.ws_col), u32::from(ws.ws_row))
    } else {
        (80, 24)
    }
}

/// The local terminal in raw mode (keys go to the remote shell as typed, ^C included), restored on drop even
/// when the session ends with an error.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    fn enable() -> Result<RawMode, SshError> {
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr fills the termios we own; stdin is a terminal (checked by the caller).
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return Err(SshError::Terminal { what: "read terminal settings", source: std::io::Error::last_os_error() });
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the copy; tcsetattr applies it to our own stdin.
        unsafe { libc::cfmakeraw(&mut raw) };
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            return Err(SshError::Terminal { what: "enter raw mode", source: std::io::Error::last_os_error() });
        }
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in enable().
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved) };
    }
}
