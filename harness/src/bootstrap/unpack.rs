//! Binaries out of the pinned release tarballs, unpacked once per version on the host, so that a node receives
//! only the binaries it runs (the server tarball is ten times larger than what the control plane needs).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::BootstrapError;
use crate::phase::Phase;

/// Unpacks `members` (paths inside the tarball) of `tarball` into `into`, each under its file name, unless
/// they are all there already. Returns their paths in the order asked.
pub fn unpack(phase: Phase, tarball: &Path, into: &Path, members: &[String]) -> Result<Vec<PathBuf>, BootstrapError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| BootstrapError::Io { phase, action, path, source }
    };
    let name = |m: &str| m.rsplit('/').next().unwrap_or(m).to_string();
    let wanted: Vec<PathBuf> = members.iter().map(|m| into.join(name(m))).collect();
    if wanted.iter().all(|p| p.is_file()) {
        return Ok(wanted);
    }
    std::fs::create_dir_all(into).map_err(io("create", into))?;
    // Unpacked beside the destination and renamed into place: an interrupted unpack leaves no half binary
    // under a final name.
    let tmp = into.join(format!(".unpack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io("create", &tmp))?;
    let result = unpack_into(phase, tarball, &tmp, members, &wanted);
    let _ = std::fs::remove_dir_all(&tmp);
    result.map(|()| wanted)
}

fn unpack_into(
    phase: Phase,
    tarball: &Path,
    tmp: &Path,
    members: &[String],
    wanted: &[PathBuf],
) -> Result<(), BootstrapError> {
    let out = Command::new("tar")
        .args(["-xzf"])
        .arg(tarball)
        .arg("-C")
        .arg(tmp)
        .arg("--no-same-owner")
        .args(members)
        .output()
        .map_err(|e| BootstrapError::Extract {
            phase,
            tarball: tarball.to_path_buf(),
            member: members.join(", "),
            detail: format!("cannot run tar: {e}"),
        })?;
    if !out.status.success() {
        return Err(BootstrapError::Extract {
            phase,
            tarball: tarball.to_path_buf(),
            member: members.join(", "),
            detail: format!("tar exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    for (m, dest) in members.iter().zip(wanted) {
        std::fs::rename(tmp.join(m), dest).map_err(|source| BootstrapError::Io {
            phase,
            action: "move into place",
            path: dest.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for a release tarball, made with the real tar, laid out like kubernetes-server's.
    fn tarball(dir: &Path) -> PathBuf {
        let root = dir.join("src/kubernetes/server/bin");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("kube-apiserver"), b"apiserver").unwrap();
        std::fs::write(root.join("kubectl"), b"kubectl").unwrap();
        let t = dir.join("kubernetes-server-linux-amd64.tar.gz");
        let ok = Command::new("tar").arg("-czf").arg(&t).arg("-C").arg(dir.join("src")).arg("kubernetes").status();
        assert!(ok.unwrap().success());
        t
    }

    #[test]
    fn members_land_under_their_names_and_a_second_unpack_reuses_them() {
        let dir = tempfile::tempdir().unwrap();
        let t = tarball(dir.path());
        let into = dir.path().join("out");
        let members = ["kubernetes/server/bin/kube-apiserver".to_string(), "kubernetes/server/bin/kubectl".into()];
        let got = unpack(Phase::ControlPlane, &t, &into, &members).unwrap();
        assert_eq!(got, vec![into.join("kube-apiserver"), into.join("kubectl")]);
        assert_eq!(std::fs::read(&got[0]).unwrap(), b"apiserver");
        std::fs::remove_file(&t).unwrap();
        assert_eq!(unpack(Phase::ControlPlane, &t, &into, &members).unwrap(), got, "reused without the tarball");
        let leftovers: Vec<_> = std::fs::read_dir(&into).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }

    #[test]
    fn a_member_the_tarball_lacks_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let t = tarball(dir.path());
        let members = ["kubernetes/server/bin/kube-scheduler".to_string()];
        let e = unpack(Phase::ControlPlane, &t, &dir.path().join("out"), &members).unwrap_err().to_string();
        assert!(e.contains("kube-scheduler") && e.contains("tar exited"), "{e}");
    }
}
