use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use kthw::artifacts::{Cache, Manifest, Mirror, State};
use kthw::paths::Paths;

#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// Show every pinned artifact: cached, unverified or missing, and the command that provides what is missing.
    List {
        /// An artifact directory to look in instead of the cache.
        #[arg(long)]
        dir: Option<PathBuf>,
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
        /// Only these artifacts, by name.
        names: Vec<String>,
    },
}

fn cache(dir: Option<PathBuf>) -> Cache {
    Cache::new(dir.unwrap_or_else(|| Paths::from_env().artifacts()))
}

pub fn run(cmd: ArtifactsCommand) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::pinned();
    match cmd {
        ArtifactsCommand::List { dir } => {
            let cache = cache(dir);
            println!("artifacts in {}:", cache.dir.display());
            let mut missing = 0;
            for e in cache.status(&manifest) {
                let a = e.artifact;
                let state = match e.state {
                    State::Cached => "cached",
                    State::Unverified => "unverified",
                    State::Absent => "missing",
                };
                println!("  {:<24} {:<10} {:<10} {}", a.name, a.upstream_version, state, a.locator());
                if e.state != State::Cached {
                    missing += 1;
                    println!("  {:<24} provide with: {}", "", cache.command_for(a));
                }
            }
            println!("{missing} of {} not cached", manifest.artifacts.len());
            Ok(ExitCode::SUCCESS)
        }
        ArtifactsCommand::Fetch { dir, mirror, names } => {
            let mirror = mirror.as_deref().map(Mirror::parse).transpose()?;
            let cache = cache(dir).with_mirror(mirror);
            if let Some(unknown) = names.iter().find(|n| manifest.get(n).is_none()) {
                let known: Vec<&str> = manifest.artifacts.iter().map(|a| a.name.as_str()).collect();
                anyhow::bail!("no artifact named {unknown:?}; pinned: {}", known.join(", "));
            }
            let mut failed = 0;
            for a in manifest.artifacts.iter().filter(|a| names.is_empty() || names.contains(&a.name)) {
                match cache.fetch(a).with_context(|| format!("fetching {}", a.name)) {
                    Ok(path) => println!("{:<24} ok  {}", a.name, path.display()),
                    Err(e) => {
                        failed += 1;
                        eprintln!("{:<24} FAILED: {e:#}", a.name);
                    }
                }
            }
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
