//! A PKI on disk: the stable file names from the module docs, private keys 0600.

use std::fs;
use std::path::{Path, PathBuf};

use super::{CertKey, ClusterPki, PkiError, ServiceAccountKey};

pub const CA_STEM: &str = "ca";
pub const SERVICE_ACCOUNT_KEY: &str = "service-account.key";
pub const SERVICE_ACCOUNT_PUB: &str = "service-account.pub";

/// `<dir>/<stem>.crt`
pub fn cert_path(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{stem}.crt"))
}

/// `<dir>/<stem>.key`
pub fn key_path(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{stem}.key"))
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PkiError {
    let path = path.to_path_buf();
    move |source| PkiError::Io { action, path, source }
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    crate::files::write_atomic(path, contents.as_bytes(), mode).map_err(io_err("write", path))
}

fn read_file(dir: &Path, path: PathBuf, stem: &str) -> Result<String, PkiError> {
    fs::read_to_string(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => PkiError::Missing { dir: dir.to_path_buf(), stem: stem.to_string() },
        _ => PkiError::Io { action: "read", path, source },
    })
}

fn write_pair(dir: &Path, stem: &str, ck: &CertKey) -> Result<(), PkiError> {
    write_file(&cert_path(dir, stem), &ck.cert_pem, 0o644)?;
    write_file(&key_path(dir, stem), &ck.key_pem, 0o600)
}

fn read_pair(dir: &Path, stem: &str) -> Result<CertKey, PkiError> {
    Ok(CertKey {
        cert_pem: read_file(dir, cert_path(dir, stem), stem)?,
        key_pem: read_file(dir, key_path(dir, stem), stem)?,
    })
}

impl ClusterPki {
    /// Writes every file into `dir` (created if missing), replacing what is there.
    pub fn write(&self, dir: &Path) -> Result<(), PkiError> {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        write_pair(dir, CA_STEM, &self.ca)?;
        for (stem, ck) in &self.leaves {
            write_pair(dir, stem, ck)?;
        }
        write_file(&dir.join(SERVICE_ACCOUNT_KEY), &self.service_account.private_pem, 0o600)?;
        write_file(&dir.join(SERVICE_ACCOUNT_PUB), &self.service_account.public_pem, 0o644)
    }

    /// Reads back what `write` produced: the CA, the service account pair, and every `<stem>.crt` with its key.
    pub fn load(dir: &Path) -> Result<ClusterPki, PkiError> {
        let ca = read_pair(dir, CA_STEM)?;
        let mut leaves = std::collections::BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let name = entry.map_err(io_err("list", dir))?.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".crt")) else { continue };
            if stem != CA_STEM {
                leaves.insert(stem.to_string(), read_pair(dir, stem)?);
            }
        }
        let service_account = ServiceAccountKey {
            private_pem: read_file(dir, dir.join(SERVICE_ACCOUNT_KEY), "service-account")?,
            public_pem: read_file(dir, dir.join(SERVICE_ACCOUNT_PUB), "service-account")?,
        };
        Ok(ClusterPki { ca, leaves, service_account })
    }
}
