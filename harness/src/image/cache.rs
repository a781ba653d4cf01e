//! The image cache: one directory per key under `Paths::images()`, a lock file per key, and build
//! directories (`.build-<key>-<pid>`) that only become an image by being renamed into place.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::manifest::{ImageManifest, MANIFEST};
use super::{BuildOptions, ImageError, NodeImage};
use crate::paths::Paths;

/// The current recipe's image, if it is built.
pub fn cached(paths: &Paths) -> Result<Option<NodeImage>, ImageError> {
    let key = BuildOptions::default().recipe()?.key();
    image_at(&paths.images().join(&key))
}

/// The image with recipe key `key`, if it is built (a bundle names the key its cluster booted from).
pub fn cached_key(paths: &Paths, key: &str) -> Result<Option<NodeImage>, ImageError> {
    if key.is_empty() || key.contains(['/', '.']) {
        return Ok(None);
    }
    image_at(&paths.images().join(key))
}

/// The image in `dir`, if it is complete: a manifest and every file it promises.
pub(super) fn image_at(dir: &Path) -> Result<Option<NodeImage>, ImageError> {
    if !dir.join(MANIFEST).is_file() {
        return Ok(None);
    }
    let image = NodeImage::at(dir, ImageManifest::read(dir)?);
    let complete = [&image.disk, &image.kernel, &image.initrd, &image.debian_initrd].iter().all(|p| p.is_file());
    Ok(complete.then_some(image))
}

/// An exclusive lock on one key, held until dropped; blocks while another build of that key runs.
pub(super) struct KeyLock {
    _file: File,
}

impl KeyLock {
    pub(super) fn acquire(images: &Path, key: &str, wait: bool) -> Result<Option<KeyLock>, ImageError> {
        std::fs::create_dir_all(images).map_err(|e| ImageError::io("creating", images, e))?;
        let path = lock_path(images, key);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::io("opening lock", &path, e))?;
        let op = if wait { libc::LOCK_EX } else { libc::LOCK_EX | libc::LOCK_NB };
        match crate::files::flock(&file, op) {
            Ok(true) => Ok(Some(KeyLock { _file: file })),
            Ok(false) => Ok(None),
            Err(err) => Err(ImageError::io("locking", &path, err)),
        }
    }
}

fn lock_path(images: &Path, key: &str) -> PathBuf {
    images.join(format!(".{key}.lock"))
}

/// A build directory of `key` (`.build-<key>-<pid>`) or an image being replaced (`.old-<key>-<pid>`).
pub(super) fn is_leftover_of(name: &str, key: &str) -> bool {
    [".build-", ".old-"]
        .iter()
        .any(|p| name.strip_prefix(p).and_then(|r| r.strip_prefix(key)).is_some_and(|r| r.starts_with('-')))
}

/// One cached image, as `kthw image list` shows it.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub key: String,
    pub dir: PathBuf,
    /// Bytes on disk (the qcow2 is sparse-free, the others are plain files).
    pub size_bytes: u64,
    pub built_at: String,
    pub kernel_version: String,
    pub packages: usize,
    /// Built from the recipe this binary carries.
    pub current: bool,
}

/// Every complete image in the cache, newest first.
pub fn list(paths: &Paths) -> Result<Vec<ImageInfo>, ImageError> {
    let current = BuildOptions::default().recipe()?.key();
    let mut out = Vec::new();
    for dir in image_dirs(&paths.images())? {
        let Ok(Some(image)) = image_at(&dir) else { continue };
        out.push(ImageInfo {
            size_bytes: dir_size(&dir),
            built_at: image.manifest.built_at.clone(),
            kernel_version: image.manifest.kernel_version.clone(),
            packages: image.manifest.packages.len(),
            current: image.key == current,
            key: image.key,
            dir,
        });
    }
    out.sort_by(|a, b| b.built_at.cmp(&a.built_at));
    Ok(out)
}

/// What prune removed.
#[derive(Debug, Clone)]
pub struct Pruned {
    pub path: PathBuf,
    pub bytes: u64,
}

/// Removes every image but the current recipe's, and what killed builds left, skipping any key whose
/// lock is held (a build in progress). Overlays of running nodes on a removed image stop working.
pub fn prune(paths: &Paths) -> Result<Vec<Pruned>, ImageError> {
    let images = paths.images();
    let current = BuildOptions::default().recipe()?.key();
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(&images) else { return Ok(removed) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.ends_with(".lock") || !path.is_dir() {
            continue;
        }
        let key = key_of(&name);
        if key == current && !name.starts_with('.') {
            continue;
        }
        let Some(_lock) = KeyLock::acquire(&images, key, false)? else {
            tracing::info!(path = %path.display(), "skipped: a build of this key is running");
            continue;
        };
        let bytes = dir_size(&path);
        std::fs::remove_dir_all(&path).map_err(|e| ImageError::io("removing", &path, e))?;
        if key != current {
            // Nothing builds an old recipe's key again; the current key's lock file must stay, or a later
            // build could lock a new file while another still holds the old one.
            let _ = std::fs::remove_file(lock_path(&images, key));
        }
        removed.push(Pruned { path, bytes });
    }
    Ok(removed)
}

/// The key a cache entry belongs to: `<key>`, `.build-<key>-<pid>` or `.old-<key>-<pid>`.
fn key_of(name: &str) -> &str {
    match name.strip_prefix(".build-").or_else(|| name.strip_prefix(".old-")) {
        Some(rest) => rest.rsplit_once('-').map_or(rest, |(k, _)| k),
        None => name,
    }
}

fn image_dirs(images: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let Ok(entries) = std::fs::read_dir(images) else { return Ok(Vec::new()) };
    Ok(entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect())
}

/// Allocated bytes under `dir` (what the disk really holds; the root disk is sparse).
pub(super) fn dir_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_told_apart_from_images_and_other_keys() {
        assert!(is_leftover_of(".build-bookworm-0123-77", "bookworm-0123"));
        assert!(is_leftover_of(".old-bookworm-0123-77", "bookworm-0123"));
        assert!(!is_leftover_of("bookworm-0123", "bookworm-0123"));
        assert!(!is_leftover_of(".build-bookworm-01234-77", "bookworm-0123"));
        assert_eq!(key_of(".build-bookworm-0123-77"), "bookworm-0123");
        assert_eq!(key_of(".old-bookworm-0123-77"), "bookworm-0123");
        assert_eq!(key_of("bookworm-0123"), "bookworm-0123");
    }

    #[test]
    fn an_incomplete_image_directory_is_not_an_image() {
        let dir = tempfile::tempdir().unwrap();
        assert!(image_at(dir.path()).unwrap().is_none(), "no manifest");
    }

    #[test]
    fn a_second_lock_on_a_key_is_refused_while_the_first_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let first = KeyLock::acquire(dir.path(), "k", false).unwrap();
        assert!(first.is_some());
        assert!(KeyLock::acquire(dir.path(), "k", false).unwrap().is_none());
        assert!(KeyLock::acquire(dir.path(), "other", false).unwrap().is_some());
        drop(first);
        assert!(KeyLock::acquire(dir.path(), "k", false).unwrap().is_some());
    }
}
