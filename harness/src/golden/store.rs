//! Where golden snapshots live: `<state>/golden/<key>/`, each with a manifest, per node its save image
//! (`nodes/<node>/memory.save`), frozen disk (`disk.qcow2`) and domain XML template (`domain.xml`), and the
//! run-directory files the phases left (`rundir/`: client key, PKI, kubeconfigs, phase records).
//!
//! A snapshot is assembled in `.staging-<key>-<pid>` and renamed into place with its manifest, so a killed
//! builder leaves no `<key>/` at all. A lock file per key (`.<key>.lock`) makes concurrent builders build
//! once (exclusive), keeps a snapshot from being replaced or pruned while a copy is being restored from it
//! (shared), and a marker in each copy's run directory keeps it from being pruned under a running copy.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::key::KeyInputs;
use super::GoldenError;
use crate::cluster::ClusterState;
use crate::paths::Paths;

pub const MANIFEST: &str = "manifest.json";
const STAGING_PREFIX: &str = ".staging-";
/// Large files are checked by size and by the sha256 of their first and last MiB: reading 1.5 GB of save
/// images on every restore would cost more than the restore.
const SAMPLE: u64 = 1024 * 1024;

/// One file of a snapshot, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// Relative to the snapshot directory.
    pub path: String,
    pub size: u64,
    /// sha256 of the whole file when it is at most 2 MiB, else of its first and last MiB.
    pub sha256: String,
}

impl FileSum {
    pub fn of(dir: &Path, rel: &str) -> Result<FileSum, GoldenError> {
        let path = dir.join(rel);
        let io = |e| GoldenError::io("read", &path, e);
        let mut f = File::open(&path).map_err(io)?;
        let size = f.metadata().map_err(io)?.len();
        let mut hash = Sha256::new();
        if size <= 2 * SAMPLE {
            let mut all = Vec::new();
            f.read_to_end(&mut all).map_err(io)?;
            hash.update(&all);
        } else {
            let mut buf = vec![0u8; SAMPLE as usize];
            f.read_exact(&mut buf).map_err(io)?;
            hash.update(&buf);
            f.seek(SeekFrom::Start(size - SAMPLE)).map_err(io)?;
            f.read_exact(&mut buf).map_err(io)?;
            hash.update(&buf);
        }
        Ok(FileSum { path: rel.to_string(), size, sha256: hex::encode(hash.finalize()) })
    }
}

/// One node of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub name: String,
    pub save: FileSum,
    pub disk: FileSum,
    pub template: FileSum,
}

/// What a snapshot holds and what it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldenManifest {
    pub key: String,
    pub inputs: KeyInputs,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// The base image every frozen disk is backed by.
    pub base_image: PathBuf,
    /// The saved cluster's state: its nodes' addresses and pinned host keys, its spec.
    pub state: ClusterState,
    pub nodes: Vec<NodeEntry>,
    /// Run-directory files, under `rundir/`.
    pub files: Vec<FileSum>,
    /// How long saving took, and how long booting and bootstrapping to the phase had taken.
    pub save_ms: u64,
    pub build_ms: Option<u64>,
}

impl GoldenManifest {
    pub fn all_files(&self) -> impl Iterator<Item = &FileSum> {
        self.nodes.iter().flat_map(|n| [&n.save, &n.disk, &n.template]).chain(&self.files)
    }

    pub fn bytes(&self) -> u64 {
        self.all_files().map(|f| f.size).sum()
    }
}

/// The golden directory under `paths`.
pub fn root(paths: &Paths) -> PathBuf {
    paths.state.join("golden")
}

pub fn dir(paths: &Paths, key: &str) -> PathBuf {
    root(paths).join(key)
}

pub fn staging(paths: &Paths, key: &str) -> PathBuf {
    root(paths).join(format!("{STAGING_PREFIX}{key}-{}", std::process::id()))
}

