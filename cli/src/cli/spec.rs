use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use kthw::ClusterSpec;

#[derive(Debug, Subcommand)]
pub enum SpecCommand {
    /// Print the effective spec as TOML, with every value derived from it.
    Show {
        /// A spec file; without it, the seed's cluster.
        #[arg(long)]
        spec: Option<PathBuf>,
    },
    /// Check a spec file: a one-line summary and exit 0, or every problem and exit 1.
    Validate { file: PathBuf },
}

pub fn run(cmd: SpecCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SpecCommand::Show { spec } => {
            let spec = ClusterSpec::load_or_default(spec.as_deref())?;
            print!("{}", spec.to_effective_toml());
            Ok(ExitCode::SUCCESS)
        }
        // What `kthw up` refuses before booting, this refuses too: the spec's invariants (`load`: with its
        // versions outside upstream's support tables), a lock resolved for other versions, then its Cilium values
        // against the chart its versions pin. Versions not locked yet are only noted: locking comes after.
        SpecCommand::Validate { file } => match ClusterSpec::load(&file).map_err(|e| e.to_string()).and_then(|spec| {
            let keys = match kthw::lock::for_spec(&spec.versions, Some(&file)) {
                Ok(lock) => lock.chart_keys,
                Err(e @ kthw::lock::LockError::NotLocked { .. }) => {
                    eprintln!("note: {e}");
                    Vec::new()
                }
                Err(e) => return Err(e.to_string()),
            };
            kthw::bootstrap::cilium_install::validate_values_with(&spec, &keys)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            Ok(spec)
        }) {
            Ok(spec) => {
                let cp = spec.control_plane();
                println!(
                    "{}: valid: cluster {:?}, {} nodes (control plane {} at {}, {} workers), pods {} in /{} blocks, services {}",
                    file.display(),
                    spec.name,
                    spec.nodes.len(),
                    cp.name,
                    cp.address,
                    spec.workers().count(),
                    spec.network.pods,
                    spec.network.pod_mask_size,
                    spec.network.services
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}
