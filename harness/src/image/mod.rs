//! Node images: build from the recipe in images/debian (embedded in the binary), cache by content, list and
//! prune.
//!
//! One image per cache key (the recipe's files and the mirrors), under `Paths::images()/<key>/`:
//! `disk.qcow2` (the read-only backing file of every node's overlay), `vmlinuz` (and `vmlinux`, the same
//! kernel uncompressed, where the recipe's boot cut asks for it; see [`kernel`]), `initrd.img` (our small
//! initrd), `initrd-debian.img` (Debian's initramfs, kept for the benchmark) and `manifest.json`. A build runs
//! under a per-key lock in a `.build-*` directory that is renamed into place only when complete.

mod build;
mod cache;
pub mod initrd;
pub mod kernel;
pub mod manifest;
pub mod recipe;

use std::path::{Path, PathBuf};

pub use build::build;
pub use cache::{cached, cached_key, list, prune, ImageInfo, Pruned};
pub use kernel::KernelFile;
pub use manifest::{ImageManifest, Package};

pub const DISK: &str = "disk.qcow2";
pub const INITRD: &str = "initrd.img";
pub const DEBIAN_INITRD: &str = "initrd-debian.img";

/// A built, cached node image.
#[derive(Debug, Clone)]
pub struct NodeImage {
    pub key: String,
    pub dir: PathBuf,
    /// The base qcow2: never written; every node boots from an overlay backed by it.
    pub disk: PathBuf,
    /// What `<kernel>` boots: the manifest's `kernel_file`.
    pub kernel: PathBuf,
    /// Our small busybox initrd.
    pub initrd: PathBuf,
    /// Debian's initramfs, kept to compare boot times against.
    pub debian_initrd: PathBuf,
    pub manifest: ImageManifest,
}

impl NodeImage {
    fn at(dir: &Path, manifest: ImageManifest) -> NodeImage {
        NodeImage {
            key: manifest.key.clone(),
            dir: dir.to_path_buf(),
            disk: dir.join(DISK),
            kernel: dir.join(manifest.kernel_file.file_name()),
            initrd: dir.join(INITRD),
            debian_initrd: dir.join(DEBIAN_INITRD),
            manifest,
        }
    }

    /// What direct kernel boot passes (root=/dev/vda rw, console=ttyS0, ...); right for either initrd.
    pub fn kernel_cmdline(&self) -> String {
        self.manifest.kernel_cmdline.clone()
    }
}

/// How to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Rebuild even when the cache holds this key (the old image is replaced once the new one is complete;
    /// overlays of running nodes backed by it must not be used afterwards).
    pub force: bool,
    /// Debian mirror; None: `KTHW_DEBIAN_MIRROR`, else recipe.toml's.
    pub mirror: Option<String>,
    /// Debian security mirror; None: `KTHW_DEBIAN_SECURITY_MIRROR`, else recipe.toml's.
    pub security_mirror: Option<String>,
    /// Build the recipe without its boot cuts ([`recipe::Recipe::without_boot_cuts`]): the boot benchmark's
    /// baseline, never what a cluster boots.
    pub without_boot_cuts: bool,
}

impl BuildOptions {
    /// The recipe with this build's mirrors; its key names the image.
    pub fn recipe(&self) -> Result<recipe::Recipe, ImageError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mirror = self.mirror.clone().or_else(|| env("KTHW_DEBIAN_MIRROR"));
        let security = self.security_mirror.clone().or_else(|| env("KTHW_DEBIAN_SECURITY_MIRROR"));
        let recipe = recipe::Recipe::embedded(mirror.as_deref(), security.as_deref())?;
        Ok(if self.without_boot_cuts { recipe.without_boot_cuts() } else { recipe })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("the embedded image recipe is invalid (a bug in images/debian): {0}")]
    Recipe(String),
    #[error("building the node image needs root (mmdebstrap --mode=root writes a root-owned filesystem); run `sudo kthw image build`, or as root in CI")]
    NotRoot,
    #[error("{step} failed: `{command}` {status}\n{output}\nfix: {fix}")]
    Tool { step: &'static str, command: String, status: String, output: String, fix: String },
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the image's root filesystem is not what the recipe promises: {0}")]
    Rootfs(String),
    #[error("{} is damaged; `kthw image build --force` rebuilds it", path.display())]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: {problem}; the boot cut in images/debian/boot-cuts/kernel.toml needs an x86 bzImage with an XZ payload and a PVH entry (Debian's linux-image-amd64); without that cut nodes boot the bzImage as it is", path.display())]
    Kernel { path: PathBuf, problem: String },
    #[error("{} is missing: apt checks the Debian mirror's signatures against it while it builds the node image (the recipe's `keyring`); install the debian-archive-keyring package (`sudo scripts/setup-host` does)", path.display())]
    Keyring { path: PathBuf },
    #[error("the image build task failed: {0}")]
    Join(String),
}

impl ImageError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> ImageError {
        ImageError::Io { what, path: path.to_path_buf(), source }
    }

    pub(crate) fn kernel(path: &Path, problem: String) -> ImageError {
        ImageError::Kernel { path: path.to_path_buf(), problem }
    }
}

#[cfg(test)]
mod tests {
    use super::recipe::Recipe;

    /// kelseyhightower/kubernetes-the-hard-way@master:docs/09-bootstrapping-kubernetes-workers.md, why it loads
    /// the module; the node image keeps it for that and for the bridge sysctls, not for Cilium.
    const KTHW_BR_NETFILTER: &str = "To ensure network traffic crossing the CNI `bridge` network is processed by \
                                     `iptables`, load and configure the `br-netfilter` kernel module";

    #[test]
    fn br_netfilter_is_loaded_for_the_reason_the_hard_way_gives_and_before_the_bridge_sysctls() {
        let recipe = Recipe::embedded(None, None).unwrap();
        let text = |p: &str| String::from_utf8(recipe.file(p).unwrap().content.to_vec()).unwrap();
        let modules = text("files/etc/modules-load.d/kthw.conf");
        assert!(modules.lines().any(|l| l == "br_netfilter"), "{modules}");
        let said = modules.lines().filter_map(|l| l.strip_prefix("# ")).collect::<Vec<_>>().join(" ");
        let reason = "crossing the CNI bridge network is processed by iptables";
        assert!(KTHW_BR_NETFILTER.replace('`', "").contains(reason));
        assert!(said.contains(reason) && said.contains("does not need it"), "{said}");
        let sysctls = text("files/etc/sysctl.d/90-kthw.conf");
        assert!(sysctls.contains("net.bridge.bridge-nf-call-iptables = 1"), "the key the module provides: {sysctls}");
    }
}
