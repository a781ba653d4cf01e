//! Downloading one file over HTTP(S) into a `.part` file: retries with exponential backoff, resuming what the
//! `.part` file already holds with a Range request, a stall (no bytes for a while) ended and retried, and progress
//! on a terminal. Verifying the sum is the cache's job ([`super::Cache::verify`]); this only moves bytes.
//!
//! HTTP behaviour relied on (RFC 9110): a Range request (§14.2) may be answered 206 with a Content-Range naming
//! the bytes sent (§14.4, §15.3.7), or 200 with the whole representation when the server ignores Range (§14.2:
//! "A server MAY ignore the Range header field"), or 416 with `Content-Range: bytes */<length>` when the range
//! starts at or past the end (§15.5.17).

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ureq::http::{header, StatusCode};

/// How hard to try. The defaults suit a nightly runner on a bad network; tests shrink every duration.
#[derive(Debug, Clone)]
pub struct Download {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The wait before the second try; it doubles before each further one, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Establishing the connection, TLS included.
    pub connect_timeout: Duration,
    /// No bytes at all for this long (waiting for the response or inside the body) ends the try.
    pub stall_timeout: Duration,
    /// Honour `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (ureq's default). Tests turn it off so that, whatever the
    /// environment says, nothing but their loopback server is contacted.
    pub proxy_from_env: bool,
}

impl Default for Download {
    fn default() -> Download {
        Download {
            attempts: 6,
            first_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
            proxy_from_env: true,
        }
    }
}

/// Why a download failed for good.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "the server answered {status}, which asking again will not change: check the URL (with a mirror, that it \
         serves the upstream URL's path under the mirror URL)"
    )]
    Refused { status: StatusCode },
    #[error("gave up after {attempts} attempts; the last one failed as follows")]
    GaveUp {
        attempts: u32,
        #[source]
        last: Attempt,
    },
    #[error("the request cannot be made (a malformed URL or proxy setting, a TLS or redirect failure)")]
    Request(#[source] ureq::Error),
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why one try failed in a way that another try may not.
#[derive(Debug, thiserror::Error)]
pub enum Attempt {
    #[error("the server answered {0}")]
    Status(StatusCode),
    #[error("no connection or no response")]
    Connect(#[source] ureq::Error),
    #[error("no bytes for {0:?}")]
    Stalled(Duration),
    #[error("the body broke off after {got} bytes")]
    Body {
        got: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("the body ended after {got} of {expected} bytes")]
    Short { got: u64, expected: u64 },
    #[error("asked for the bytes from {asked} on, the server sent a range starting at {sent:?}")]
    WrongRange { asked: u64, sent: Option<u64> },
    #[error("the server cannot serve the bytes from {asked} on (416): the partial file is discarded")]
    Unsatisfiable { asked: u64 },
}

impl Download {
    /// Downloads `url` into `part`, continuing what `part` already holds; `label` names it in progress and logs.
    /// Returns the file's size. On failure `part` keeps what arrived, for the next call to resume.
    pub fn fetch(&self, url: &str, part: &Path, label: &str) -> Result<u64, DownloadError> {
        let agent = self.agent();
        let mut backoff = self.first_backoff;
        for attempt in 1..=self.attempts.max(1) {
            let failure = match self.try_once(&agent, url, part, label)? {
                Ok(size) => return Ok(size),
                Err(failure) => failure,
            };
            if attempt == self.attempts.max(1) {
                return Err(DownloadError::GaveUp { attempts: attempt, last: failure });
            }
            tracing::warn!(
                "{label}: try {attempt} of {} failed: {}; retrying in {backoff:?}",
                self.attempts,
                chain(&failure)
            );
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(self.max_backoff);
        }
        unreachable!("the last attempt returns")
    }

    pub(crate) fn agent(&self) -> ureq::Agent {
        let mut config = ureq::Agent::config_builder()
            // Statuses are classified below: 404 is final, 5xx is retried.
            .http_status_as_error(false)
            .timeout_connect(Some(self.connect_timeout))
            .timeout_per_read(Some(self.stall_timeout))
            .timeout_recv_response(Some(self.stall_timeout));
        if !self.proxy_from_env {
            config = config.proxy(None);
        }
        config.build().into()
    }

    /// One request. The outer error is final; the inner one is worth another try.
    fn try_once(
        &self,
        agent: &ureq::Agent,
        url: &str,
        part: &Path,
        label: &str,
    ) -> Result<Result<u64, Attempt>, DownloadError> {
        let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let mut request = agent.get(url);
        if have > 0 {
            request = request.header(header::RANGE, format!("bytes={have}-"));
            tracing::info!("{label}: resuming from byte {have}");
        }
        let mut response = match request.call() {
            Ok(r) => r,
            Err(e) => return retryable(e).map(Err),
        };
        let status = response.status();
        let content_range = response.headers().get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok());
        let (append, total) = match status {
            StatusCode::OK => {
                if have > 0 {
                    tracing::info!("{label}: the server ignored the Range request; starting over");
                }
                (false, response.body().content_length())
            }
            StatusCode::PARTIAL_CONTENT => {
                let (start, total) = content_range.map_or((None, None), parse_content_range);
                if start != Some(have) {
                    discard(part)?;
                    return Ok(Err(Attempt::WrongRange { asked: have, sent: start }));
                }
                (true, total)
            }
            StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
                // `bytes */<length>`: a previous run got every byte and stopped before moving the file into place.
                if content_range.and_then(|c| c.strip_prefix("bytes */")).and_then(|n| n.parse().ok()) == Some(have) {
                    return Ok(Ok(have));
                }
                discard(part)?;
                return Ok(Err(Attempt::Unsatisfiable { asked: have }));
            }
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS => {
                return Ok(Err(Attempt::Status(s)));
            }
            s => return Err(DownloadError::Refused { status: s }),
        };
        let write_err = |source| DownloadError::Write { path: part.to_path_buf(), source };
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(part)
            .map_err(write_err)?;
        let start = if append { have } else { 0 };
        let mut progress = Progress::new(label, start, total);
        let got = match copy(&mut response.body_mut().as_reader(), &mut file, start, &mut progress, self.stall_timeout)
        {
            Ok(Ok(n)) => n,
            Ok(Err(a)) => return Ok(Err(a)),
            Err(e) => return Err(write_err(e)),
        };
        file.sync_all().map_err(write_err)?;
        progress.finish();
        match total {
            Some(expected) if got != expected => Ok(Err(Attempt::Short { got, expected })),
            _ => Ok(Ok(got)),
        }
    }
}

