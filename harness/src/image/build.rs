//! The build pipeline: mmdebstrap into a directory, the recipe's files and units, then `mkfs.ext4 -d` and
//! `qemu-img convert` into a qcow2 (no loop devices, no mounts), the kernel, both initrds and the manifest.
//! Everything happens in a `.build-<key>-<pid>` directory renamed into place at the end, under the key's lock.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, BufReader};

use super::cache::{dir_size, image_at, is_leftover_of, KeyLock};
use super::manifest::{installed_packages, rfc3339, ImageManifest};
use super::recipe::{Recipe, ROOTFS_FILES};
use super::{initrd, kernel, BuildOptions, ImageError, KernelFile, NodeImage, DEBIAN_INITRD, DISK, INITRD};
use crate::paths::Paths;

const FIX_TOOLS: &str =
    "sudo scripts/setup-host installs mmdebstrap, e2fsprogs and qemu-utils; `kthw doctor` checks them";

/// The current recipe's image: from the cache when built (well under a second), else built now.
pub async fn build(paths: &Paths, opts: &BuildOptions) -> Result<NodeImage, ImageError> {
    let recipe = opts.recipe()?;
    let key = recipe.key();
    let images = paths.images();
    let dir = images.join(&key);
    if !opts.force {
        if let Some(image) = image_at(&dir)? {
            tracing::debug!(key, "node image cache hit");
            return Ok(image);
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(ImageError::NotRoot);
    }
    let lock = {
        let (images, key) = (images.clone(), key.clone());
        tokio::task::spawn_blocking(move || KeyLock::acquire(&images, &key, true))
            .await
            .map_err(|e| ImageError::Join(e.to_string()))??
    };
    // Whoever held the lock may just have built it.
    if !opts.force {
        if let Some(image) = image_at(&dir)? {
            return Ok(image);
        }
    }
    remove_leftovers(&images, &key)?;
    let work = images.join(format!(".build-{key}-{}", std::process::id()));
    let result = build_in(&recipe, &work).await;
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e);
        }
    };
    install(&work, &dir, &images, &key)?;
    drop(lock);
    let image = image_at(&dir)?
        .ok_or_else(|| ImageError::Rootfs(format!("{} is incomplete after the build", dir.display())))?;
    tracing::info!(
        key,
        seconds = format!("{:.1}", manifest.build_seconds),
        size_mib = dir_size(&dir) >> 20,
        packages = manifest.packages.len(),
        kernel = manifest.kernel_version,
        dir = %dir.display(),
        "node image built"
    );
    Ok(image)
}

/// Killed builds leave their directories; nothing else can be using them while we hold the key's lock.
fn remove_leftovers(images: &Path, key: &str) -> Result<(), ImageError> {
    let Ok(entries) = std::fs::read_dir(images) else { return Ok(()) };
    for e in entries.flatten() {
        if is_leftover_of(&e.file_name().to_string_lossy(), key) {
            tracing::info!(path = %e.path().display(), "removing what an interrupted build left");
            std::fs::remove_dir_all(e.path()).map_err(|err| ImageError::io("removing", &e.path(), err))?;
        }
    }
    Ok(())
}

/// Renames the finished build into place; a forced rebuild moves the old image aside first.
fn install(work: &Path, dir: &Path, images: &Path, key: &str) -> Result<(), ImageError> {
    let old = images.join(format!(".old-{key}-{}", std::process::id()));
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| ImageError::io("moving the old image aside", dir, e))?;
    }
    std::fs::rename(work, dir).map_err(|e| ImageError::io("renaming the build into place", work, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| ImageError::io("removing the old image", &old, e))?;
    }
    Ok(())
}

