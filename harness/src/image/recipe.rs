//! The recipe in images/debian, embedded in the binary: the cache key is computed from exactly what this
//! binary will build, and `kthw` works outside the repository.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::kernel::{KernelCut, KernelFile};
use super::ImageError;

/// One file of the recipe: its path under images/debian, its mode, its bytes.
#[derive(Debug, Clone, Copy)]
pub struct RecipeFile {
    pub path: &'static str,
    pub mode: u32,
    pub content: &'static [u8],
}

macro_rules! recipe_file {
    ($path:literal, $mode:literal) => {
        RecipeFile { path: $path, mode: $mode, content: include_bytes!(concat!("../../../images/debian/", $path)) }
    };
}

/// Every file under images/debian (a unit test checks that none is missing and the modes match).
pub const FILES: &[RecipeFile] = &[
    recipe_file!("recipe.toml", 0o644),
    recipe_file!("packages.txt", 0o644),
    recipe_file!("enabled-units.txt", 0o644),
    recipe_file!("disabled-units.txt", 0o644),
    recipe_file!("masked-units.txt", 0o644),
    recipe_file!("boot-cuts/disabled-units.txt", 0o644),
    recipe_file!("boot-cuts/kernel.toml", 0o644),
    recipe_file!("boot-cuts/masked-units.txt", 0o644),
    recipe_file!("customize.sh", 0o755),
    recipe_file!("initrd/init", 0o755),
    recipe_file!("files/etc/fstab", 0o644),
    recipe_file!("files/etc/hosts", 0o644),
    recipe_file!("files/etc/containerd/config.toml", 0o644),
    recipe_file!("files/etc/docker/registry/config.yml", 0o644),
    recipe_file!("files/etc/modprobe.d/kthw-boot-cuts.conf", 0o644),
    recipe_file!("files/etc/modules-load.d/kthw.conf", 0o644),
    recipe_file!("files/etc/ssh/sshd_config.d/kthw-boot-cuts.conf", 0o644),
    recipe_file!("files/etc/ssh/sshd_config.d/kthw.conf", 0o644),
    recipe_file!("files/etc/sysctl.d/90-kthw.conf", 0o644),
    recipe_file!("files/etc/systemd/journald.conf.d/kthw.conf", 0o644),
    recipe_file!("files/etc/systemd/resolved.conf.d/kthw.conf", 0o644),
    recipe_file!("files/etc/systemd/system/kthw-identity.service", 0o644),
    recipe_file!("files/etc/systemd/system/ssh.service.d/kthw-boot-cuts.conf", 0o644),
    recipe_file!("files/usr/local/sbin/kthw-identity", 0o755),
];

/// Files under this prefix are copied into the root filesystem as they are.
pub const ROOTFS_FILES: &str = "files/";

/// Recipe files whose path holds this are boot cuts: what the recipe leaves out of a node's boot
/// (images/debian/boot-cuts/disabled-units.txt says what and why). Without them the recipe is the one from
/// before the cuts, which `kthw-bench boot-cuts` boots beside the current one as its baseline.
pub const BOOT_CUTS: &str = "boot-cuts";

const KERNEL_CUT: &str = "boot-cuts/kernel.toml";

/// recipe.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeConfig {
    pub release: String,
    pub suites: Vec<String>,
    pub security_suites: Vec<String>,
    pub components: Vec<String>,
    pub mirror: String,
    pub security_mirror: String,
    /// The keyring every source line names with `signed-by`: a path on the host that builds the image.
    pub keyring: String,
    pub disk_gib: u64,
    pub cmdline: String,
    pub initrd_modules: Vec<String>,
    pub dpkg_exclude: Vec<String>,
    pub dpkg_include: Vec<String>,
}

/// The recipe with the mirrors this build uses; what the key is computed from.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub files: Vec<RecipeFile>,
    pub config: RecipeConfig,
    pub mirror: String,
    pub security_mirror: String,
}

impl Recipe {
    /// The embedded recipe, with mirrors overridden where given.
    pub fn embedded(mirror: Option<&str>, security_mirror: Option<&str>) -> Result<Recipe, ImageError> {
        Recipe::from_files(FILES.to_vec(), mirror, security_mirror)
    }

    pub fn from_files(
        files: Vec<RecipeFile>,
        mirror: Option<&str>,
        security_mirror: Option<&str>,
    ) -> Result<Recipe, ImageError> {
        let text = file_text(&files, "recipe.toml")?;
        let config: RecipeConfig = toml::from_str(text).map_err(|e| ImageError::Recipe(format!("recipe.toml: {e}")))?;
        Ok(Recipe {
            mirror: mirror.unwrap_or(&config.mirror).trim_end_matches('/').to_string(),
            security_mirror: security_mirror.unwrap_or(&config.security_mirror).trim_end_matches('/').to_string(),
            files,
            config,
        })
    }

    /// This recipe without its boot cuts: the benchmark's baseline, a different image (and key).
    pub fn without_boot_cuts(mut self) -> Recipe {
        self.files.retain(|f| !f.path.contains(BOOT_CUTS));
        self
    }

