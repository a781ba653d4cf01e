//! manifest.json, beside each image: enough to attach to a bug report and rebuild the same node.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ImageError;

pub const MANIFEST: &str = "manifest.json";

/// One installed Debian package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageManifest {
    pub key: String,
    /// sha256 of the recipe files (images/debian) this image was built from.
    pub recipe_hash: String,
    pub release: String,
    pub suites: Vec<String>,
    pub mirror: String,
    pub security_mirror: String,
    /// `uname -r` of the image's kernel.
    pub kernel_version: String,
    /// Which file nodes boot; images built before the kernel boot cut have only `vmlinuz`.
    #[serde(default)]
    pub kernel_file: super::KernelFile,
    pub kernel_cmdline: String,
    /// What the small initrd loads, in order (paths under /lib/modules/<kernel_version>).
    pub initrd_modules: Vec<String>,
    /// Every installed package, by name.
    pub packages: Vec<Package>,
    /// Build end, seconds since the Unix epoch, and the same as an RFC 3339 UTC time.
    pub built_at_unix: u64,
    pub built_at: String,
    pub build_seconds: f64,
    pub disk_virtual_bytes: u64,
    /// The version of kthw that built it.
    pub kthw_version: String,
}

impl ImageManifest {
    pub fn read(dir: &Path) -> Result<ImageManifest, ImageError> {
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(|e| ImageError::io("reading", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Manifest { path, source })
    }

    pub fn write(&self, dir: &Path) -> Result<(), ImageError> {
        let path = dir.join(MANIFEST);
        let json =
            serde_json::to_vec_pretty(self).map_err(|source| ImageError::Manifest { path: path.clone(), source })?;
        std::fs::write(&path, json).map_err(|e| ImageError::io("writing", &path, e))
    }

    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }
}

/// The installed packages in a dpkg status file, sorted by name.
pub fn installed_packages(status: &str) -> Vec<Package> {
    let mut pkgs: Vec<Package> = status
        .split("\n\n")
        .filter_map(|stanza| {
            let field = |name: &str| {
                stanza.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')).map(str::trim))
            };
            if !field("Status")?.ends_with(" installed") {
                return None;
            }
            Some(Package {
                name: field("Package")?.to_string(),
                version: field("Version")?.to_string(),
                arch: field("Architecture").unwrap_or("").to_string(),
            })
        })
        .collect();
    pkgs.sort_by(|a, b| a.name.cmp(&b.name));
    pkgs
}

/// RFC 3339 UTC time for seconds since the epoch (the days-to-civil conversion from Howard Hinnant's
/// date algorithms), so the manifest reads without a tool.
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by hand to exercise the dpkg status reader, in /var/lib/dpkg/status's stanza format.
    const STATUS: &str = "\
Package: systemd
Status: install ok installed
Priority: important
Architecture: amd64
Version: 252.38-1~deb12u1
Description: system and service manager
 systemd is a system and service manager for Linux.

Package: removed-thing
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: ca-certificates
Status: install ok installed
Architecture: all
Multi-Arch: foreign
Version: 20230311+deb12u1
";

    #[test]
    fn only_installed_packages_are_listed_with_versions_sorted_by_name() {
        let p = installed_packages(STATUS);
        assert_eq!(
            p,
            [
                Package { name: "ca-certificates".into(), version: "20230311+deb12u1".into(), arch: "all".into() },
                Package { name: "systemd".into(), version: "252.38-1~deb12u1".into(), arch: "amd64".into() },
            ]
        );
    }

    #[test]
    fn a_manifest_survives_writing_and_reading() {
        let m = ImageManifest {
            key: "bookworm-0123456789abcdef".into(),
            recipe_hash: "ab".repeat(32),
            release: "bookworm".into(),
            suites: vec!["bookworm".into(), "bookworm-security".into()],
            mirror: "http://deb.debian.org/debian".into(),
            security_mirror: "http://deb.debian.org/debian-security".into(),
            kernel_version: "6.1.0-56-amd64".into(),
            kernel_file: super::super::KernelFile::Uncompressed,
            kernel_cmdline: "root=/dev/vda".into(),
            initrd_modules: vec!["kernel/fs/ext4/ext4.ko".into()],
            packages: installed_packages(STATUS),
            built_at_unix: 1_700_000_000,
            built_at: rfc3339(1_700_000_000),
            build_seconds: 61.5,
            disk_virtual_bytes: 8 << 30,
            kthw_version: "0.1.0".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        m.write(dir.path()).unwrap();
        let back = ImageManifest::read(dir.path()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.package("systemd").unwrap().version, "252.38-1~deb12u1");

        // Images built before the kernel boot cut have no kernel_file: they boot their bzImage.
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(MANIFEST)).unwrap()).unwrap();
        assert_eq!(json["kernel_file"], "vmlinux");
        json.as_object_mut().unwrap().remove("kernel_file");
        std::fs::write(dir.path().join(MANIFEST), json.to_string()).unwrap();
        assert_eq!(ImageManifest::read(dir.path()).unwrap().kernel_file, super::super::KernelFile::Compressed);
    }

    #[test]
    fn a_damaged_manifest_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), b"{\"key\": ").unwrap();
        let e = ImageManifest::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("manifest.json"), "{e}");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
