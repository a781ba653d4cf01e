//! Reading a bundle back (`kthw repro`): its directory or its `.tar.gz`, checked whole before anything is
//! used from it, so a truncated download or a bundle from a newer kthw is refused with what to do instead.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{BundleError, Manifest, FORMAT, LOCK, MANIFEST, SPEC};
use crate::phase::Phase;
use crate::rundir::{Outcome, PhaseRecord};
use crate::spec::ClusterSpec;

/// The run directory's phase records, as the bundle holds them.
const PHASES: &str = "run/phases.jsonl";

/// A bundle that was read whole: its manifest and the spec of the cluster it was made from.
#[derive(Debug, Clone)]
pub struct Opened {
    pub path: PathBuf,
    pub manifest: Manifest,
    pub spec: ClusterSpec,
    /// The lock the run used, when its versions were no preset.
    pub lock: Option<crate::lock::Lock>,
    /// The phase runs the bundle's cluster recorded, oldest first (none when it failed before the first).
    pub phases: Vec<PhaseRecord>,
}

impl Opened {
    /// The furthest phase the bundle's cluster reached or failed in: where a reproduction should go.
    pub fn last_phase(&self) -> Option<Phase> {
        self.phases.iter().map(|r| r.phase).max().or(self.manifest.boot_failed.then_some(Phase::Nodes))
    }

    /// The phase the bundle's run failed in: its last phase record, when that one failed, or the nodes' boot.
    pub fn failed_phase(&self) -> Option<Phase> {
        match self.manifest.boot_failed {
            true => Some(Phase::Nodes),
            false => self.phases.last().filter(|r| r.outcome == Outcome::Failed).map(|r| r.phase),
        }
    }
}

/// Opens a bundle directory or archive.
pub fn open(path: &Path) -> Result<Opened, BundleError> {
    let meta =
        std::fs::metadata(path).map_err(|e| BundleError::NotFound { path: path.to_path_buf(), why: e.to_string() })?;
    let (manifest, spec, phases, lock) = if meta.is_dir() {
        let read = |name: &str| std::fs::read(path.join(name)).ok();
        (read(MANIFEST), read(SPEC), read(PHASES), read(LOCK))
    } else {
        from_archive(path)?
    };
    let not_a_bundle = |why: String| BundleError::NotABundle { path: path.to_path_buf(), why };
    let manifest = manifest.ok_or_else(|| not_a_bundle(format!("it has no {MANIFEST}")))?;
    let manifest = parse_manifest(path, &manifest)?;
    let spec = spec.ok_or_else(|| not_a_bundle(format!("it has no {SPEC}")))?;
    let spec = String::from_utf8_lossy(&spec);
    let spec = ClusterSpec::from_toml_validated(&spec, &format!("{SPEC} of the bundle {}", path.display()))
        .map_err(|e| not_a_bundle(format!("its {SPEC} is not a valid spec: {e}")))?;
    let phases = String::from_utf8_lossy(&phases.unwrap_or_default())
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let lock = lock
        .map(|bytes| crate::lock::Lock::parse(&String::from_utf8_lossy(&bytes), &path.join(LOCK)))
        .transpose()
        .map_err(|e| not_a_bundle(format!("its {LOCK} is not a lock: {e}")))?;
    Ok(Opened { path: path.to_path_buf(), manifest, spec, lock, phases })
}

/// The format is read before the rest: a newer bundle may have fields this kthw does not know, and the error
/// should say "newer", not "unreadable".
fn parse_manifest(path: &Path, bytes: &[u8]) -> Result<Manifest, BundleError> {
    let not_a_bundle = |why: String| BundleError::NotABundle { path: path.to_path_buf(), why };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| not_a_bundle(format!("its {MANIFEST} is not JSON: {e}")))?;
    let format = value.get("format").and_then(serde_json::Value::as_u64);
    let format = format.ok_or_else(|| not_a_bundle(format!("its {MANIFEST} has no format number")))?;
    if format > u64::from(FORMAT) {
        let made_by = value.get("harness_version").and_then(|v| v.as_str()).unwrap_or("unknown").to_string();
        return Err(BundleError::NewerFormat { path: path.to_path_buf(), found: format as u32, made_by });
    }
    serde_json::from_value(value).map_err(|e| not_a_bundle(format!("its {MANIFEST} is malformed: {e}")))
}

