//! Where a test finds the workspace and the binaries it runs, at run time.
//!
//! The nightly builds the tests once (`cargo nextest archive`) and each shard extracts that archive into its
//! own checkout, where no Rust toolchain exists. Paths compiled in with `env!` name the build machine's
//! checkout; nextest sets the same variables at run time, remapped to where the archive was extracted
//! (`--workspace-remap`, `--extract-to`): nexte.st docs/configuration/env-vars ("CARGO_MANIFEST_DIR: if
//! --workspace-remap is passed in, this is set to the remapped manifest directory"; "NEXTEST_BIN_EXE_<name>:
//! when reusing builds from an archive, this is set to the remapped path within the target directory").
//! So tests read the run-time value first and fall back to the compiled-in one (e.g. under `cargo test`).

use std::path::PathBuf;

/// The workspace root this test runs against. Every crate of the workspace sits one directory below it, so
/// the test's own package directory (`CARGO_MANIFEST_DIR` at run time) tells it, whichever crate it is in.
pub fn workspace_dir() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    package.parent().map(PathBuf::from).unwrap_or(package)
}

/// The cargo target directory the running test binary was built into (`CARGO_TARGET_DIR`, `target/` of
/// whichever workspace built it, or where an archive was extracted): read from the binary's own path, which
/// is right in a single-crate repository, a workspace, a shared `CARGO_TARGET_DIR` and an extracted nextest
/// archive alike, where the package's manifest directory is not. Cargo puts test and bench binaries in
/// `<target>/[<triple>/]<profile>/deps/`, examples in `.../<profile>/examples/`, binaries in `.../<profile>/`
/// (doc.rust-lang.org/cargo/reference/build-cache.html). `CARGO_TARGET_DIR` at run time is the fallback for
/// an executable outside that layout.
pub fn target_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("the test binary's own path: {e}"))?;
    target_dir_of(&exe)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()).map(PathBuf::from))
        .ok_or_else(|| {
            format!(
                "{} is not in a cargo target directory (<target>/<profile>/deps/) and CARGO_TARGET_DIR is unset: \
                 set KTHW_HOME to the directory tests may keep their images and clusters in",
                exe.display()
            )
        })
}

/// `<target>` of `exe` at `<target>/<profile>/{deps,examples}/<exe>` or `<target>/<profile>/<exe>`, told by
/// the `.fingerprint` directory cargo keeps in every profile directory (a triple's too).
fn target_dir_of(exe: &std::path::Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    let profile = match dir.file_name()?.to_str()? {
        "deps" | "examples" => dir.parent()?,
        _ => dir,
    };
    if !profile.join(".fingerprint").is_dir() && !profile.join("deps").is_dir() {
        return None;
    }
    profile.parent().map(PathBuf::from)
}

/// [`crate::paths::Paths::for_tests`], or a failed test naming what to set: what a test passes to
/// [`crate::up::Up::paths`] and to the CLI as `KTHW_HOME`.
pub fn test_paths() -> crate::paths::Paths {
    crate::paths::Paths::for_tests().unwrap_or_else(|why| panic!("no test home: {why}"))
}

/// A binary target of the test's own package: `NEXTEST_BIN_EXE_<name>` (nextest, remapped into an extracted
/// archive), else `CARGO_BIN_EXE_<name>` at run time (nextest, and cargo test since Rust 1.94), else `built`,
/// the path compiled in with `env!("CARGO_BIN_EXE_<name>")`. Only the same package's binaries are given to a
/// test this way (Cargo's and nextest's rule); `kthw-tests` finds the `kthw` binary with its own helper.
pub fn package_binary(name: &str, built: &str) -> PathBuf {
    [format!("NEXTEST_BIN_EXE_{name}"), format!("CARGO_BIN_EXE_{name}")]
        .iter()
        .find_map(|var| std::env::var_os(var).filter(|v| !v.is_empty()))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(built))
}

