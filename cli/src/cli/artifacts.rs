use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use kthw::artifacts::{Artifact, Cache, Manifest, Mirror, State};
use kthw::paths::Paths;
use kthw::spec::{ClusterSpec, VersionSet};

#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// Show every pinned artifact of every version set (or of a spec's versions): cached, unverified or
    /// missing, and the command that provides what is missing.
    List {
        /// An artifact directory to look in instead of the cache.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Only what this spec's versions pin: a preset's, or the lock beside the spec.
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
    },
    /// Download every pinned artifact (or the named ones), with progress, and verify each against its
    /// published checksum.
    Fetch {
        /// Download into this directory (usable later with `--artifacts-dir`) instead of the cache.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Fetch from this mirror instead of upstream: a file from the mirror URL followed by the path of its
        /// upstream URL, an image from the mirror's host as a registry (the mirror's path, then the repository
        /// without its registry), by the same digest.
        #[arg(long, env = "KTHW_ARTIFACT_MIRROR", value_name = "URL")]
        mirror: Option<String>,
        /// The version set to fetch: seed, current, or all. Default: the versions of `--spec` (their lock), else
        /// the seed's.
        #[arg(long, value_name = "SET", conflicts_with = "spec")]
        set: Option<String>,
        /// Fetch what this cluster spec's versions pin: a preset's, or the lock beside the spec.
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        /// Only these artifacts, by name.
        names: Vec<String>,
    },
}

/// The artifacts `--set`/`--spec` select: the named presets' shipped locks, or the lock of the spec's
/// versions (a preset's, or the one `kthw versions lock` wrote beside it).
fn selected(set: Option<&str>, spec: Option<&std::path::Path>) -> anyhow::Result<Vec<Artifact>> {
    let sets = match (set, spec) {
        (Some("all"), _) => VersionSet::ALL.to_vec(),
        (Some(name), _) => vec![name.parse::<VersionSet>().map_err(|e| anyhow::anyhow!("--set: {e}, or all"))?],
        (None, spec) => {
            let loaded = ClusterSpec::load_or_default(spec)?;
            return Ok(kthw::lock::for_spec(&loaded.versions, spec)?.artifacts);
        }
    };
    Ok(sets.into_iter().flat_map(|s| Manifest::pinned().for_set(s).artifacts).collect())
}

/// Which lock an artifact is of: a preset's, or the spec's own (`lock`).
fn set_of(a: &Artifact) -> &'static str {
    a.set.map_or("lock", |s| s.name())
}

fn cache(dir: Option<PathBuf>) -> Cache {
    Cache::new(dir.unwrap_or_else(|| Paths::from_env().artifacts()))
}

pub fn run(cmd: ArtifactsCommand) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::pinned();
    match cmd {
        ArtifactsCommand::List { dir, spec } => {
            let cache = cache(dir);
            println!("artifacts in {}:", cache.dir.display());
            let mut missing = 0;
            let groups: Vec<(String, Manifest)> = match &spec {
                Some(path) => {
                    let loaded = ClusterSpec::load(path)?;
                    let lock = kthw::lock::for_spec(&loaded.versions, Some(path))?;
                    vec![(format!("{} ({}): {}", path.display(), loaded.versions, lock.versions), lock.manifest())]
                }
                None => manifest
                    .sets()
                    .into_iter()
                    .map(|set| {
                        let v = set.pins();
                        let title = format!(
                            "version set {set} (`versions = \"{set}\"`): kubernetes {}, etcd {}, cilium {}, cilium CLI {}, coredns {}",
                            v.kubernetes, v.etcd, v.cilium, v.cilium_cli, v.coredns
                        );
                        (title, manifest.for_set(set))
                    })
                    .collect(),
            };
            let total: usize = groups.iter().map(|(_, m)| m.artifacts.len()).sum();
            for (title, of_set) in &groups {
                println!("{title}");
                for e in cache.status(of_set) {
                    let a = e.artifact;
                    let state = match e.state {
                        State::Cached => "cached",
                        State::Unverified => "unverified",
                        State::Absent => "missing",
                    };
                    println!("  {:<24} {:<10} {:<10} {}", a.name, short(&a.upstream_version), state, a.locator());
                    if e.state != State::Cached {
                        missing += 1;
                        println!("  {:<24} provide with: {}", "", cache.command_for(a));
                    }
                }
            }
            println!("{missing} of {total} not cached");
            Ok(ExitCode::SUCCESS)
        }
        ArtifactsCommand::Fetch { dir, mirror, set, spec, names } => {
            let mirror = mirror.as_deref().map(Mirror::parse).transpose()?;
            let cache = cache(dir).with_mirror(mirror);
            let selected = selected(set.as_deref(), spec.as_deref())?;
            if let Some(unknown) = names.iter().find(|n| !selected.iter().any(|a| &&a.name == n)) {
                let mut known: Vec<&str> = selected.iter().map(|a| a.name.as_str()).collect();
                known.dedup();
                anyhow::bail!("no artifact named {unknown:?}; pinned: {}", known.join(", "));
            }
            let mut failed = 0;
            for a in selected.iter().filter(|a| names.is_empty() || names.contains(&a.name)) {
                match cache.fetch(a).with_context(|| format!("fetching {} ({} set)", a.name, set_of(a))) {
                    Ok(path) => println!("{:<24} {:<8} ok  {}", a.name, set_of(a), path.display()),
                    Err(e) => {
                        failed += 1;
                        eprintln!("{:<24} {:<8} FAILED: {e:#}", a.name, set_of(a));
                    }
                }
            }
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

/// A tag for a column: cilium-envoy's is 60 characters long.
fn short(tag: &str) -> &str {
    tag.get(..20).unwrap_or(tag)
}
