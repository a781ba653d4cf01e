//! Saving a cluster as a golden snapshot: every node's memory into a save image (the domain stops), its
//! overlay frozen as the snapshot's disk, its domain XML kept as a template, and the run directory's files
//! copied; assembled in a staging directory and renamed into place with the manifest. The cluster is consumed.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::key::KeyInputs;
use super::saveimage::SaveImage;
use super::store::{self, FileSum, GoldenManifest, NodeEntry, MANIFEST};
use super::{template, GoldenError};
use crate::cluster::{Cluster, ClusterState};
use crate::paths::Paths;
use crate::virt::{self, libvirt_error, VirtError};

/// Run-directory entries that belong to one run, not to the state a copy starts from.
const NOT_COPIED: [&str; 6] = [
    "state.json",
    "timeline.log",
    crate::rundir::TIMELINE_RECORDS,
    crate::rundir::TIMELINE_SVG,
    "pids",
    "golden-origin",
];
const NODE_NOT_COPIED: [&str; 3] = ["disk.qcow2", "console.log", "ssh.log"];

/// Saves `cluster` as the snapshot `inputs.key()`. The caller holds the key's exclusive lock. `build` is how
/// long booting and bootstrapping took, kept for the restore-to-boot ratio.
pub async fn save(
    cluster: Cluster,
    inputs: KeyInputs,
    paths: &Paths,
    base_image: PathBuf,
    build: Option<Duration>,
) -> Result<GoldenManifest, GoldenError> {
    let start = Instant::now();
    cluster.close_sessions();
    let key = inputs.key();
    let staging = store::staging(paths, &key);
    let (state, run_root) = (cluster.state().clone(), cluster.run_dir().root().to_path_buf());
    let staged = {
        let (staging, state) = (staging.clone(), state.clone());
        tokio::task::spawn_blocking(move || stage(&staging, &state, &run_root))
            .await
            .map_err(|e| GoldenError::Virt(VirtError::Join(e.to_string())))?
    };
    // The domains are stopped either way: the source cluster is of no further use.
    if let Err(e) = cluster.down().await {
        tracing::warn!(error = %crate::chain(&e), "removing the saved cluster failed; `kthw gc` retries");
    }
    let (nodes, files) = match staged {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let manifest = GoldenManifest {
        key: key.clone(),
        inputs,
        created: crate::virt::metadata::unix_now(),
        base_image,
        state,
        nodes,
        files,
        save_ms: start.elapsed().as_millis() as u64,
        build_ms: build.map(|d| d.as_millis() as u64),
    };
    let path = staging.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    crate::files::write_atomic(&path, &json, 0o644).map_err(|e| GoldenError::io("write", &path, e))?;
    let dir = store::dir(paths, &key);
    if dir.exists() {
        // A corrupt or stale snapshot of this key, replaced under the exclusive lock the caller holds.
        std::fs::remove_dir_all(&dir).map_err(|e| GoldenError::io("remove", &dir, e))?;
    }
    std::fs::rename(&staging, &dir).map_err(|e| GoldenError::io("move into place", &dir, e))?;
    tracing::info!(key = %key, bytes = manifest.bytes(), took = ?start.elapsed(), "golden snapshot saved");
    Ok(manifest)
}

/// Blocking: saves every domain in parallel, then moves and copies the files into `staging`.
fn stage(staging: &Path, state: &ClusterState, run_root: &Path) -> Result<(Vec<NodeEntry>, Vec<FileSum>), GoldenError> {
    let _ = std::fs::remove_dir_all(staging);
    let mkdir = |d: &Path| {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(d).map_err(|e| GoldenError::io("create", d, e))
    };
    for n in &state.nodes {
        mkdir(&staging.join("nodes").join(&n.name))?;
    }
    let conn = virt::connect::open(&state.uri)?;
    std::thread::scope(|s| {
        let saves: Vec<_> = state
            .nodes
            .iter()
            .map(|n| {
                let (conn, to) = (&conn, staging.join("nodes").join(&n.name).join("memory.save"));
                s.spawn(move || save_domain(conn, &n.domain, &to))
            })
            .collect();
        saves.into_iter().try_for_each(|h| h.join().unwrap_or_else(|_| Err(VirtError::Join("save panicked".into()))))
    })?;
    let mut nodes = Vec::new();
    let run_dir = crate::rundir::RunDir::at(run_root);
    for n in &state.nodes {
        let rel = |f: &str| format!("nodes/{}/{f}", n.name);
        let image = SaveImage::read(&staging.join(rel("memory.save")))
            .map_err(|e| GoldenError::io("read the save image of", &staging.join(rel("memory.save")), e))?;
        let source = template::Source { id: &state.id, run_dir: &run_root.to_string_lossy(), ssh_port: n.ssh_port };
        let xml =
            template::make(&image.xml, &source).map_err(|why| GoldenError::Template { node: n.name.clone(), why })?;
        let t = staging.join(rel("domain.xml"));
        std::fs::write(&t, xml).map_err(|e| GoldenError::io("write", &t, e))?;
        let (from, to) = (run_dir.node(&n.name).disk(), staging.join(rel("disk.qcow2")));
        std::fs::rename(&from, &to).map_err(|e| GoldenError::io("move the overlay", &from, e))?;
        // Frozen: every copy's overlay reads it as its backing file, and nothing may write it again.
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o444))
            .map_err(|e| GoldenError::io("freeze", &to, e))?;
        nodes.push(NodeEntry {
            name: n.name.clone(),
            save: FileSum::of(staging, &rel("memory.save"))?,
            disk: FileSum::of(staging, &rel("disk.qcow2"))?,
            template: FileSum::of(staging, &rel("domain.xml"))?,
        });
    }
    let mut files = Vec::new();
    copy_tree(run_root, &staging.join("rundir"), "", &mut files)?;
    let files = files.iter().map(|rel| FileSum::of(staging, &format!("rundir/{rel}"))).collect::<Result<_, _>>()?;
    Ok((nodes, files))
}