async fn build_in(recipe: &Recipe, work: &Path) -> Result<ImageManifest, ImageError> {
    let start = Instant::now();
    let recipe_dir = work.join("recipe");
    let rootfs = work.join("rootfs");
    write_recipe(recipe, &recipe_dir)?;

    let keyring = Path::new(&recipe.config.keyring);
    if !keyring.is_file() {
        return Err(ImageError::Keyring { path: keyring.to_path_buf() });
    }
    let packages = recipe.packages()?;
    tracing::info!(key = recipe.key(), packages = packages.len(), suites = ?recipe.suites(), "phase 1/4: mmdebstrap");
    run("mmdebstrap", mmdebstrap_command(recipe, &packages, &recipe_dir, &rootfs), true).await?;

    let status = read_text(&rootfs.join("var/lib/dpkg/status"))?;
    let installed = installed_packages(&status);
    let kernel_version = kernel_version(&rootfs)?;
    tracing::info!(installed = installed.len(), kernel = kernel_version, "phase 2/4: kernel and initrds");
    let bzimage = work.join(KernelFile::Compressed.file_name());
    copy(&rootfs.join(format!("boot/vmlinuz-{kernel_version}")), &bzimage)?;
    let kernel_file = recipe.kernel_file()?;
    if kernel_file == KernelFile::Uncompressed {
        kernel::extract(&bzimage, &work.join(kernel_file.file_name())).await?;
    }
    copy(&rootfs.join(format!("boot/initrd.img-{kernel_version}")), &work.join(DEBIAN_INITRD))?;
    let init = recipe.file("initrd/init")?.content;
    let entries = initrd::from_rootfs(&rootfs, &kernel_version, init, &recipe.config.initrd_modules)?;
    let initrd_modules = entries
        .iter()
        .filter_map(|e| match e {
            initrd::Entry::File { path, .. } if path.starts_with("lib/modules/") => Some(path.clone()),
            _ => None,
        })
        .collect();
    write_initrd(&work.join(INITRD), &entries)?;

    tracing::info!(disk_gib = recipe.config.disk_gib, "phase 3/4: mkfs.ext4 -d");
    let raw = work.join("disk.raw");
    let mut mkfs = tokio::process::Command::new("mkfs.ext4");
    mkfs.args(["-q", "-F", "-L", "kthw-root", "-E", "root_owner=0:0", "-d"])
        .arg(&rootfs)
        .arg(&raw)
        .arg(format!("{}G", recipe.config.disk_gib));
    run("mkfs.ext4", mkfs, false).await?;
    std::fs::remove_dir_all(&rootfs).map_err(|e| ImageError::io("removing", &rootfs, e))?;

    tracing::info!("phase 4/4: qemu-img convert -O qcow2");
    let mut convert = tokio::process::Command::new("qemu-img");
    convert.args(["convert", "-O", "qcow2"]).arg(&raw).arg(work.join(DISK));
    run("qemu-img convert", convert, false).await?;
    std::fs::remove_file(&raw).map_err(|e| ImageError::io("removing", &raw, e))?;
    std::fs::remove_dir_all(&recipe_dir).map_err(|e| ImageError::io("removing", &recipe_dir, e))?;
    // The base disk is only ever a backing file.
    std::fs::set_permissions(work.join(DISK), std::fs::Permissions::from_mode(0o444))
        .map_err(|e| ImageError::io("making read-only", &work.join(DISK), e))?;

    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let manifest = ImageManifest {
        key: recipe.key(),
        recipe_hash: recipe.hash(),
        release: recipe.config.release.clone(),
        suites: recipe.suites(),
        mirror: recipe.mirror.clone(),
        security_mirror: recipe.security_mirror.clone(),
        kernel_version,
        kernel_file,
        kernel_cmdline: recipe.config.cmdline.clone(),
        initrd_modules,
        packages: installed,
        built_at_unix: now,
        built_at: rfc3339(now),
        build_seconds: start.elapsed().as_secs_f64(),
        disk_virtual_bytes: recipe.config.disk_gib << 30,
        kthw_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    manifest.write(work)?;
    Ok(manifest)
}

fn mmdebstrap_command(
    recipe: &Recipe,
    packages: &[String],
    recipe_dir: &Path,
    rootfs: &Path,
) -> tokio::process::Command {
    // mmdebstrap's root mode mounts proc, sys and dev into the rootfs; in a private mount namespace those
    // mounts die with the process, so a killed build cannot leave them on the host (nor under .build-*).
    let mut c = tokio::process::Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "mmdebstrap"]);
    c.args(["--variant=apt", "--mode=root", "--format=directory", "--aptopt=Acquire::Languages \"none\""])
        .arg(format!("--include={}", packages.join(",")));
    build_speedups(&mut c);
    for p in &recipe.config.dpkg_exclude {
        c.arg(format!("--dpkgopt=path-exclude={p}"));
    }
    for p in &recipe.config.dpkg_include {
        c.arg(format!("--dpkgopt=path-include={p}"));
    }
    c.arg(format!("--customize-hook=sync-in {} /", recipe_dir.join(ROOTFS_FILES).display()))
        .arg(format!(
            "--customize-hook=sh -eu {} \"$1\" {}",
            recipe_dir.join("customize.sh").display(),
            recipe_dir.display()
        ))
        .arg(&recipe.config.release)
        .arg(rootfs)
        .args(recipe.sources());
    c
}

