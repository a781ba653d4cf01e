//! The interactive shell (`kthw ssh NAME NODE` without a command) as a person meets it: under a real terminal,
//! its size passed on and followed, typed commands run, the shell's exit status coming back, and the terminal
//! handed back as it was. The client is `kthw-test-shell`, which calls `Session::interactive` as `kthw ssh` does.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kthw::ssh::keys;

use crate::sshd::Sshd;

/// Each step of a conversation with the shell gets this long (a loaded CI host is slow, not this slow).
const STEP: Duration = Duration::from_secs(15);

#[test]
fn a_shell_under_a_terminal_follows_its_size_and_passes_the_exit_status_through() {
    let Some(sshd) = Sshd::start() else { return };
    let pty = Pty::open(100, 30);
    let cooked = pty.local_modes();
    let mut shell = Shell::spawn(&sshd, pty.stdio(), pty.stdio(), pty.stdio(), true);
    let mut screen = Screen { master: pty.master.try_clone().unwrap(), seen: Vec::new() };

    // The arithmetic is done by the remote shell, so the typed line (echoed by the remote terminal) is not
    // mistaken for its output.
    screen.type_line("stty size; echo kthw-$((6*7))");
    screen.wait_for("kthw-42", STEP);
    assert!(screen.text().contains("30 100"), "the remote terminal has the local size:\n{}", screen.text());

    // The person resizes the window: the client is told (SIGWINCH) and tells the node. That races with the
    // typed line, so ask until the new size shows.
    pty.resize(120, 40);
    let started = Instant::now();
    loop {
        screen.type_line("stty size");
        if screen.try_wait_for("40 120", Duration::from_secs(1)) {
            break;
        }
        assert!(started.elapsed() < STEP, "the resize never reached the node:\n{}", screen.text());
    }

    screen.type_line("exit 7");
    let status = shell.wait(STEP, &mut screen);
    assert_eq!(status.code(), Some(7), "the shell's exit status:\n{}", screen.text());
    assert_eq!(pty.local_modes(), cooked, "the terminal is back in the mode it was in before the session");
}

#[test]
fn without_a_terminal_the_shell_reads_stdin_and_passes_the_exit_status_through() {
    let Some(sshd) = Sshd::start() else { return };
    let mut shell = Shell::spawn(&sshd, Stdio::piped(), Stdio::piped(), Stdio::inherit(), false);

    let mut stdin = shell.child.stdin.take().unwrap();
    stdin.write_all(b"echo kthw-$((6*7)); exit 7\n").unwrap();
    drop(stdin);
    let stdout = shell.child.stdout.take().unwrap();
    let mut screen = Screen { master: File::from(OwnedFd::from(stdout)), seen: Vec::new() };
    let status = shell.wait(STEP, &mut screen);
    assert_eq!(status.code(), Some(7), "the shell's exit status; it printed:\n{}", screen.text());
    assert_eq!(screen.text(), "kthw-42\n");
}

/// A pseudo-terminal: the test types on and reads from `master`; the client has the other end as its terminal.
struct Pty {
    master: File,
    slave: OwnedFd,
}

impl Pty {
    fn open(cols: u16, rows: u16) -> Pty {
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: openpty writes two new descriptors, which we take ownership of; no name buffer, default modes.
        let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and nothing else owns them.
        unsafe { Pty { master: File::from_raw_fd(master), slave: OwnedFd::from_raw_fd(slave) } }
    }

    fn stdio(&self) -> Stdio {
        Stdio::from(self.slave.try_clone().unwrap())
    }

    fn resize(&self, cols: u16, rows: u16) {
        let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize; the kernel signals the terminal's foreground process group.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// The terminal's local modes (echo, canonical input...), which raw mode changes.
    fn local_modes(&self) -> libc::tcflag_t {
        // SAFETY: tcgetattr fills the termios we own.
        let mut modes: libc::termios = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut modes) };
        assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        modes.c_lflag
    }
}

/// What the client printed so far, read as it comes.
struct Screen {
    master: File,
    seen: Vec<u8>,
}

impl Screen {
    fn type_line(&mut self, line: &str) {
        self.master.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    fn wait_for(&mut self, needle: &str, deadline: Duration) {
        assert!(self.try_wait_for(needle, deadline), "{needle:?} did not appear within {deadline:?}:\n{}", self.text());
    }

    /// Whether `needle` shows up (in what is read from now on) within `deadline`.
    fn try_wait_for(&mut self, needle: &str, deadline: Duration) -> bool {
        let from = self.seen.len();
        let started = Instant::now();
        while started.elapsed() < deadline {
            if self.read_for(deadline.saturating_sub(started.elapsed())).is_none() {
                return false;
            }
            if String::from_utf8_lossy(&self.seen[from..]).contains(needle) {
                return true;
            }
        }
        false
    }

    /// Reads what arrives within `wait`: how many bytes (0 when nothing came), `None` at the end of output.
    fn read_for(&mut self, wait: Duration) -> Option<usize> {
        let mut poll = libc::pollfd { fd: self.master.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let millis = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: poll reads and writes the one pollfd we own.
        if unsafe { libc::poll(&mut poll, 1, millis) } <= 0 {
            return Some(0);
        }
        let mut buf = [0u8; 4096];
        match self.master.read(&mut buf) {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.seen.extend_from_slice(&buf[..n]);
                Some(n)
            }
        }
    }

    /// Reads what is already there.
    fn drain(&mut self) {
        while let Some(1..) = self.read_for(Duration::ZERO) {}
    }
}

/// The client under test; killed if the test gives up on it.
struct Shell {
    child: Child,
}

impl Shell {
    fn spawn(sshd: &Sshd, stdin: Stdio, stdout: Stdio, stderr: Stdio, controlling_terminal: bool) -> Shell {
        let host_key = sshd.dir.path().join("host_key.pub");
        std::fs::write(&host_key, sshd.host_key.public_openssh()).unwrap();
        let client_key = sshd.dir.path().join("client_key");
        keys::write_private(&client_key, &sshd.client_key).unwrap();

        let mut command =
            Command::new(kthw::testing::package_binary("kthw-test-shell", env!("CARGO_BIN_EXE_kthw-test-shell")));
        command
            .arg(sshd.port.to_string())
            .arg(&sshd.target().user)
            .arg(&host_key)
            .arg(&client_key)
            .env("TERM", "xterm")
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr);
        if controlling_terminal {
            // SAFETY: the hook only makes async-signal-safe calls (setsid, ioctl) between fork and exec.
            unsafe { command.pre_exec(take_terminal) };
        }
        Shell { child: command.spawn().expect("start kthw-test-shell") }
    }

    /// Waits for the client to exit, reading its output meanwhile so it never blocks writing.
    fn wait(&mut self, deadline: Duration, screen: &mut Screen) -> std::process::ExitStatus {
        let started = Instant::now();
        let mut open = true;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                screen.drain();
                return status;
            }
            assert!(
                started.elapsed() < deadline,
                "the client did not exit within {deadline:?}; it printed:\n{}",
                screen.text()
            );
            if open {
                open = screen.read_for(Duration::from_millis(50)).is_some();
            } else {
                // Output ended before the process did: poll its state.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In the child: a session of its own with the terminal on stdin as its controlling terminal, as a login
/// terminal gives a shell, so that resizing the terminal signals it.
fn take_terminal() -> std::io::Result<()> {
    // SAFETY: plain system calls on the child's own process and descriptors.
    unsafe {
        if libc::setsid() < 0 || libc::ioctl(libc::STDIN_FILENO, libc::TIOCSCTTY, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
