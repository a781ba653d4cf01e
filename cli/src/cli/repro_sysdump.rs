//! `kthw repro SYSDUMP.zip`: a `cilium sysdump` turned into a kthw spec (its Kubernetes and Cilium versions,
//! its Helm values), with what could not be carried over said, written beside the archive. Its versions are
//! rarely a preset, so they must be locked (`kthw versions lock`) before the cluster can be stood up; once the
//! lock is beside the spec, the same command goes on to `kthw repro SPEC`.

use std::path::{Path, PathBuf};

use kthw::sysdump::Sysdump;

/// The spec to reproduce, once it exists and its versions are locked; None when the person has a step to do
/// first (said on the output) or the sysdump cannot become a valid spec (said on stderr).
pub fn spec_from(path: &Path, name: Option<&str>) -> anyhow::Result<Option<PathBuf>> {
    let dump = match Sysdump::read(path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot reproduce {}: {e}\nnothing was booted", path.display());
            return Ok(None);
        }
    };
    let name = name.map_or_else(|| "repro-sysdump".to_string(), str::to_string);
    let carried = dump.to_spec(&name);
    println!("from {}:", path.display());
    for c in &carried.carried {
        println!("  carried: {c}");
    }
    for n in &carried.not_carried {
        println!("  not carried: {n}");
    }
    if !carried.spec.violations().is_empty() {
        eprintln!("error: the sysdump's cluster is not one kthw can stand up (above); nothing was booted");
        return Ok(None);
    }
    let spec_path = path.with_extension("kthw.toml");
    std::fs::write(&spec_path, carried.spec.to_effective_toml())?;
    println!("wrote {}", spec_path.display());
    match kthw::lock::for_spec(&carried.spec.versions, Some(&spec_path)) {
        Ok(_) => Ok(Some(spec_path)),
        Err(e) => {
            println!("{e}\nthen run `kthw repro {}` again; nothing was booted", path.display());
            Ok(None)
        }
    }
}