/// mmdebstrap's eatmydata hook: dpkg runs under libeatmydata, so neither its unpacked files nor its database
/// are fsync'd. Its scripts fetch eatmydata from the build's own apt sources and call `dpkg-architecture`.
const EATMYDATA_HOOK: &str = "/usr/share/mmdebstrap/hooks/eatmydata";

/// Before the non-essential packages: update-initramfs becomes a no-op. Installing them builds Debian's
/// initramfs twice (the kernel's postinst, then initramfs-tools' trigger that later packages' hooks set off),
/// each about 30 s of a cold build; both are thrown away but the last.
const DEFER_INITRAMFS: &str = "chroot \"$1\" dpkg-divert --quiet --local --rename \
    --divert /usr/sbin/update-initramfs.kthw --add /usr/sbin/update-initramfs \
    && printf '#!/bin/sh\\nexit 0\\n' >\"$1/usr/sbin/update-initramfs\" && chmod 755 \"$1/usr/sbin/update-initramfs\"";

/// After them: update-initramfs back as Debian ships it, run once, with every package's hooks in place, as
/// the last of the two runs was. dpkg-divert's backup of its table goes too: no build without this left one.
const INITRAMFS_ONCE: &str = "rm \"$1/usr/sbin/update-initramfs\" \
    && chroot \"$1\" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs \
    && rm -f \"$1/var/lib/dpkg/diversions-old\" \
    && if [ -x \"$1/usr/sbin/update-initramfs\" ]; then chroot \"$1\" update-initramfs -c -k all; fi";

/// What makes a cold build faster without changing what it builds: dpkg without fsync (the image is
/// written once, by one process, and thrown away if the build dies: nothing to be durable for) and Debian's
/// initramfs built once. The rootfs is the same, file for file, as without them, so the cache key (the
/// recipe and the mirrors: what the image *is*) stays as it is and images already built stay valid.
fn build_speedups(c: &mut tokio::process::Command) {
    // Unpacked files without fsync: a dpkg option every mmdebstrap passes on, needing nothing else.
    c.arg("--dpkgopt=force-unsafe-io");
    // eatmydata also spares dpkg's database syncs, several per package (essential packages: 50 s with
    // neither, 32 s with force-unsafe-io, 17 s with eatmydata, on this project's 2-core host).
    let hook = Path::new(EATMYDATA_HOOK);
    let missing = if !hook.join("extract.sh").is_file() || !hook.join("customize.sh").is_file() {
        Some(format!("{EATMYDATA_HOOK} is missing (mmdebstrap without its hooks)"))
    } else if crate::files::which("dpkg-architecture").is_none() {
        Some("its scripts call dpkg-architecture, which is not on PATH (the dpkg-dev package)".to_string())
    } else {
        None
    };
    match missing {
        None => {
            tracing::debug!(hook = EATMYDATA_HOOK, "dpkg runs without fsync under mmdebstrap's eatmydata hook");
            c.arg(format!("--hook-dir={EATMYDATA_HOOK}"));
        }
        Some(why) => tracing::info!(
            "mmdebstrap's eatmydata hook is not usable: {why}; falling back to dpkg's --force-unsafe-io alone, \
             which still syncs dpkg's database (a cold build takes longer)"
        ),
    }
    c.arg(format!("--essential-hook={DEFER_INITRAMFS}")).arg(format!("--customize-hook={INITRAMFS_ONCE}"));
}