/// Saves the running domain `name`'s memory to `to` and stops it.
fn save_domain(conn: &::virt::connect::Connect, name: &str, to: &Path) -> Result<(), VirtError> {
    let dom = conn.lookup_domain_by_name(name).map_err(|e| libvirt_error("look up domain", name, e))?;
    let path = CString::new(to.as_os_str().as_bytes()).map_err(|_| VirtError::Libvirt {
        action: "save domain",
        object: name.to_string(),
        message: format!("the path {} contains a NUL byte", to.display()),
    })?;
    // SAFETY: `dom` owns a valid virDomainPtr for the whole call; `path` is NUL-terminated and outlives the
    // call; a NULL dxml keeps the domain's own XML, and flags 0 asks for a plain save (libvirt's documented
    // contract for virDomainSaveFlags). libvirt's error is per thread, so it is read on this thread right after.
    let rc = unsafe { ::virt::sys::virDomainSaveFlags(dom.as_ptr(), path.as_ptr(), std::ptr::null(), 0) };
    if rc < 0 {
        return Err(libvirt_error("save domain", name, ::virt::error::Error::last_error()));
    }
    Ok(())
}

/// Copies the run directory's files that a copy starts from into `to`, recording their relative paths.
fn copy_tree(from: &Path, to: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), GoldenError> {
    let entries = std::fs::read_dir(from).map_err(|e| GoldenError::io("read", from, e))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(to).map_err(|e| GoldenError::io("create", to, e))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let in_node = rel.starts_with("nodes/") && rel.matches('/').count() == 1;
        if (rel.is_empty() && NOT_COPIED.contains(&name.as_str()))
            || (in_node && NODE_NOT_COPIED.contains(&name.as_str()))
            || name.starts_with('.')
        {
            continue;
        }
        let child = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        let ty = e.file_type().map_err(|err| GoldenError::io("read", &e.path(), err))?;
        if ty.is_dir() {
            copy_tree(&e.path(), &to.join(&name), &child, out)?;
        } else if ty.is_file() {
            std::fs::copy(e.path(), to.join(&name)).map_err(|err| GoldenError::io("copy", &e.path(), err))?;
            out.push(child);
        }
    }
    Ok(())
}