    /// sha256 over every recipe file (path, mode, bytes), in path order: what the recipe is.
    pub fn hash(&self) -> String {
        let mut files: Vec<_> = self.files.iter().collect();
        files.sort_by_key(|f| f.path);
        let mut h = Sha256::new();
        h.update(b"kthw-recipe-v1\0");
        for f in files {
            h.update(f.path.as_bytes());
            h.update([0]);
            h.update(format!("{:o}\0{}\0", f.mode, f.content.len()).as_bytes());
            h.update(f.content);
        }
        hex::encode(h.finalize())
    }

    /// The cache key: the recipe hash and the mirrors its packages come from (a snapshot mirror is a
    /// different package set). Short enough for a directory name, long enough never to collide in a cache.
    /// How the build runs (dpkg without fsync, Debian's initramfs built once: `build.rs`) is not part of it:
    /// those change how long a build takes, not a file of what it builds, and a key change would make every
    /// cache rebuild an image it already holds. A build change that alters the image goes in the recipe.
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!("{}\0{}\0{}\0", self.hash(), self.mirror, self.security_mirror).as_bytes());
        let digest = hex::encode(h.finalize());
        format!("{}-{}", self.config.release, &digest[..16])
    }

    /// Packages from packages.txt.
    pub fn packages(&self) -> Result<Vec<String>, ImageError> {
        Ok(list(file_text(&self.files, "packages.txt")?))
    }

    /// The kernel file nodes boot: boot-cuts/kernel.toml's choice, else the bzImage as Debian ships it.
    pub fn kernel_file(&self) -> Result<KernelFile, ImageError> {
        if !self.files.iter().any(|f| f.path == KERNEL_CUT) {
            return Ok(KernelFile::Compressed);
        }
        let cut: KernelCut = toml::from_str(file_text(&self.files, KERNEL_CUT)?)
            .map_err(|e| ImageError::Recipe(format!("{KERNEL_CUT}: {e}")))?;
        Ok(cut.boot)
    }

    pub fn units(&self, which: &str) -> Result<Vec<String>, ImageError> {
        Ok(list(file_text(&self.files, which)?))
    }

    /// mmdebstrap's apt source lines, one per suite, each naming the keyring its signatures are checked
    /// against, so the build never depends on which keys the host's apt trusts.
    pub fn sources(&self) -> Vec<String> {
        let components = self.config.components.join(" ");
        let line = |mirror: &str, suite: &str| {
            format!("deb [signed-by={}] {mirror} {suite} {components}", self.config.keyring)
        };
        let plain = self.config.suites.iter().map(|s| line(&self.mirror, s));
        let security = self.config.security_suites.iter().map(|s| line(&self.security_mirror, s));
        plain.chain(security).collect()
    }

    /// Every suite, as the manifest records them.
    pub fn suites(&self) -> Vec<String> {
        self.config.suites.iter().chain(&self.config.security_suites).cloned().collect()
    }

    pub fn file(&self, path: &str) -> Result<&RecipeFile, ImageError> {
        self.files
            .iter()
            .find(|f| f.path == path)
            .ok_or_else(|| ImageError::Recipe(format!("the recipe has no {path}")))
    }
}

fn file_text<'a>(files: &'a [RecipeFile], path: &str) -> Result<&'a str, ImageError> {
    let f = files.iter().find(|f| f.path == path).ok_or_else(|| ImageError::Recipe(format!("no {path}")))?;
    std::str::from_utf8(f.content).map_err(|e| ImageError::Recipe(format!("{path} is not UTF-8: {e}")))
}

