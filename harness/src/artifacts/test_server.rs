//! A real HTTP/1.1 server on 127.0.0.1 for the download tests, with scripted misbehaviour: each request gets
//! the next reply of the script, and every request after the script is served correctly. It records what each
//! request asked for. Nothing here ever listens or connects beyond loopback.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Download;

/// Fast retries and a short stall, so that every misbehaviour costs milliseconds; no proxy from the environment.
pub fn quick() -> Download {
    Download {
        attempts: 4,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        connect_timeout: Duration::from_secs(2),
        stall_timeout: Duration::from_millis(300),
        proxy_from_env: false,
    }
}

/// A loopback port that refuses every connection and stays this test's while the guard lives: bound, never
/// listening. A port freed by dropping a listener could be bound at once by another test's [`Server`], which then
/// answered the connections meant to be refused and counted a request it never expected (two tests failed so,
/// once each, in a parallel run).
pub struct RefusedPort {
    _socket: std::os::fd::OwnedFd,
    pub port: u16,
}

pub fn refused_port() -> RefusedPort {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns from creation; each result is checked, and
    // the address structures are the sizes the calls are told.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let socket = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = libc::bind(fd, &addr as *const libc::sockaddr_in as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "bind 127.0.0.1:0: {}", std::io::Error::last_os_error());
        let mut len = len;
        let rc = libc::getsockname(fd, &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr, &mut len);
        assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
        RefusedPort { _socket: socket, port: u16::from_be(addr.sin_port) }
    }
}

/// How the server answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The body, honouring `Range: bytes=N-` with 206 (or 416 past the end).
    Serve,
    /// Headers for the whole (remaining) body, then only this many bytes of it, then the connection closes.
    Truncate(usize),
    /// Headers and this many bytes of the body, then nothing while the connection stays open.
    StallAfter(usize),
    /// Accepts the request and never answers.
    Silent,
    /// Only this status, with a short text body.
    Status(u16),
    /// A body of the right length with different bytes.
    Wrong,
    /// The whole body with 200, whatever Range asked for.
    IgnoreRange,
}

/// What one request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
}

pub struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// How long a stalled or silent connection is held open: far longer than any test's stall timeout.
pub const HOLD: Duration = Duration::from_secs(5);

impl Server {
    /// Serves `body` at every path, answering requests with `script` in order, then with [`Reply::Serve`].
    pub fn start(body: Vec<u8>, script: &[Reply]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let body = Arc::new(body);
        let script = script.to_vec();
        let log = seen.clone();
        std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { continue };
                let reply = script.get(n).copied().unwrap_or(Reply::Serve);
                let (body, log) = (body.clone(), log.clone());
                std::thread::spawn(move || answer(conn, reply, &body, &log));
            }
        });
        Server { port, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn answer(mut conn: TcpStream, reply: Reply, body: &[u8], log: &Mutex<Vec<Seen>>) {
    let Some(seen) = read_request(&mut conn) else { return };
    let start = seen.range.as_deref().and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.strip_suffix('-'));
    let start: Option<usize> = start.and_then(|s| s.parse().ok());
    log.lock().unwrap().push(seen);
    let len = body.len();
    let head = |status: &str, extra: &str, length: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {length}\r\n{extra}Connection: close\r\n\r\n")
    };
    // The part of the body this reply is about, and its headers.
    let (head, part) = match (reply, start) {
        (Reply::Silent, _) => {
            std::thread::sleep(HOLD);
            return;
        }
        (Reply::Status(code), _) => {
            let text = format!("status {code}\n");
            let _ = conn.write_all(head(&format!("{code} Scripted"), "", text.len()).as_bytes());
            let _ = conn.write_all(text.as_bytes());
            return;
        }
        (Reply::Wrong, _) => {
            let wrong: Vec<u8> = body.iter().map(|b| b ^ 0xff).collect();
            let _ = conn.write_all(head("200 OK", "", len).as_bytes());
            let _ = conn.write_all(&wrong);
            return;
        }
        (Reply::IgnoreRange, _) | (_, None) => (head("200 OK", "", len), body),
        (_, Some(s)) if s >= len => {
            let _ = conn.write_all(
                head("416 Range Not Satisfiable", &format!("Content-Range: bytes */{len}\r\n"), 0).as_bytes(),
            );
            return;
        }
        (_, Some(s)) => {
            let range = format!("Content-Range: bytes {s}-{}/{len}\r\n", len - 1);
            (head("206 Partial Content", &range, len - s), &body[s..])
        }
    };
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    match reply {
        Reply::Truncate(n) => {
            let _ = conn.write_all(&part[..n.min(part.len())]);
        }
        Reply::StallAfter(n) => {
            let _ = conn.write_all(&part[..n.min(part.len())]);
            let _ = conn.flush();
            std::thread::sleep(HOLD);
        }
        _ => {
            let _ = conn.write_all(part);
        }
    }
}

/// Reads one request's head; returns its path and Range header.
fn read_request(conn: &mut TcpStream) -> Option<Seen> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.split("\r\n");
    let path = lines.next()?.split_whitespace().nth(1)?.to_string();
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("range"))
        .map(|(_, v)| v.trim().to_string());
    Some(Seen { path, range })
}
