//! Node disks: a qcow2 overlay per node on the shared, read-only base image, so a node's writes never touch
//! the cache and creating one costs milliseconds.

use std::path::Path;
use std::process::Command;

use super::VirtError;

/// `qemu-img create -f qcow2 -F qcow2 -b BASE OVERLAY`. The base path is stored in the overlay as given, so
/// it must be absolute.
pub fn create_overlay(base: &Path, overlay: &Path) -> Result<(), VirtError> {
    let fail =
        |message: String| VirtError::Overlay { overlay: overlay.to_path_buf(), base: base.to_path_buf(), message };
    if !base.is_absolute() {
        return Err(fail("the base image path must be absolute".into()));
    }
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(base)
        .arg(overlay)
        .output()
        .map_err(|e| fail(format!("cannot run qemu-img: {e}")))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlay_names_its_base_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.qcow2");
        let test = "an_overlay_names_its_base_and_leaves_it_alone";
        let Some(()) = crate::testing::needs(crate::testing::on_path("qemu-img", test)) else { return };
        // qemu-img is here: a base it cannot create is a broken host, not a reason to skip.
        let made =
            Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&base).arg("16M").output().unwrap();
        assert!(made.status.success(), "qemu-img create: {}", String::from_utf8_lossy(&made.stderr));
        let before = std::fs::read(&base).unwrap();
        let overlay = dir.path().join("node.qcow2");
        create_overlay(&base, &overlay).unwrap();
        let info = Command::new("qemu-img").args(["info", "--output=json"]).arg(&overlay).output().unwrap();
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["backing-filename"], base.to_str().unwrap());
        assert_eq!(info["backing-filename-format"], "qcow2");
        assert_eq!(std::fs::read(&base).unwrap(), before);
    }

    #[test]
    fn a_relative_base_is_refused() {
        let err = create_overlay(Path::new("base.qcow2"), Path::new("/tmp/x.qcow2")).unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
    }
}
