use std::process::ExitCode;

use clap::Subcommand;
use kthw::golden::store;
use kthw::paths::Paths;

#[derive(Debug, Subcommand)]
pub enum GoldenCommand {
    /// List golden snapshots: key, phase, nodes, size on disk, what they were made from, copies using them.
    List,
    /// Remove golden snapshots (all, or the KEYs given) and what interrupted saves left; never one a running
    /// copy is backed by.
    Prune {
        /// Only these snapshots.
        keys: Vec<String>,
    },
}

pub fn run(cmd: GoldenCommand) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    match cmd {
        GoldenCommand::List => {
            let all = store::list(&paths);
            if all.is_empty() {
                println!("no golden snapshots under {} (`kthw up --golden` saves one)", store::root(&paths).display());
                return Ok(ExitCode::SUCCESS);
            }
            // A test's own snapshot is keyed by its name (`testkit::Golden`): as wide as the longest key.
            let w = all.iter().map(|l| l.key.len()).max().unwrap_or(0).max(26);
            println!("{:<w$} {:>9}  {:<26} {:>5}  {:<6} USED BY", "KEY", "SIZE", "IMAGE", "NODES", "ACCEL");
            for l in all {
                let size = format!("{} MiB", l.disk_bytes >> 20);
                let users = if l.users.is_empty() { "-".to_string() } else { l.users.join(",") };
                match &l.manifest {
                    Ok(m) => println!(
                        "{:<w$} {size:>9}  {:<26} {:>5}  {:<6} {users}",
                        l.key,
                        m.inputs.image_key,
                        m.nodes.len(),
                        format!("{:?}", m.inputs.accel).to_uppercase()
                    ),
                    Err(why) => println!("{:<w$} {size:>9}  unusable: {why}", l.key),
                }
            }
        }
        GoldenCommand::Prune { keys } => {
            // A mistyped key would otherwise select nothing and read as success ("freed 0 MiB"); refused
            // before anything is removed, so a typo among good keys prunes none of them.
            let known: Vec<String> = store::list(&paths).into_iter().map(|l| l.key).collect();
            let unknown: Vec<&str> = keys.iter().filter(|k| !known.contains(k)).map(String::as_str).collect();
            if !unknown.is_empty() {
                let have = if known.is_empty() { "none".to_string() } else { known.join(", ") };
                anyhow::bail!(
                    "no golden snapshot {} under {} (nothing pruned); the snapshots: {have}",
                    unknown.join(", "),
                    store::root(&paths).display()
                );
            }
            let (pruned, kept) = store::prune(&paths, |k| keys.is_empty() || keys.iter().any(|w| w == k));
            for p in &pruned {
                println!("removed {} ({} MiB)", p.key, p.bytes >> 20);
            }
            for (key, why) in &kept {
                println!("kept    {key}: {why}");
            }
            let freed: u64 = pruned.iter().map(|p| p.bytes).sum();
            println!("freed {} MiB", freed >> 20);
        }
    }
    Ok(ExitCode::SUCCESS)
}