/// A snapshot that is complete and intact, or why not (None: there is none).
pub fn open(paths: &Paths, key: &str) -> Result<Option<GoldenManifest>, GoldenError> {
    let dir = dir(paths, key);
    let path = dir.join(MANIFEST);
    if !dir.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).map_err(|e| GoldenError::Corrupt { dir: dir.clone(), why: format!("{e}") })?;
    let manifest: GoldenManifest = serde_json::from_slice(&bytes)
        .map_err(|e| GoldenError::Corrupt { dir: dir.clone(), why: format!("the manifest does not parse: {e}") })?;
    verify(&dir, &manifest)?;
    Ok(Some(manifest))
}

/// Every file the manifest promises, with its size and sum; and the image the disks are backed by.
pub fn verify(dir: &Path, manifest: &GoldenManifest) -> Result<(), GoldenError> {
    for f in manifest.all_files() {
        let found =
            FileSum::of(dir, &f.path).map_err(|e| GoldenError::Corrupt { dir: dir.into(), why: e.to_string() })?;
        if found.size != f.size {
            let why = format!("{} is {} bytes, the manifest says {}", f.path, found.size, f.size);
            return Err(GoldenError::Corrupt { dir: dir.into(), why });
        }
        if found.sha256 != f.sha256 {
            return Err(GoldenError::Corrupt { dir: dir.into(), why: format!("{} does not match its sum", f.path) });
        }
    }
    if !manifest.base_image.is_file() {
        return Err(GoldenError::ImagePruned {
            key: manifest.key.clone(),
            image_key: manifest.inputs.image_key.clone(),
            base: manifest.base_image.clone(),
        });
    }
    Ok(())
}

