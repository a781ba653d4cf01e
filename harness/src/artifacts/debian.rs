//! Debian packages of another suite than the node image's, fetched by the host through Debian's package
//! registry (nodes have no egress) with an apt configuration of its own: its own source list, signed by
//! Debian's archive keyring, its own lists and cache under `<cache>/debs-<suite>/apt`, so the host's apt is
//! left as it was. apt checks each download against the suite's signed index; a pinned package is checked
//! again against its pin every time it is used, so a cached file that changed is never installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Algorithm, Checksum};

/// A Debian package pinned by version and by the sha256 its suite's index publishes for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deb {
    pub package: &'static str,
    pub version: &'static str,
    pub suite: &'static str,
    pub sha256: &'static str,
}

impl Deb {
    /// The file name `apt-get download` gives it (amd64, no epoch in these versions).
    pub fn file_name(&self) -> String {
        format!("{}_{}_amd64.deb", self.package, self.version)
    }

    /// How the golden snapshot key and the phase output name it.
    pub fn describe(&self) -> String {
        format!("{} {} ({}) sha256:{}", self.package, self.version, self.suite, self.sha256)
    }
}

/// etcd 3.5 for `etcd_from = "debian"`: the seed pins 3.5.21 and bookworm (the node image) has only 3.4.23, so
/// the etcd phase installs trixie's build. The sums are the `SHA256` fields of trixie's main/binary-amd64
/// Packages index (`apt-cache show etcd-server etcd-client` against trixie, read 2026-12-07; apt verified the
/// index against trixie's InRelease with debian-archive-keyring). Both Depend only on libc6 (>= 2.34) (and
/// adduser), which Debian 12 (glibc 2.36) has: they install on a bookworm node as they are. Debian has no etcd
/// 3.6 (DESIGN.md's table), so the current set, which pins 3.6.14, runs 3.5 with this origin too.
pub const ETCD: [Deb; 2] = [
    Deb {
        package: "etcd-server",
        version: "3.5.16-4",
        suite: "trixie",
        sha256: "0875921bb0d023f2af9b8e15cdfbe417a03e65731345fb832c40f9c2dd72967b",
    },
    Deb {
        package: "etcd-client",
        version: "3.5.16-4",
        suite: "trixie",
        sha256: "7eb67e305ba2ce523a5a0b29bf88750ded3f724769c7111a83382b7909f9977b",
    },
];

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("cannot run apt-get (Debian's package client, which fetches {packages} from Debian {suite}): {source}")]
    Spawn {
        suite: String,
        packages: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`apt-get {args}` against Debian {suite} ({mirror}) failed:\n{stderr}\n\
         a download failure means the mirror is unreachable (KTHW_DEBIAN_MIRROR picks another); a pinned \
         version that is \"not found\" has left the suite: pin the one it has now in harness/src/artifacts/debian.rs"
    )]
    Apt { suite: String, mirror: String, args: String, stderr: String },
    #[error("apt-get download {package} ({suite}) left no {package}_*.deb in {}", dir.display())]
    NotDownloaded { package: String, suite: String, dir: PathBuf },
    #[error(
        "{} has sha256 {got}, not the {want} Debian's index published for {deb} (pinned in \
         harness/src/artifacts/debian.rs); it was deleted, the next run downloads it again",
        path.display()
    )]
    Mismatch { path: PathBuf, deb: String, got: String, want: String },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The Debian packages the phases through `until` install for `spec` (beside the manifest's artifacts).
pub fn needed_until(spec: &crate::spec::ClusterSpec, until: crate::phase::Phase) -> Vec<Deb> {
    let etcd = spec.etcd_from == crate::spec::Origin::Debian && until >= crate::phase::Phase::Etcd;
    if etcd {
        ETCD.to_vec()
    } else {
        Vec::new()
    }
}

/// The node image's Debian mirror (images/debian/recipe.toml), or `KTHW_DEBIAN_MIRROR`.
pub fn mirror() -> String {
    std::env::var("KTHW_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}

/// Where packages of `suite` are kept under the cache directory `cache`.
pub fn suite_dir(cache: &Path, suite: &str) -> PathBuf {
    cache.join(format!("debs-{suite}"))
}

/// The `<package>_*.deb` in `dir`, if one is there.
pub fn find(dir: &Path, package: &str) -> Option<PathBuf> {
    let prefix = format!("{package}_");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|f| f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb")))
}

/// `apt-get download` of `packages` (`name` or `name=version`) from Debian `suite` into `dir`, after an
/// `apt-get update` of that suite alone. One download into a directory at a time (flock on `dir/.lock`):
/// apt's own lock would refuse a second one.
pub fn download(suite: &str, packages: &[String], dir: &Path) -> Result<(), DebError> {
    let mirror = mirror();
    let apt = dir.join("apt");
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| DebError::Io { action, path, source }
    };
    std::fs::create_dir_all(apt.join("lists/partial")).map_err(io("create", &apt))?;
    let lock_path = dir.join(".lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("open", &lock_path))?;
    crate::files::flock(&lock, libc::LOCK_EX).map_err(io("lock", &lock_path))?;
    let sources = apt.join("sources.list");
    let line = format!("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {suite} main\n");
    std::fs::write(&sources, line).map_err(io("write", &sources))?;
    let options = [
        format!("-oDir::Etc::SourceList={}", sources.display()),
        "-oDir::Etc::SourceParts=/dev/null".to_string(),
        format!("-oDir::State::Lists={}", apt.join("lists").display()),
        format!("-oDir::Cache={}", apt.join("cache").display()),
        // Downloads into a directory _apt cannot write are done as root, with a warning, not refused.
        "-oAPT::Sandbox::User=root".to_string(),
    ];
    let run = |args: &[&str]| -> Result<(), DebError> {
        tracing::info!(suite, "apt-get {}", args.join(" "));
        let out = Command::new("apt-get")
            .args(&options)
            .args(["-q", "-y"])
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|source| DebError::Spawn { suite: suite.into(), packages: packages.join(" "), source })?;
        if !out.status.success() {
            return Err(DebError::Apt {
                suite: suite.into(),
                mirror: mirror.clone(),
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    };
    run(&["update"])?;
    let mut args = vec!["download"];
    args.extend(packages.iter().map(String::as_str));
    run(&args)
}

/// The pinned `debs` in `cache`, each downloaded the first time it is asked for and checked against its pin
/// every time; a file that does not match is deleted and refused.
pub fn fetch_pinned(debs: &[Deb], cache: &Path) -> Result<Vec<PathBuf>, DebError> {
    let at = |d: &Deb| suite_dir(cache, d.suite).join(d.file_name());
    let missing: Vec<&Deb> = debs.iter().filter(|d| !at(d).is_file()).collect();
    for suite in missing.iter().map(|d| d.suite).collect::<std::collections::BTreeSet<_>>() {
        let wanted: Vec<String> =
            missing.iter().filter(|d| d.suite == suite).map(|d| format!("{}={}", d.package, d.version)).collect();
        download(suite, &wanted, &suite_dir(cache, suite))?;
    }
    debs.iter()
        .map(|d| {
            let path = at(d);
            if !path.is_file() {
                return Err(DebError::NotDownloaded {
                    package: d.package.into(),
                    suite: d.suite.into(),
                    dir: suite_dir(cache, d.suite),
                });
            }
            verify(d, &path)?;
            Ok(path)
        })
        .collect()
}

/// `path` against the pin of `deb`; deleted when it differs.
pub fn verify(deb: &Deb, path: &Path) -> Result<(), DebError> {
    let got = Checksum::of_file(Algorithm::Sha256, path)
        .map_err(|source| DebError::Io { action: "hash", path: path.to_path_buf(), source })?
        .hex;
    if got == deb.sha256 {
        return Ok(());
    }
    let _ = std::fs::remove_file(path);
    Err(DebError::Mismatch {
        path: path.to_path_buf(),
        deb: format!("{} {} ({})", deb.package, deb.version, deb.suite),
        got,
        want: deb.sha256.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_package_is_named_as_apt_get_download_names_it() {
        assert_eq!(ETCD[0].file_name(), "etcd-server_3.5.16-4_amd64.deb");
        assert!(ETCD.iter().all(|d| d.suite == "trixie" && d.sha256.len() == 64));
        assert!(ETCD.iter().all(|d| d.version.starts_with("3.5.")), "the seed's minor");
    }

    #[test]
    fn a_cached_file_that_differs_from_its_pin_is_refused_and_deleted() {
        let cache = tempfile::tempdir().unwrap();
        let dir = suite_dir(cache.path(), "trixie");
        std::fs::create_dir_all(&dir).unwrap();
        for d in &ETCD {
            std::fs::write(dir.join(d.file_name()), b"not the package").unwrap();
        }
        let err = fetch_pinned(&ETCD, cache.path()).unwrap_err();
        assert!(matches!(&err, DebError::Mismatch { deb, .. } if deb == "etcd-server 3.5.16-4 (trixie)"), "{err}");
        assert!(err.to_string().contains(ETCD[0].sha256), "{err}");
        assert!(!dir.join(ETCD[0].file_name()).exists(), "the bad file is gone");
        assert_eq!(find(&dir, "etcd-client"), Some(dir.join(ETCD[1].file_name())));
    }
}