/// Under CI every prerequisite of a test must be present: a skip there would hide a broken setup script.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The one way a test skips, so that no skip can pass silently or pass under CI: `found` is what the test
/// needs, or why it is missing. Missing, it prints `SKIPPED: <why>` on stderr and returns `None` (the caller
/// returns), or, under `CI=true`, fails the test naming why. The lint tier holds every skip to this helper.
pub fn needs<T>(found: Result<T, String>) -> Option<T> {
    match found {
        Ok(t) => Some(t),
        Err(why) if in_ci() => panic!("CI=true and this test cannot run: {why}"),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// `Ok` when `tool` is an executable file on PATH; otherwise why the test that needs it (`test`) cannot run.
pub fn on_path(tool: &str, test: &str) -> Result<(), String> {
    if crate::files::which(tool).is_some() {
        Ok(())
    } else {
        Err(format!("{test} needs {tool}, which is not on PATH (scripts/setup-host installs it)"))
    }
}

/// Renders the SVG picture `svg` as `png` with librsvg's `rsvg-convert` (Debian's librsvg2-bin; skip through
/// [`needs`] with [`on_path`] when it is missing) and returns the PNG's width and height, once it is checked
/// to be a PNG with something drawn in it: the proof that a real renderer reads the picture.
pub fn render_png(svg: &std::path::Path, png: &std::path::Path) -> (u32, u32) {
    let out = std::process::Command::new("rsvg-convert").arg("-o").arg(png).arg(svg).output();
    let out = out.unwrap_or_else(|e| panic!("cannot run rsvg-convert: {e}"));
    assert!(
        out.status.success(),
        "rsvg-convert cannot draw {}: {}",
        svg.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.get(12..16) == Some(b"IHDR"),
        "{} is no PNG",
        png.display()
    );
    // Bars, a grid and a few lines of text compress to tens of KiB; a blank page to a few hundred bytes.
    assert!(bytes.len() > 8_000, "{} holds next to nothing: {} bytes", png.display(), bytes.len());
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    (be(16), be(20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_named_with_the_test_that_needs_it() {
        let why = on_path("kthw-no-such-tool", "some_test").unwrap_err();
        assert!(why.contains("some_test needs kthw-no-such-tool"), "{why}");
        assert_eq!(needs(Ok::<u8, String>(7)), Some(7));
    }

    #[test]
    fn the_target_directory_is_read_from_the_binary_path_in_every_layout() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("target");
        let triple = root.join("x86_64-unknown-linux-gnu");
        for profile in [root.join("debug"), triple.join("release")] {
            std::fs::create_dir_all(profile.join("deps")).unwrap();
            std::fs::create_dir_all(profile.join("examples")).unwrap();
            std::fs::create_dir_all(profile.join(".fingerprint")).unwrap();
        }
        assert_eq!(target_dir_of(&root.join("debug/deps/vm-0123abcd")), Some(root.clone()));
        assert_eq!(target_dir_of(&root.join("debug/examples/first")), Some(root.clone()));
        assert_eq!(target_dir_of(&root.join("debug/kthw-bench")), Some(root.clone()));
        // With --target, profiles sit one level down: the home goes beside them, still in the target directory.
        assert_eq!(target_dir_of(&triple.join("release/deps/t-1")), Some(triple));
        // An installed binary is in no build directory: nothing to name.
        std::fs::create_dir_all(t.path().join("bin")).unwrap();
        assert_eq!(target_dir_of(&t.path().join("bin/kthw")), None);
        // This test binary runs from cargo's layout: its own target directory holds its profile's deps.
        let exe = std::env::current_exe().unwrap();
        let here = target_dir().unwrap();
        assert!(exe.starts_with(&here), "{} is not under {}", exe.display(), here.display());
    }

    #[test]
    fn the_workspace_holds_this_crate_and_the_workflows() {
        let root = workspace_dir();
        assert!(root.join("harness/Cargo.toml").is_file(), "{}", root.display());
        assert!(root.join(".github/workflows").is_dir(), "{}", root.display());
    }
}