/// The manifest and spec from an archive, which is read to its end: a gzip stream checks its length and CRC
/// only there, so this is what tells a truncated archive from a whole one.
type Found = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

fn from_archive(path: &Path) -> Result<Found, BundleError> {
    let truncated = |e: std::io::Error| BundleError::Truncated { path: path.to_path_buf(), why: e.to_string() };
    let mut file = std::fs::File::open(path).map_err(|e| BundleError::io("open", path, e))?;
    let mut magic = [0u8; 2];
    if file.read_exact(&mut magic).is_err() || magic != [0x1f, 0x8b] {
        return Err(BundleError::NotABundle {
            path: path.to_path_buf(),
            why: "it is neither a directory nor a .tar.gz archive".into(),
        });
    }
    let file = std::fs::File::open(path).map_err(|e| BundleError::io("open", path, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let (mut manifest, mut spec, mut phases, mut lock) = (None, None, None, None);
    for entry in archive.entries().map_err(truncated)? {
        let mut entry = entry.map_err(truncated)?;
        let name = entry.path().map_err(truncated)?.into_owned();
        // Only these matter: `<bundle>/MANIFEST.json`, `<bundle>/spec.toml`, `<bundle>/spec.lock`,
        // `<bundle>/run/phases.jsonl`.
        let inner: PathBuf = name.components().skip(1).collect();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(truncated)?;
        match inner.to_str() {
            Some(MANIFEST) => manifest = Some(bytes),
            Some(SPEC) => spec = Some(bytes),
            Some(PHASES) => phases = Some(bytes),
            Some(LOCK) => lock = Some(bytes),
            _ => {}
        }
    }
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(truncated)?;
    Ok((manifest, spec, phases, lock))
}

#[cfg(test)]
mod tests {
    use super::super::FILE_CAP;
    use super::*;

    fn manifest(format: u32) -> String {
        let m = serde_json::json!({
            "format": format, "harness_version": "9.9.9", "cluster": "lab", "cluster_id": "c0ffee", "created": 1,
            "reason": "phase etcd failed", "image_key": "bookworm-1", "file_cap": FILE_CAP, "total_cap": 1,
            "steps": [], "excluded": [],
        });
        m.to_string()
    }

    fn bundle_dir(root: &Path, format: u32) -> PathBuf {
        let dir = root.join("lab-20261129T120000Z");
        std::fs::create_dir_all(dir.join("nodes/cp")).unwrap();
        std::fs::write(dir.join(MANIFEST), manifest(format)).unwrap();
        std::fs::write(dir.join(SPEC), ClusterSpec::default().to_effective_toml()).unwrap();
        std::fs::write(dir.join("nodes/cp/journal.txt"), "x".repeat(200_000)).unwrap();
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let record = |p: &str, o: &str| {
            format!("{{\"phase\":\"{p}\",\"ended\":1,\"seconds\":1.0,\"outcome\":\"{o}\",\"changed\":null}}\n")
        };
        std::fs::write(dir.join(PHASES), record("pki", "ok") + &record("etcd", "failed")).unwrap();
        dir
    }

    fn tar_gz(dir: &Path) -> PathBuf {
        super::super::collect::archive(dir).unwrap()
    }

    #[test]
    fn a_bundle_opens_from_its_directory_and_its_archive() {
        let root = tempfile::tempdir().unwrap();
        let dir = bundle_dir(root.path(), FORMAT);
        for path in [dir.clone(), tar_gz(&dir)] {
            let opened = open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(opened.manifest.cluster, "lab");
            assert_eq!(opened.spec, ClusterSpec::default());
            assert_eq!(opened.last_phase(), Some(Phase::Etcd), "the phase it failed in");
            assert_eq!(opened.failed_phase(), Some(Phase::Etcd), "repro runs it again, never restores it");
        }
        // A bundle made of a healthy cluster (`kthw bundle NAME`) names no failed phase.
        let mut opened = open(&dir).unwrap();
        opened.phases.pop();
        assert_eq!(opened.failed_phase(), None);
        // A failed boot has no phase record: repro boots the nodes again, never restores booted ones.
        opened.phases.clear();
        assert_eq!((opened.last_phase(), opened.failed_phase()), (None, None));
        opened.manifest.boot_failed = true;
        assert_eq!((opened.last_phase(), opened.failed_phase()), (Some(Phase::Nodes), Some(Phase::Nodes)));
        let text = serde_json::to_string(&opened.manifest).unwrap();
        let read: super::super::Manifest = serde_json::from_str(&text).unwrap();
        assert!(read.boot_failed, "{text}");
    }

    #[test]
    fn a_bundle_of_versions_that_are_no_preset_carries_the_lock_its_run_used() {
        let root = tempfile::tempdir().unwrap();
        let dir = bundle_dir(root.path(), FORMAT);
        let mut spec = ClusterSpec::default();
        spec.versions.named.insert(crate::spec::VersionKey::Kubernetes, "1.31.9".into());
        std::fs::write(dir.join(SPEC), spec.to_effective_toml()).unwrap();
        let mut lock = crate::lock::Lock::preset(crate::spec::VersionSet::Seed);
        lock.versions = spec.versions.pins();
        lock.artifacts.iter_mut().for_each(|a| a.set = None);
        std::fs::write(dir.join(LOCK), lock.to_toml()).unwrap();
        for path in [dir.clone(), tar_gz(&dir)] {
            let opened = open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(opened.lock.as_ref(), Some(&lock), "{}", path.display());
            assert_eq!(opened.spec.versions.pins().kubernetes, "1.31.9");
        }
        std::fs::write(dir.join(LOCK), "format = 1\n").unwrap();
        let err = open(&dir).unwrap_err().to_string();
        assert!(err.contains("its spec.lock is not a lock"), "{err}");
        assert_eq!(open(&bundle_dir(&root.path().join("plain"), FORMAT)).unwrap().lock, None);
    }

    #[test]
    fn bad_bundles_are_refused_saying_what_is_wrong() {
        let root = tempfile::tempdir().unwrap();
        let missing = open(&root.path().join("nope.tar.gz")).unwrap_err().to_string();
        assert!(missing.starts_with("no bundle at ") && missing.contains("No such file"), "{missing}");

        let archive = tar_gz(&bundle_dir(root.path(), FORMAT));
        let whole = std::fs::read(&archive).unwrap();
        for keep in [whole.len() - 4, whole.len() / 2, 20] {
            let cut = root.path().join(format!("cut-{keep}.tar.gz"));
            std::fs::write(&cut, &whole[..keep]).unwrap();
            let err = open(&cut).unwrap_err();
            assert!(matches!(err, BundleError::Truncated { .. }), "{keep} of {} bytes: {err}", whole.len());
            assert!(err.to_string().contains("is truncated or corrupt"), "{err}");
        }

        let newer = root.path().join("newer");
        std::fs::create_dir_all(&newer).unwrap();
        let dir = bundle_dir(&newer, FORMAT + 1);
        let err = open(&dir).unwrap_err().to_string();
        assert!(err.contains(&format!("has format {}, newer than this kthw reads ({FORMAT}", FORMAT + 1)), "{err}");
        assert!(err.contains("kthw 9.9.9"), "names the kthw that made it: {err}");

        let plain = root.path().join("notes.txt");
        std::fs::write(&plain, "hello").unwrap();
        let err = open(&plain).unwrap_err().to_string();
        assert!(err.contains("is not a kthw bundle: it is neither a directory nor a .tar.gz archive"), "{err}");
        let empty = root.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let err = open(&empty).unwrap_err().to_string();
        assert!(err.contains("is not a kthw bundle: it has no MANIFEST.json"), "{err}");
    }
}
