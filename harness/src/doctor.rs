//! Host prerequisites, each reported as ok or missing with the command that fixes it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use crate::accel::{self, Accel};
use crate::paths::Paths;
use crate::virt;

/// What one cluster writes under the home once the node image is cached: its nodes' overlays, the artifact cache
/// and a golden snapshot. Estimated for the full cluster (three nodes each holding ~0.3 GiB of binaries and
/// ~0.8 GiB of unpacked Cilium and CoreDNS images, and a snapshot of ~1 GiB of memory per node); measured, the
/// whole vm tier's test home peaked at 2.6 GiB on one CI run. A fixed 10 GiB for every test failed a CI run
/// whose machine had 9 GiB left after the build, with the image long cached.
pub const CLUSTER_DISK_GIB: u64 = 6;
/// What building the node image adds when it is not cached: the mmdebstrap root tree, the raw disk made from it
/// and the qcow2 converted from that (0.75 GiB kept).
pub const IMAGE_BUILD_DISK_GIB: u64 = 4;
const SETUP: &str = "sudo scripts/setup-host";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok(String),
    /// Present but worth knowing (e.g. software emulation: slower, still works).
    Note(String),
    Missing {
        detail: String,
        fix: String,
    },
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    /// A missing required check makes `kthw doctor` exit non-zero; optional ones only matter to some tiers.
    pub required: bool,
    pub status: Status,
}

impl Check {
    pub fn is_missing(&self) -> bool {
        matches!(self.status, Status::Missing { .. })
    }
}

/// Every check, in the order a person would fix them.
pub fn run(paths: &Paths) -> Vec<Check> {
    let image = crate::image::cached(paths).ok().flatten();
    let probe = accel::detect(&paths.state, image.as_ref().map(|i| i.kernel.as_path()));
    vec![
        tool_version("QEMU", true, "qemu-system-x86_64", &["--version"], SETUP),
        tool_version("qemu-img", true, "qemu-img", &["--version"], SETUP),
        libvirt(),
        capabilities(probe.accel),
        tool_version("mmdebstrap (image build)", true, "mmdebstrap", &["--version"], SETUP),
        tool_present("mkfs.ext4 (image build)", true, "mkfs.ext4", SETUP),
        tool_present("busybox static (initrd)", true, "/bin/busybox", SETUP),
        tool_present("cpio (initrd)", true, "cpio", SETUP),
        tool_present("xz (image build: the uncompressed kernel)", true, "xz", SETUP),
        debian_keyring(),
        free_disk(&paths.cache, disk_need_gib(image.is_some())),
        acceleration(&probe),
        tool_version(
            "kubectl (kubeconfig tests, cluster tier)",
            false,
            "kubectl",
            &["version", "--client"],
            "sudo scripts/setup-host (Debian 12: kubernetes-client), or Kubernetes' own packages: \
             https://kubernetes.io/docs/tasks/tools/install-kubectl-linux/",
        ),
        tool_present("OpenSSH sshd (ssh layer's fast tests)", false, "/usr/sbin/sshd", SETUP),
    ]
}

fn tool_present(name: &'static str, required: bool, tool: &str, fix: &str) -> Check {
    let status = match crate::files::which(tool) {
        Some(p) => Status::Ok(p.display().to_string()),
        None => Status::Missing { detail: format!("{tool} not found"), fix: fix.to_string() },
    };
    Check { name, required, status }
}

fn tool_version(name: &'static str, required: bool, tool: &str, args: &[&str], fix: &str) -> Check {
    let status = match Command::new(tool).args(args).output() {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            Status::Ok(text.lines().next().unwrap_or("").trim().to_string())
        }
        Ok(o) => Status::Missing {
            detail: format!("{tool} {} failed: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()),
            fix: fix.to_string(),
        },
        Err(e) => Status::Missing { detail: format!("{tool}: {e}"), fix: fix.to_string() },
    };
    Check { name, required, status }
}

/// The keyring the image recipe's apt sources are signed-by (images/debian/recipe.toml).
fn debian_keyring() -> Check {
    match crate::image::recipe::Recipe::embedded(None, None) {
        Ok(r) => tool_present("Debian archive keyring (image build)", true, &r.config.keyring, SETUP),
        Err(e) => Check {
            name: "Debian archive keyring (image build)",
            required: true,
            status: Status::Missing { detail: e.to_string(), fix: "fix images/debian/recipe.toml".into() },
        },
    }
}

