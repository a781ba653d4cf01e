//! `kthw repro BUNDLE-OR-SPEC`: stand the cluster of a failure bundle (or a spec file) up again here, through
//! the phase it failed in (or, for a failed scenario, the phase the scenario starts from, and then the
//! scenario again), and keep it for a person. What this host cannot provide (the bundle's node image,
//! the artifacts of its phases) is refused before anything boots, naming it and how to get it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use kthw::events::Events;
use kthw::image;
use kthw::paths::Paths;
use kthw::phase::Phase;
use kthw::spec::ClusterSpec;
use kthw::up::{Keep, Up};
use kthw_scenarios::{BuiltIn, On};

#[derive(Debug, Args)]
pub struct ReproArgs {
    /// A failure bundle (its directory or .tar.gz, as `kthw bundle` or a failed run made it), a spec (.toml), or
    /// a `cilium sysdump` archive (.zip, or its extracted directory).
    source: PathBuf,
    /// Name of the new cluster; `repro-<the bundle's cluster>` when absent.
    #[arg(long)]
    name: Option<String>,
    /// The last phase to run; the phase the bundle's run failed in (or reached) when absent.
    #[arg(long, value_name = "PHASE")]
    until: Option<Phase>,
    /// Use only the artifacts in DIR (air-gapped).
    #[arg(long, value_name = "DIR")]
    artifacts_dir: Option<PathBuf>,
    /// How long the cluster stays before `kthw gc` removes it, e.g. 2h.
    #[arg(long, env = "KTHW_KEEP_TTL", default_value = "24h", value_parser = kthw::keep::parse_ttl)]
    ttl: Duration,
}

/// What to stand up, read from the bundle or spec.
struct Source {
    spec: ClusterSpec,
    cluster: String,
    until: Option<Phase>,
    /// The phase the bundle's run failed in: it runs here, never restored from a golden snapshot.
    failed: Option<Phase>,
    image: Option<image::NodeImage>,
    /// The failed scenario the bundle names: the cluster comes up to where it starts, then it runs again.
    scenario: Option<BuiltIn>,
    /// The failed test (`kthw::testkit`) the bundle names: how to run it again on the cluster comes last.
    test: Option<kthw::bundle::TestRecord>,
    /// The lock a bundle's run used (a spec's is beside it).
    lock: Option<kthw::lock::Lock>,
}

pub fn repro(args: ReproArgs) -> anyhow::Result<ExitCode> {
    if kthw::sysdump::looks_like(&args.source) {
        return match super::repro_sysdump::spec_from(&args.source, args.name.as_deref())? {
            Some(spec) => repro(ReproArgs { source: spec, ..args }),
            None => Ok(ExitCode::FAILURE),
        };
    }
    let paths = Paths::from_env();
    let source = match read(&args.source, &paths) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("error: cannot reproduce {} here: {why}\nnothing was booted", args.source.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let name = args.name.unwrap_or_else(|| format!("repro-{}", source.cluster));
    let from_scenario = source.scenario.map(|s| s.needs().from);
    let until = args.until.or(from_scenario).or(source.until).unwrap_or(Phase::LAST);
    let (events, rx) = Events::channel();
    let mut up = Up::new(source.spec.clone())
        .name(&name)
        .until(until)
        .artifacts_dir(args.artifacts_dir.clone())
        .keep(Keep::Always)
        .keep_ttl(args.ttl)
        .run_from(source.failed)
        .events(events);
    if let Some(i) = source.image {
        up = up.image(i);
    }
    // Versions that are no preset need their lock (beside a spec file); without one `plan` refuses, saying how.
    if let Some(lock) =
        source.lock.clone().or_else(|| kthw::lock::for_spec(&source.spec.versions, Some(&args.source)).ok())
    {
        up = up.lock(lock);
    }
    if let Err(e) = up.plan() {
        eprintln!("error: cannot reproduce {} here: {e}", args.source.display());
        return Ok(ExitCode::FAILURE);
    }
    println!("reproducing {} as cluster {name}, through phase {until}", args.source.display());
    if let Some(failed) = source.failed.filter(|f| *f <= until) {
        let before = match failed.previous() {
            Some(p) => format!("phases through {p} from a golden snapshot when one exists"),
            None => "nothing restored".to_string(),
        };
        println!("its run failed in phase {failed}, which runs here again from a fresh state ({before})");
    }
    let code = super::cluster::drive(up, rx, &source.spec)?;
    if let Some(test) = source.test.as_ref().filter(|_| code == ExitCode::SUCCESS) {
        println!("{}", test.rerun(&name, kthw::up::home_to_name(&paths).as_deref()));
    }
    match source.scenario {
        Some(s) if code == ExitCode::SUCCESS => {
            println!("running scenario {s} again on {name}, as the bundle's run did");
            super::scenario::run_on(s, On::Kept(name), args.artifacts_dir, Keep::Always, args.ttl)
        }
        _ => Ok(code),
    }
}

/// A spec file by its extension; anything else must be a whole bundle of a format this kthw reads.
fn read(path: &std::path::Path, paths: &Paths) -> Result<Source, String> {
    if path.extension().is_some_and(|e| e == "toml") {
        let spec = ClusterSpec::load(path).map_err(|e| e.to_string())?;
        return Ok(Source {
            cluster: spec.name.clone(),
            spec,
            until: None,
            failed: None,
            image: None,
            scenario: None,
            test: None,
            lock: None,
        });
    }
    let opened = kthw::bundle::open(path).map_err(|e| kthw::chain(&e))?;
    let key = &opened.manifest.image_key;
    let current = image::BuildOptions::default().recipe().map_err(|e| kthw::chain(&e))?.key();
    // The node image is part of what failed: a repro on another image reproduces something else.
    let image = image::cached_key(paths, key).map_err(|e| kthw::chain(&e))?;
    if image.is_none() && *key != current {
        return Err(format!(
            "the bundle's cluster booted node image {key}, which is not cached here ({}), and this kthw's recipe \
             builds {current}: run this with kthw {} (whose images/ recipe builds {key}), or copy that image \
             directory into {}",
            paths.images().join(key).display(),
            opened.manifest.harness_version,
            paths.images().display()
        ));
    }
    println!(
        "bundle of cluster {} ({}), made by kthw {}: {}",
        opened.manifest.cluster,
        opened.manifest.cluster_id,
        opened.manifest.harness_version,
        opened.manifest.reason.lines().next().unwrap_or_default()
    );
    // A scenario that is not kthw's own is a user's (or a newer kthw's): the cluster comes up all the same,
    // and the scenario runs again from the program that ran it.
    let scenario = opened.manifest.scenario.as_deref().and_then(|n| match BuiltIn::from_name(n) {
        Ok(s) => Some(s),
        Err(_) => {
            println!("scenario {n} is not one of this kthw's: once the cluster is up, run it again from the program that ran it, on the kept cluster");
            None
        }
    });
    Ok(Source {
        cluster: opened.manifest.cluster.clone(),
        until: opened.last_phase(),
        failed: opened.failed_phase(),
        spec: opened.spec,
        image,
        scenario,
        test: opened.manifest.test.clone(),
        lock: opened.lock,
    })
}