/// Copies the body to the file; the outer error is the file's, the inner one the network's.
fn copy(
    body: &mut impl Read,
    file: &mut File,
    mut got: u64,
    progress: &mut Progress,
    stall: Duration,
) -> std::io::Result<Result<u64, Attempt>> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(Ok(got)),
            Ok(n) => n,
            Err(e) => {
                let failure = match ureq::Error::from(e) {
                    ureq::Error::Timeout(_) => Attempt::Stalled(stall),
                    other => Attempt::Body { got, source: other.into_io() },
                };
                return Ok(Err(failure));
            }
        };
        file.write_all(&buf[..n])?;
        got += n as u64;
        progress.update(got);
    }
}

/// Whether a ureq error is worth another try (connection refused or reset, DNS, timeouts, a garbled
/// response), or final (a bad URL, TLS, redirects).
fn retryable(e: ureq::Error) -> Result<Attempt, DownloadError> {
    match e {
        ureq::Error::Timeout(_)
        | ureq::Error::Io(_)
        | ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::Protocol(_) => Ok(Attempt::Connect(e)),
        other => Err(DownloadError::Request(other)),
    }
}

/// `bytes <first>-<last>/<length or *>` → (first, length).
fn parse_content_range(value: &str) -> (Option<u64>, Option<u64>) {
    let Some(spec) = value.strip_prefix("bytes ") else { return (None, None) };
    let (range, length) = spec.split_once('/').unwrap_or((spec, "*"));
    let first = range.split_once('-').and_then(|(f, _)| f.trim().parse().ok());
    (first, length.trim().parse().ok())
}

fn discard(part: &Path) -> Result<(), DownloadError> {
    match std::fs::remove_file(part) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(DownloadError::Write { path: part.to_path_buf(), source: e })
        }
        _ => Ok(()),
    }
}

/// An error and its causes on one line, for a log line about a try that will be retried.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Progress of one body: a line redrawn in place on a terminal, a log line every few seconds otherwise.
struct Progress {
    label: String,
    total: Option<u64>,
    started: Instant,
    start: u64,
    last: Instant,
    terminal: bool,
    shown: bool,
}

impl Progress {
    fn new(label: &str, start: u64, total: Option<u64>) -> Progress {
        let now = Instant::now();
        Progress {
            label: label.to_string(),
            total,
            started: now,
            start,
            last: now,
            terminal: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn update(&mut self, got: u64) {
        let every = if self.terminal { Duration::from_millis(200) } else { Duration::from_secs(10) };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let line = progress_line(&self.label, got, self.total, self.rate(got));
        if self.terminal {
            eprint!("\r{line}\x1b[K");
            self.shown = true;
        } else {
            tracing::info!("{line}");
        }
    }

    fn rate(&self, got: u64) -> f64 {
        (got - self.start) as f64 / self.started.elapsed().as_secs_f64().max(0.001)
    }

    fn finish(&mut self) {
        if self.shown {
            eprintln!();
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

fn progress_line(label: &str, got: u64, total: Option<u64>, bytes_per_s: f64) -> String {
    let got_mib = got as f64 / MIB;
    let rate = bytes_per_s / MIB;
    match total {
        Some(t) if t > 0 => {
            let pct = got.saturating_mul(100) / t;
            format!("{label}: {pct:>3}% {got_mib:.1} of {:.1} MiB, {rate:.1} MiB/s", t as f64 / MIB)
        }
        _ => format!("{label}: {got_mib:.1} MiB, {rate:.1} MiB/s"),
    }
}

#[cfg(test)]
#[path = "download_tests.rs"]
mod tests;
