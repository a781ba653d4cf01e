//! The small initrd: the image's own static busybox, the few kernel modules that mounting the root disk needs
//! (with their dependencies from modules.dep, in load order), and the recipe's `/init`. Written as an
//! uncompressed newc cpio: the kernel unpacks it fastest, and it is only a few MiB.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use super::ImageError;

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir {
        path: String,
    },
    File {
        path: String,
        mode: u32,
        content: Vec<u8>,
    },
    /// A character device (the kernel needs /dev/console to give /init its stdio).
    CharDev {
        path: String,
        major: u32,
        minor: u32,
    },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::Dir { path } | Entry::File { path, .. } | Entry::CharDev { path, .. } => path,
        }
    }
}

/// The modules `wanted` need, dependencies first, each once, as paths relative to /lib/modules/<version>.
/// `modules_dep` is that kernel's modules.dep.
pub fn resolve_modules(modules_dep: &str, wanted: &[String]) -> Result<Vec<String>, ImageError> {
    let deps: HashMap<&str, Vec<&str>> = modules_dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m.trim(), d.split_whitespace().collect()))
        .collect();
    let by_name: HashMap<String, &str> = deps.keys().map(|p| (module_name(p), *p)).collect();
    let mut order = Vec::new();
    for w in wanted {
        let path = by_name.get(&w.replace('-', "_")).ok_or_else(|| {
            ImageError::Rootfs(format!("kernel module {w} (initrd_modules in recipe.toml) is not in modules.dep"))
        })?;
        visit(path, &deps, &mut order);
    }
    Ok(order)
}

fn visit(path: &str, deps: &HashMap<&str, Vec<&str>>, order: &mut Vec<String>) {
    if order.iter().any(|p| p == path) {
        return;
    }
    // modules.dep lists a module's full dependency closure, deepest last; load those in reverse.
    for d in deps.get(path).into_iter().flatten().rev() {
        visit(d, deps, order);
    }
    order.push(path.to_string());
}

/// `kernel/fs/ext4/ext4.ko.xz` -> `ext4`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// Everything in the initrd: busybox, `init`, the modules and `/modules` naming them in load order.
pub fn entries(busybox: Vec<u8>, init: &[u8], modules: &[(String, Vec<u8>)]) -> Vec<Entry> {
    let mut e: Vec<Entry> = ["bin", "dev", "proc", "sys", "root", "lib", "lib/modules"]
        .iter()
        .map(|d| Entry::Dir { path: d.to_string() })
        .collect();
    e.push(Entry::CharDev { path: "dev/console".into(), major: 5, minor: 1 });
    e.push(Entry::File { path: "bin/busybox".into(), mode: 0o755, content: busybox });
    e.push(Entry::File { path: "init".into(), mode: 0o755, content: init.to_vec() });
    let mut list = String::new();
    for (i, (name, content)) in modules.iter().enumerate() {
        let file = format!("{i:02}-{}", name.rsplit('/').next().unwrap_or(name));
        list.push_str(&file);
        list.push('\n');
        e.push(Entry::File { path: format!("lib/modules/{file}"), mode: 0o644, content: content.clone() });
    }
    e.push(Entry::File { path: "modules".into(), mode: 0o644, content: list.into_bytes() });
    e
}

/// The initrd for the kernel `version` in `rootfs`.
pub fn from_rootfs(rootfs: &Path, version: &str, init: &[u8], wanted: &[String]) -> Result<Vec<Entry>, ImageError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| ImageError::io("reading", p, e));
    let mods = rootfs.join("lib/modules").join(version);
    let dep = read(&mods.join("modules.dep"))?;
    let order = resolve_modules(&String::from_utf8_lossy(&dep), wanted)?;
    let modules = order.into_iter().map(|m| Ok((m.clone(), read(&mods.join(&m))?))).collect::<Result<Vec<_>, _>>()?;
    Ok(entries(read(&rootfs.join("bin/busybox"))?, init, &modules))
}