/// A lock on one key, held until dropped.
#[derive(Debug)]
pub struct KeyLock(#[allow(dead_code)] File);

impl KeyLock {
    /// Exclusive (building, replacing, pruning) or shared (restoring); `wait: false` returns None when taken.
    pub fn acquire(paths: &Paths, key: &str, exclusive: bool, wait: bool) -> Result<Option<KeyLock>, GoldenError> {
        let root = root(paths);
        std::fs::create_dir_all(&root).map_err(|e| GoldenError::io("create", &root, e))?;
        let path = root.join(format!(".{key}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| GoldenError::io("open", &path, e))?;
        let mut op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
        if !wait {
            op |= libc::LOCK_NB;
        }
        match crate::files::flock(&file, op) {
            Ok(true) => Ok(Some(KeyLock(file))),
            Ok(false) => Ok(None),
            Err(err) => Err(GoldenError::io("lock", &path, err)),
        }
    }
}

/// A snapshot on disk, for `kthw golden list`.
#[derive(Debug)]
pub struct Listed {
    pub key: String,
    pub dir: PathBuf,
    /// Bytes the snapshot's files take on disk (sparse files count what is allocated).
    pub disk_bytes: u64,
    /// The manifest, or why the snapshot cannot be used.
    pub manifest: Result<GoldenManifest, String>,
    /// Clusters restored from it that still have a run directory.
    pub users: Vec<String>,
}

/// Every snapshot under `paths`, by key; unusable ones say why.
pub fn list(paths: &Paths) -> Vec<Listed> {
    let Ok(entries) = std::fs::read_dir(root(paths)) else { return Vec::new() };
    let mut out: Vec<Listed> = entries
        .flatten()
        .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            let key = e.file_name().to_string_lossy().into_owned();
            let manifest = match open(paths, &key) {
                Ok(Some(m)) => Ok(m),
                Ok(None) => Err("vanished".to_string()),
                Err(e) => Err(e.to_string()),
            };
            Listed { disk_bytes: disk_usage(&e.path()), users: users(paths, &key), key, dir: e.path(), manifest }
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Clusters (by name) whose run directory says they were restored from `key`.
pub fn users(paths: &Paths, key: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(paths.runs()) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| {
            let marker = crate::rundir::RunDir::at(e.path()).golden_origin();
            std::fs::read_to_string(marker).is_ok_and(|k| k.trim() == key)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// What `prune` removed.
#[derive(Debug)]
pub struct Pruned {
    pub key: String,
    pub bytes: u64,
}

/// Removes snapshots (those whose key `select` accepts), never one a live copy is backed by or one being
/// built or restored right now; those are reported in the error list with the reason.
pub fn prune(paths: &Paths, select: impl Fn(&str) -> bool) -> (Vec<Pruned>, Vec<(String, String)>) {
    let (mut pruned, mut kept) = (Vec::new(), Vec::new());
    for listed in list(paths).into_iter().filter(|l| select(&l.key)) {
        if !listed.users.is_empty() {
            kept.push((listed.key, format!("in use by {} (`kthw down` them first)", listed.users.join(", "))));
            continue;
        }
        let Ok(Some(_lock)) = KeyLock::acquire(paths, &listed.key, true, false) else {
            kept.push((listed.key, "being built or restored right now".to_string()));
            continue;
        };
        match std::fs::remove_dir_all(&listed.dir) {
            Ok(()) => pruned.push(Pruned { key: listed.key, bytes: listed.disk_bytes }),
            Err(e) => kept.push((listed.key, format!("cannot remove {}: {e}", listed.dir.display()))),
        }
    }
    for dead in dead_staging(paths) {
        let bytes = disk_usage(&dead);
        if std::fs::remove_dir_all(&dead).is_ok() {
            pruned.push(Pruned { key: dead.file_name().unwrap_or_default().to_string_lossy().into_owned(), bytes });
        }
    }
    (pruned, kept)
}

/// Staging directories whose builder is gone.
pub fn dead_staging(paths: &Paths) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root(paths)) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let pid = name.strip_prefix(STAGING_PREFIX).and_then(|r| r.rsplit_once('-')).map(|(_, pid)| pid);
            pid.and_then(|p| p.parse::<u32>().ok()).is_some_and(|pid| crate::virt::Owner::of(pid).is_none())
        })
        .collect()
}

/// Allocated bytes under `dir` (st_blocks), so sparse save images and disks count what they really take.
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return std::fs::symlink_metadata(dir).map(|m| m.blocks() * 512).unwrap_or(0);
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_usage(&e.path()),
            _ => e.metadata().map(|m| m.blocks() * 512).unwrap_or(0),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sum_sees_a_change_at_either_end_and_a_size_change_anywhere() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..5 * SAMPLE as usize).map(|i| (i % 253) as u8).collect();
        std::fs::write(dir.path().join("big"), &big).unwrap();
        let sum = FileSum::of(dir.path(), "big").unwrap();
        let mut tail = big.clone();
        *tail.last_mut().unwrap() ^= 1;
        std::fs::write(dir.path().join("big"), &tail).unwrap();
        assert_ne!(FileSum::of(dir.path(), "big").unwrap().sha256, sum.sha256);
        std::fs::write(dir.path().join("big"), &big[..big.len() - 1]).unwrap();
        assert_ne!(FileSum::of(dir.path(), "big").unwrap().size, sum.size);
        std::fs::write(dir.path().join("small"), b"abc").unwrap();
        assert_eq!(
            FileSum::of(dir.path(), "small").unwrap().sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_half_written_snapshot_is_corrupt_and_an_absent_one_is_none() {
        let home = tempfile::tempdir().unwrap();
        let paths = Paths::under(home.path().to_path_buf());
        assert!(open(&paths, "etcd-0011").unwrap().is_none());
        std::fs::create_dir_all(dir(&paths, "etcd-0011")).unwrap();
        std::fs::write(dir(&paths, "etcd-0011").join(MANIFEST), b"{\"key\":").unwrap();
        let err = open(&paths, "etcd-0011").unwrap_err();
        assert!(matches!(err, GoldenError::Corrupt { .. }), "{err}");
        assert_eq!(list(&paths).len(), 1);
        assert!(list(&paths)[0].manifest.is_err());
    }

    #[test]
    fn an_exclusive_lock_keeps_others_out_and_shared_locks_coexist() {
        let home = tempfile::tempdir().unwrap();
        let paths = Paths::under(home.path().to_path_buf());
        let a = KeyLock::acquire(&paths, "k", false, false).unwrap();
        assert!(a.is_some());
        assert!(KeyLock::acquire(&paths, "k", false, false).unwrap().is_some());
        assert!(KeyLock::acquire(&paths, "k", true, false).unwrap().is_none());
        drop(a);
        let ex = KeyLock::acquire(&paths, "k", true, false).unwrap();
        assert!(ex.is_some());
        assert!(KeyLock::acquire(&paths, "k", false, false).unwrap().is_none());
    }
}
