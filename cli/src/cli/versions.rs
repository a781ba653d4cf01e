//! `kthw versions`: lock a spec's versions (resolve them once from the publishers), show them, and show the
//! ranges and upstream tables kthw holds them to.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use kthw::artifacts::{Cache, Download, Mirror};
use kthw::lock::{lock_path, Lock, Resolver, Sources};
use kthw::paths::Paths;
use kthw::spec::support::{CILIUM, CILIUM_CLI, CILIUM_RULE, CONTAINERD, ETCD, ETCD_SOURCE, RANGES};
use kthw::spec::{VersionKey, VersionSet};
use kthw::ClusterSpec;

#[derive(Debug, Subcommand)]
pub enum VersionsCommand {
    /// Resolve the spec's versions into a lock beside it (`lab.toml` -> `lab.lock`): every file's URL with the
    /// checksum its publisher puts beside it, every image's digest from the Cilium chart or the registry.
    /// A preset's lock ships with kthw and is written without asking anyone.
    Lock {
        /// The cluster spec whose `[versions]` to lock.
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
        /// Write the lock here instead of beside the spec (later runs look beside the spec).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Resolve again even when the lock there already holds these versions.
        #[arg(long)]
        update: bool,
        /// Ask this mirror instead of upstream: a file at the mirror URL followed by the path of its upstream
        /// URL (dl.k8s.io, GitHub releases, helm.cilium.io), as `kthw artifacts fetch --mirror` does.
        #[arg(long, env = "KTHW_ARTIFACT_MIRROR", value_name = "URL")]
        mirror: Option<String>,
        /// Ask this registry for image digests (the mirror's host as registry by default): the URL's host, then
        /// its path, then the repository without its registry; an http:// URL is a registry without TLS.
        #[arg(long, env = "KTHW_REGISTRY_MIRROR", value_name = "URL")]
        registry_mirror: Option<String>,
        /// The artifact directory to keep the Cilium chart in (read while resolving, so never downloaded
        /// twice); the cache by default.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Every component's version for a spec, whether it is the preset's or the spec's own, and its lock.
    Show {
        /// A spec file; without it, the seed's cluster.
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
    },
    /// The versions kthw supports and the upstream tables that decide which run together, with their sources.
    Ranges,
}

pub fn run(cmd: VersionsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VersionsCommand::Lock { spec, out, update, mirror, registry_mirror, dir } => {
            let loaded = ClusterSpec::load(&spec)?;
            let out = out.unwrap_or_else(|| lock_path(&spec));
            let v = loaded.versions.pins();
            if let Some(set) = loaded.versions.as_preset() {
                Lock::preset(set).write(&out)?;
                println!(
                    "{}: the {set} preset; its lock ships with kthw, written to {}",
                    spec.display(),
                    out.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            if !update && out.is_file() {
                if let Ok(lock) = Lock::read(&out) {
                    if lock.changes(&v).is_empty() {
                        println!("{} already locks {v}; nothing resolved (--update resolves again)", out.display());
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
            let files = mirror.as_deref().map(Mirror::parse).transpose()?;
            let registry = registry_mirror.as_deref().map(Mirror::parse).transpose()?;
            let scratch = tempfile::tempdir().context("a scratch directory for checksum files")?;
            let resolver = Resolver {
                sources: Sources { files, registry },
                download: Download::default(),
                scratch: scratch.path().to_path_buf(),
                cache: Some(Cache::new(dir.unwrap_or_else(|| Paths::from_env().artifacts()))),
            };
            let resolved = resolver.resolve(&v, loaded.versions.preset)?;
            resolved.lock.write(&out)?;
            for a in &resolved.lock.artifacts {
                let sum = a.checksum.as_deref().or(a.digest.as_deref()).unwrap_or("-");
                println!("  {:<24} {:<10} {}  {}", a.name, a.version, sum.get(..19).unwrap_or(sum), a.locator());
            }
            println!(
                "{}: locked {} ({} artifacts, {} URLs asked) into {}",
                spec.display(),
                loaded.versions,
                resolved.lock.artifacts.len(),
                resolved.asked.len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        VersionsCommand::Show { spec } => {
            let loaded = ClusterSpec::load_or_default(spec.as_deref())?;
            let v = loaded.versions.pins();
            println!("versions: {} (unnamed components from the {} preset)", loaded.versions, loaded.versions.preset);
            for key in VersionKey::ALL {
                let from = if loaded.versions.named.contains_key(&key) { "named" } else { "preset" };
                println!("  {:<12} {:<10} {from}", key.key(), v.get(key));
            }
            println!("lock: {}", lock_state(&loaded, spec.as_deref()));
            Ok(ExitCode::SUCCESS)
        }
        VersionsCommand::Ranges => {
            println!("kthw supports (README.md, Versions):");
            for r in RANGES {
                let (o, n) = (r.oldest, r.newest);
                println!("  {:<12} {}.{} to {}.{}: {}", r.key.key(), o.0, o.1, n.0, n.1, r.why);
            }
            println!("Cilium's Kubernetes compatibility (per minor; rows not read follow {CILIUM_RULE}):");
            for row in CILIUM {
                let k: Vec<String> = row.kubernetes.iter().map(|m| format!("{}.{}", m.0, m.1)).collect();
                println!(
                    "  cilium {}.{}: kubernetes {}  ({})",
                    row.cilium.0,
                    row.cilium.1,
                    k.join(", "),
                    row.source.at
                );
            }
            println!("containerd's Kubernetes support table:");
            for row in CONTAINERD {
                let c: Vec<String> = row.containerd.iter().map(|r| format!("{r}+")).collect();
                let (k0, k1) = row.kubernetes;
                println!("  kubernetes {k0}.{k1}: containerd {}  ({})", c.join(", "), row.source.at);
            }
            println!("the cilium CLI's Releases table:");
            for row in CILIUM_CLI {
                let (c, o) = (row.cli, row.oldest_cilium);
                println!("  cilium CLI {}.{}: Cilium {}.{} and newer  ({})", c.0, c.1, o.0, o.1, row.source.at);
            }
            let etcd: Vec<String> = ETCD.iter().map(|m| format!("{}.{}", m.0, m.1)).collect();
            println!("etcd: {}  ({})", etcd.join(", "), ETCD_SOURCE.at);
            println!("presets: {}", VersionSet::NAMES.join(", "));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn lock_state(spec: &ClusterSpec, path: Option<&Path>) -> String {
    match kthw::lock::for_spec(&spec.versions, path) {
        Ok(lock) if spec.versions.as_preset().is_some() => {
            format!("shipped with kthw ({} artifacts)", lock.artifacts.len())
        }
        Ok(lock) => format!(
            "{} ({}; {} artifacts)",
            lock_path(path.expect("a custom spec has a file")).display(),
            lock.resolved,
            lock.artifacts.len()
        ),
        Err(e) => e.to_string(),
    }
}