/// Writes `entries` as a newc cpio archive.
pub fn write_cpio(out: &mut impl Write, entries: &[Entry]) -> std::io::Result<()> {
    for (ino, e) in (1..).zip(entries) {
        let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match e {
            Entry::Dir { .. } => (0o040755, &[], (0, 0)),
            Entry::File { mode, content, .. } => (0o100000 | mode, content, (0, 0)),
            Entry::CharDev { major, minor, .. } => (0o020600, &[], (*major, *minor)),
        };
        header(out, ino, mode, data.len(), rdev, e.path())?;
        out.write_all(data)?;
        pad(out, data.len())?;
    }
    header(out, 0, 0, 0, (0, 0), "TRAILER!!!")
}

fn header(out: &mut impl Write, ino: u32, mode: u32, size: usize, rdev: (u32, u32), name: &str) -> std::io::Result<()> {
    let nlink = if mode & 0o040000 != 0 { 2 } else { 1 };
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
    let fields = [ino, mode, 0, 0, nlink, 0, size as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
    let mut h = String::from("070701");
    for f in fields {
        h.push_str(&format!("{f:08x}"));
    }
    out.write_all(h.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    pad(out, h.len() + name.len() + 1)
}

fn pad(out: &mut impl Write, len: usize) -> std::io::Result<()> {
    out.write_all(&[0; 3][..(4 - len % 4) % 4])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by hand to exercise the modules.dep reader: a dependency chain in that file's format.
    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko
";

    fn wanted(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn modules_come_with_their_dependencies_first_and_once() {
        let order = resolve_modules(DEP, &wanted(&["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"])).unwrap();
        let names: Vec<String> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(
            names,
            [
                "virtio_ring",
                "virtio",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio_pci",
                "virtio_blk",
                "crc32c_generic",
                "jbd2",
                "mbcache",
                "crc16",
                "ext4"
            ]
        );
        assert!(!names.contains(&"virtio_net".to_string()), "only what mounting root needs");
    }

    #[test]
    fn an_unknown_module_is_an_error_naming_it() {
        let e = resolve_modules(DEP, &wanted(&["nvme"])).unwrap_err().to_string();
        assert!(e.contains("nvme") && e.contains("recipe.toml"), "{e}");
    }

    #[test]
    fn the_initrd_holds_busybox_init_console_and_the_modules_in_order() {
        let mods = vec![("kernel/a/virtio.ko".to_string(), b"v".to_vec()), ("kernel/b/ext4.ko".into(), b"e".to_vec())];
        let e = entries(b"busybox".to_vec(), b"#!/bin/busybox sh\n", &mods);
        let paths: Vec<&str> = e.iter().map(Entry::path).collect();
        for p in ["init", "bin/busybox", "dev/console", "proc", "sys", "root", "lib/modules/00-virtio.ko"] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
        let list = e.iter().find_map(|e| match e {
            Entry::File { path, content, .. } if path == "modules" => Some(String::from_utf8_lossy(content)),
            _ => None,
        });
        assert_eq!(list.unwrap(), "00-virtio.ko\n01-ext4.ko\n");
    }

    #[test]
    fn the_archive_is_what_gnu_cpio_reads() {
        let e = entries(b"busybox".to_vec(), b"init", &[("kernel/x/ext4.ko".into(), b"abc".to_vec())]);
        let mut buf = Vec::new();
        write_cpio(&mut buf, &e).unwrap();
        assert_eq!(buf.len() % 4, 0);
        let on_path = crate::testing::on_path("cpio", "the_archive_is_what_gnu_cpio_reads");
        let Some(()) = crate::testing::needs(on_path) else { return };
        let mut cpio = std::process::Command::new("cpio")
            .args(["-it", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        cpio.stdin.take().unwrap().write_all(&buf).unwrap();
        let out = cpio.wait_with_output().unwrap();
        let listed: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        let expected: Vec<String> = e.iter().map(|e| e.path().to_string()).collect();
        assert_eq!(listed, expected);
    }
}