fn libvirt() -> Check {
    let uri = virt::connect::uri();
    let status = match virt::connect::open(&uri) {
        Ok(c) => {
            let v = c.lib_version().unwrap_or(0);
            Status::Ok(format!("{uri} answers (libvirt {})", virt::connect::version_string(v)))
        }
        Err(e) => Status::Missing {
            detail: e.to_string().lines().next().unwrap_or("").to_string(),
            fix: format!("{SETUP}   (starts virtlogd and libvirtd where no init system does)"),
        },
    };
    Check { name: "libvirt daemon", required: true, status }
}

/// What kthw's domains need from libvirt and QEMU under the accelerator in use, probed as `kthw up` does.
fn capabilities(accel: Accel) -> Check {
    let uri = virt::connect::uri();
    let status = match virt::connect::open(&uri) {
        Ok(conn) => match virt::caps::check(&conn, accel) {
            Ok(found) => Status::Ok(found.summary()),
            Err(e) => Status::Missing {
                detail: format!("libvirt {} with QEMU {}: {}", e.libvirt, e.qemu, e.missing),
                fix: virt::caps::FIX.to_string(),
            },
        },
        Err(_) => Status::Missing {
            detail: "not probed: the libvirt daemon does not answer".to_string(),
            fix: format!("{SETUP}   (see the libvirt daemon check)"),
        },
    };
    Check { name: "libvirt/QEMU capabilities", required: true, status }
}

/// Free bytes on the filesystem holding `dir` (or its closest existing ancestor).
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    let c = CString::new(existing.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// GiB a run needs free: a cluster's, and the image build's while the image is not cached.
pub fn disk_need_gib(image_cached: bool) -> u64 {
    CLUSTER_DISK_GIB + if image_cached { 0 } else { IMAGE_BUILD_DISK_GIB }
}

fn free_disk(cache: &Path, need: u64) -> Check {
    let gib = |b: u64| b / (1 << 30);
    let why = match need > CLUSTER_DISK_GIB {
        true => {
            format!("{CLUSTER_DISK_GIB} GiB for a cluster, {IMAGE_BUILD_DISK_GIB} GiB to build the node image first")
        }
        false => "for a cluster; the node image is cached".to_string(),
    };
    let status = match free_bytes(cache) {
        Ok(b) if gib(b) >= need => Status::Ok(format!("{} GiB free under {}", gib(b), cache.display())),
        Ok(b) => Status::Missing {
            detail: format!("{} GiB free under {}, need {need} GiB ({why})", gib(b), cache.display()),
            fix: "free space, or point KTHW_HOME at a larger filesystem; `kthw image prune` drops old images, \
                  `kthw golden prune` old snapshots"
                .to_string(),
        },
        Err(e) => Status::Missing {
            detail: format!("cannot stat {}: {e}", cache.display()),
            fix: "check KTHW_HOME".to_string(),
        },
    };
    Check { name: "free disk", required: true, status }
}

fn acceleration(probe: &accel::Probe) -> Check {
    let status = match probe.accel {
        Accel::Kvm => Status::Ok(format!("KVM: {}", probe.reason)),
        Accel::Tcg => {
            Status::Note(format!("TCG (software emulation, deadlines x{}): {}", Accel::Tcg.slowdown(), probe.reason))
        }
    };
    Check { name: "acceleration", required: true, status }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_build_is_asked_for_only_while_the_image_is_not_cached() {
        assert_eq!(disk_need_gib(true), CLUSTER_DISK_GIB);
        assert_eq!(disk_need_gib(false), CLUSTER_DISK_GIB + IMAGE_BUILD_DISK_GIB);
    }

    #[test]
    fn too_little_space_names_what_is_free_what_is_needed_and_for_what() {
        let dir = tempfile::tempdir().unwrap();
        let too_much = 1 << 40;
        let check = free_disk(dir.path(), too_much);
        let Status::Missing { detail, fix } = check.status else { panic!("{:?} is not missing", check.status) };
        assert!(detail.contains(&format!("need {too_much} GiB")), "{detail}");
        assert!(detail.contains("to build the node image first"), "{detail}");
        assert!(detail.contains(&dir.path().display().to_string()), "{detail}");
        assert!(fix.contains("kthw golden prune"), "{fix}");
        let cached = free_disk(dir.path(), CLUSTER_DISK_GIB);
        assert!(
            matches!(&cached.status, Status::Ok(_))
                || format!("{:?}", cached.status).contains("the node image is cached"),
            "{:?}",
            cached.status
        );
    }
}