/// Writes the embedded recipe out for mmdebstrap's hooks, with its modes.
fn write_recipe(recipe: &Recipe, dir: &Path) -> Result<(), ImageError> {
    for f in &recipe.files {
        let path = dir.join(f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ImageError::io("creating", parent, e))?;
        }
        std::fs::write(&path, f.content).map_err(|e| ImageError::io("writing", &path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
            .map_err(|e| ImageError::io("chmod", &path, e))?;
    }
    Ok(())
}

fn write_initrd(path: &Path, entries: &[initrd::Entry]) -> Result<(), ImageError> {
    let file = std::fs::File::create(path).map_err(|e| ImageError::io("creating", path, e))?;
    let mut out = std::io::BufWriter::new(file);
    initrd::write_cpio(&mut out, entries)
        .and_then(|_| std::io::Write::flush(&mut out))
        .map_err(|e| ImageError::io("writing", path, e))
}

/// The one kernel under /boot.
fn kernel_version(rootfs: &Path) -> Result<String, ImageError> {
    let boot = rootfs.join("boot");
    let entries = std::fs::read_dir(&boot).map_err(|e| ImageError::io("reading", &boot, e))?;
    let mut versions: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().strip_prefix("vmlinuz-").map(str::to_string))
        .collect();
    match versions.len() {
        1 => Ok(versions.remove(0)),
        n => Err(ImageError::Rootfs(format!("expected one kernel in {}, found {n}: {versions:?}", boot.display()))),
    }
}

fn read_text(path: &Path) -> Result<String, ImageError> {
    std::fs::read_to_string(path).map_err(|e| ImageError::io("reading", path, e))
}

fn copy(from: &Path, to: &Path) -> Result<(), ImageError> {
    std::fs::copy(from, to).map(|_| ()).map_err(|e| ImageError::io("copying", from, e))
}

/// Runs a build tool, logging its progress lines when `progress`, and keeps the tail of its output for the
/// error a person will read.
async fn run(step: &'static str, mut cmd: tokio::process::Command, progress: bool) -> Result<(), ImageError> {
    let command = format!("{:?}", cmd.as_std()).replace('"', "");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| ImageError::Tool {
        step,
        command: command.clone(),
        status: "could not start".into(),
        output: e.to_string(),
        fix: FIX_TOOLS.into(),
    })?;
    let stdout = child.stdout.take().map(|s| BufReader::new(s).lines());
    let stderr = child.stderr.take().map(|s| BufReader::new(s).lines());
    let mut tail: Vec<String> = Vec::new();
    let mut push = |line: String| {
        if progress && line.starts_with("I: ") {
            tracing::info!("{step}: {}", &line[3..]);
        } else {
            tracing::debug!("{step}: {line}");
        }
        tail.push(line);
        if tail.len() > 40 {
            tail.remove(0);
        }
    };
    let (mut out, mut err) = (stdout, stderr);
    loop {
        tokio::select! {
            l = async { out.as_mut().unwrap().next_line().await }, if out.is_some() => match l {
                Ok(Some(l)) => push(l),
                _ => out = None,
            },
            l = async { err.as_mut().unwrap().next_line().await }, if err.is_some() => match l {
                Ok(Some(l)) => push(l),
                _ => err = None,
            },
            else => break,
        }
    }
    let status = child.wait().await.map_err(|e| ImageError::Tool {
        step,
        command: command.clone(),
        status: "could not be waited for".into(),
        output: e.to_string(),
        fix: FIX_TOOLS.into(),
    })?;
    if status.success() {
        return Ok(());
    }
    Err(ImageError::Tool {
        step,
        command,
        status: status.to_string(),
        output: tail.join("\n"),
        fix: "read the output above; a download failure means the mirror is unreachable (KTHW_DEBIAN_MIRROR picks another)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debians_initramfs_is_built_once_before_the_recipe_customizes_the_rootfs_and_dpkg_never_syncs() {
        let recipe = Recipe::embedded(None, None).unwrap();
        let c = mmdebstrap_command(&recipe, &recipe.packages().unwrap(), Path::new("/r"), Path::new("/root"));
        let args: Vec<String> = c.as_std().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let at = |want: &str| args.iter().position(|a| a == want).unwrap_or_else(|| panic!("no {want}: {args:?}"));
        assert!(args.contains(&"--dpkgopt=force-unsafe-io".to_string()));
        let once = at(&format!("--customize-hook={INITRAMFS_ONCE}"));
        assert!(at(&format!("--essential-hook={DEFER_INITRAMFS}")) < once);
        // The initramfs is made from the packages as installed, before files/ and customize.sh change them,
        // as when dpkg's own runs made it.
        assert!(once < at("--customize-hook=sync-in /r/files/ /"));
        if let Some(hook) = args.iter().position(|a| a.starts_with("--hook-dir=")) {
            assert!(hook < once, "eatmydata's dpkg wrapper is gone before update-initramfs runs");
        }
    }
}
