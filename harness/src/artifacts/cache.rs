//! A directory of artifacts: where each one lives, whether it is there and verified, and fetching it.
//! Files come with `curl` (progress on a terminal), images with `skopeo`, pulled by digest.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Artifact, ArtifactError, Checksum, Kind, Manifest};
use crate::phase::Phase;
use crate::spec::ClusterSpec;

/// An artifact directory: the user's cache, or an air-gapped directory used as is.
#[derive(Debug, Clone)]
pub struct Cache {
    pub dir: PathBuf,
    /// Given with `--artifacts-dir`: nothing is downloaded into it by a run.
    pub air_gapped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Present, and verified against the pinned sum.
    Cached,
    /// Present, but not (or not against the current sum) verified: `fetch` verifies it.
    Unverified,
    Absent,
}

#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub artifact: &'a Artifact,
    pub path: PathBuf,
    pub state: State,
}

/// An artifact a run needs and does not have, with the command that provides it.
#[derive(Debug, Clone)]
pub struct Missing<'a> {
    pub artifact: &'a Artifact,
    pub path: PathBuf,
    pub command: String,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError {
    let path = path.to_path_buf();
    move |source| ArtifactError::Io { action, path, source }
}

fn marker(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".verified");
    PathBuf::from(s)
}

fn part(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

impl Cache {
    pub fn new(dir: PathBuf) -> Cache {
        Cache { dir, air_gapped: false }
    }

    pub fn air_gapped(dir: PathBuf) -> Cache {
        Cache { dir, air_gapped: true }
    }

    /// Where `a` lives in this directory.
    pub fn path_of(&self, a: &Artifact) -> PathBuf {
        match a.kind {
            Kind::File => {
                let file = a.locator().rsplit('/').next().unwrap_or(&a.name);
                self.dir.join(&a.name).join(&a.upstream_version).join(file)
            }
            Kind::Image => self.dir.join("images").join(format!("{}-{}.oci.tar", a.name, a.upstream_version)),
        }
    }

    pub fn state_of(&self, a: &Artifact) -> State {
        let path = self.path_of(a);
        if !path.is_file() {
            return State::Absent;
        }
        let verified = std::fs::read_to_string(marker(&path)).ok();
        match (verified, a.sum()) {
            (Some(v), Ok(sum)) if v.trim() == sum.to_string() => State::Cached,
            _ => State::Unverified,
        }
    }

    /// Every artifact of `manifest` with its state here.
    pub fn status<'a>(&self, manifest: &'a Manifest) -> Vec<Entry<'a>> {
        manifest
            .artifacts
            .iter()
            .map(|a| Entry { artifact: a, path: self.path_of(a), state: self.state_of(a) })
            .collect()
    }

    /// The command that puts `a` into this directory.
    pub fn command_for(&self, a: &Artifact) -> String {
        if let Err(e) = a.sum() {
            return format!("none: {e}");
        }
        let fetch = format!("kthw artifacts fetch --dir {}", self.dir.display());
        if self.air_gapped {
            format!("{fetch}  (on a machine that can reach {}, then copy the directory here)", a.locator())
        } else {
            fetch
        }
    }

    /// What the phases up to `until` need and this directory does not verifiably hold. `kthw up` calls this
    /// before booting any VM.
    pub fn missing<'a>(&self, manifest: &'a Manifest, spec: &ClusterSpec, until: Phase) -> Vec<Missing<'a>> {
        manifest
            .needed_until(spec, until)
            .into_iter()
            .filter(|a| self.state_of(a) != State::Cached)
            .map(|a| Missing { artifact: a, path: self.path_of(a), command: self.command_for(a) })
            .collect()
    }

    /// Makes `a` present and verified: verifies what is there, else downloads it. Returns its path.
    pub fn fetch(&self, a: &Artifact) -> Result<PathBuf, ArtifactError> {
        let sum = a.sum()?;
        let path = self.path_of(a);
        match self.state_of(a) {
            State::Cached => return Ok(path),
            State::Unverified if a.kind == Kind::File => {
                self.verify(a, &path, &sum)?;
                return Ok(path);
            }
            _ => {}
        }
        let dir = path.parent().expect("artifact paths have a parent");
        std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let tmp = part(&path);
        let _ = std::fs::remove_file(&tmp);
        match a.kind {
            Kind::File => download(a, &tmp)?,
            Kind::Image => pull(a, &sum, &tmp)?,
        }
        std::fs::rename(&tmp, &path).map_err(io_err("move into place", &path))?;
        match a.kind {
            Kind::File => self.verify(a, &path, &sum)?,
            // skopeo checked every blob against the digest it pulled by; record that.
            Kind::Image => write_marker(&path, &sum)?,
        }
        Ok(path)
    }

    /// Hashes the file at `path`; on a mismatch deletes it and fails showing both sums.
    pub fn verify(&self, a: &Artifact, path: &Path, expected: &Checksum) -> Result<(), ArtifactError> {
        tracing::info!("verifying {} ({})", a.name, path.display());
        let actual = Checksum::of_file(expected.algorithm, path).map_err(io_err("hash", path))?;
        if &actual != expected {
            let _ = std::fs::remove_file(marker(path));
            std::fs::remove_file(path).map_err(io_err("delete the mismatching file", path))?;
            return Err(ArtifactError::Mismatch {
                name: a.name.clone(),
                path: path.to_path_buf(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        write_marker(path, expected)
    }
}

fn write_marker(path: &Path, sum: &Checksum) -> Result<(), ArtifactError> {
    let m = marker(path);
    std::fs::write(&m, format!("{sum}\n")).map_err(io_err("write", &m))
}

fn download(a: &Artifact, to: &Path) -> Result<(), ArtifactError> {
    let url = a.locator();
    tracing::info!("downloading {} from {url}", a.name);
    let progress = if std::io::stderr().is_terminal() { "--progress-bar" } else { "--silent" };
    let out = Command::new("curl")
        .args(["--fail", "--location", "--show-error", "--connect-timeout", "30", progress, "--output"])
        .arg(to)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|c| c.wait_with_output());
    let fail = |detail: String| {
        let _ = std::fs::remove_file(to);
        ArtifactError::Download { name: a.name.clone(), url: url.to_string(), detail }
    };
    match out {
        Err(e) => Err(fail(format!("cannot run curl ({e}); install curl"))),
        Ok(o) if !o.status.success() => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            // With --progress-bar, stderr holds the bar too; the error is the last line.
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
            Err(fail(format!("curl exited with {}: {last}", o.status)))
        }
        Ok(_) => Ok(()),
    }
}

fn pull(a: &Artifact, digest: &Checksum, to: &Path) -> Result<(), ArtifactError> {
    let reference = a.locator();
    let repo = reference.rsplit_once(':').map_or(reference, |(r, _)| r);
    let src = format!("docker://{repo}@{digest}");
    tracing::info!("pulling {} as {src}", a.name);
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", &src])
        .arg(format!("oci-archive:{}:{reference}", to.display()))
        .status();
    let fail = |detail: String| {
        let _ = std::fs::remove_file(to);
        ArtifactError::Pull { reference: format!("{reference}@{digest}"), detail }
    };
    match status {
        Err(e) => Err(fail(format!("cannot run skopeo ({e}); install it (`apt-get install skopeo`)"))),
        Ok(s) if !s.success() => Err(fail(format!("skopeo copy {src} exited with {s}"))),
        Ok(_) => Ok(()),
    }
}