/// Non-empty lines with `#` comments removed.
fn list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn recipe(files: Vec<RecipeFile>) -> Recipe {
        Recipe::from_files(files, None, None).unwrap()
    }

    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, u32>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o111;
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, if mode != 0 { 0o755 } else { 0o644 });
            }
        }
    }

    #[test]
    fn every_file_under_images_debian_is_embedded_with_its_mode() {
        let root = crate::testing::workspace_dir().join("images/debian");
        let mut on_disk = BTreeMap::new();
        walk(&root, &root, &mut on_disk);
        let embedded: BTreeMap<String, u32> = FILES.iter().map(|f| (f.path.to_string(), f.mode)).collect();
        assert_eq!(on_disk, embedded, "add new recipe files to image::recipe::FILES");
    }

    #[test]
    fn the_key_changes_when_any_recipe_file_changes_and_only_then() {
        let base = recipe(FILES.to_vec());
        assert_eq!(base.key(), recipe(FILES.to_vec()).key(), "same recipe, same key");
        let mut reversed = FILES.to_vec();
        reversed.reverse();
        assert_eq!(base.key(), recipe(reversed).key(), "file order is not content");

        let mut seen = std::collections::HashSet::from([base.key()]);
        for (i, f) in FILES.iter().enumerate() {
            let edited: &'static [u8] = Box::leak([f.content, b"\n# edited\n"].concat().into_boxed_slice());
            let mut files = FILES.to_vec();
            files[i].content = edited;
            assert!(seen.insert(recipe(files).key()), "editing {} must change the key", f.path);

            let mut files = FILES.to_vec();
            files[i].mode ^= 0o111;
            assert!(seen.insert(recipe(files).key()), "chmod of {} must change the key", f.path);
        }
        let mut added = FILES.to_vec();
        added.push(RecipeFile { path: "files/etc/motd", mode: 0o644, content: b"hello\n" });
        assert!(seen.insert(recipe(added).key()), "a new file must change the key");
        let mut removed = FILES.to_vec();
        removed.retain(|f| f.path != "files/etc/hosts");
        assert!(seen.insert(recipe(removed).key()), "a removed file must change the key");
    }

    #[test]
    fn without_its_boot_cuts_the_recipe_is_another_image_that_still_has_everything_else() {
        let current = recipe(FILES.to_vec());
        let baseline = recipe(FILES.to_vec()).without_boot_cuts();
        assert_ne!(current.key(), baseline.key());
        let cut: Vec<_> = current.files.iter().filter(|f| f.path.contains(BOOT_CUTS)).map(|f| f.path).collect();
        assert_eq!(
            cut,
            [
                "boot-cuts/disabled-units.txt",
                "boot-cuts/kernel.toml",
                "boot-cuts/masked-units.txt",
                "files/etc/modprobe.d/kthw-boot-cuts.conf",
                "files/etc/ssh/sshd_config.d/kthw-boot-cuts.conf",
                "files/etc/systemd/system/ssh.service.d/kthw-boot-cuts.conf"
            ]
        );
        assert_eq!(baseline.files.len(), current.files.len() - cut.len());
        assert_eq!(current.kernel_file().unwrap(), KernelFile::Uncompressed);
        assert_eq!(baseline.kernel_file().unwrap(), KernelFile::Compressed, "the baseline boots Debian's bzImage");
        // customize.sh applies the cut unit lists only where they exist, so the baseline builds without them.
        let customize = std::str::from_utf8(current.file("customize.sh").unwrap().content).unwrap();
        assert!(customize.contains("if [ -d \"$recipe/boot-cuts\" ]"), "{customize}");
        // The cuts never take away what a node is for.
        let disabled = current.units("boot-cuts/disabled-units.txt").unwrap();
        let masked = current.units("boot-cuts/masked-units.txt").unwrap();
        for needed in ["ssh.service", "systemd-resolved.service", "systemd-networkd.service", "kthw-identity.service"] {
            assert!(!disabled.iter().chain(&masked).any(|u| u == needed), "{needed} is cut");
        }
        let blacklist =
            std::str::from_utf8(current.file("files/etc/modprobe.d/kthw-boot-cuts.conf").unwrap().content).unwrap();
        for needed in ["virtio", "qemu_fw_cfg", "overlay", "br_netfilter", "bridge", "ext4"] {
            assert!(!blacklist.lines().any(|l| l.trim() == format!("blacklist {needed}")), "{needed} blacklisted");
        }
    }

    #[test]
    fn the_mirror_is_part_of_the_key_but_not_of_the_recipe_hash() {
        let base = recipe(FILES.to_vec());
        let snap =
            Recipe::from_files(FILES.to_vec(), Some("http://snapshot.debian.org/archive/debian/1/"), None).unwrap();
        assert_ne!(base.key(), snap.key());
        assert_eq!(base.hash(), snap.hash());
        assert!(snap.sources()[0].contains("] http://snapshot.debian.org/archive/debian/1 bookworm main"));
    }

    #[test]
    fn every_source_line_names_debians_keyring_so_the_hosts_trusted_keys_do_not_matter() {
        let r = recipe(FILES.to_vec());
        let keyring = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]";
        assert_eq!(
            r.sources(),
            [
                format!("deb {keyring} http://deb.debian.org/debian bookworm main"),
                format!("deb {keyring} http://deb.debian.org/debian bookworm-updates main"),
                format!("deb {keyring} http://deb.debian.org/debian-security bookworm-security main"),
            ]
        );
        let mirrored = Recipe::from_files(FILES.to_vec(), Some("http://127.0.0.1:3142/debian/"), None).unwrap();
        assert_eq!(mirrored.sources()[0], format!("deb {keyring} http://127.0.0.1:3142/debian bookworm main"));
    }

    #[test]
    fn the_embedded_recipe_parses_and_names_what_a_node_needs() {
        let r = recipe(FILES.to_vec());
        let pkgs = r.packages().unwrap();
        for p in ["linux-image-amd64", "systemd-resolved", "openssh-server", "containerd", "etcd-server"] {
            assert!(pkgs.iter().any(|x| x == p), "{p} missing from packages.txt");
        }
        assert!(pkgs.iter().all(|p| !p.contains(' ') && !p.contains('#')));
        assert!(r.units("enabled-units.txt").unwrap().contains(&"kthw-identity.service".to_string()));
        assert!(r.config.cmdline.contains("root=/dev/vda") && r.config.cmdline.contains("console=ttyS0"));
        assert_eq!(r.suites(), ["bookworm", "bookworm-updates", "bookworm-security"]);
        assert!(r.key().starts_with("bookworm-") && r.key().len() == "bookworm-".len() + 16);
    }
}
