use std::process::ExitCode;
use std::time::Instant;

use clap::Subcommand;
use kthw::image::{self, BuildOptions};
use kthw::paths::Paths;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the node image, or reuse the cached one built from the same recipe.
    Build {
        /// Rebuild even when the cache holds this recipe's image.
        #[arg(long)]
        force: bool,
        /// Debian mirror (default: recipe.toml's; env KTHW_DEBIAN_MIRROR).
        #[arg(long)]
        mirror: Option<String>,
    },
    /// List cached images: key, size, build date, kernel.
    List,
    /// Remove every cached image but the current recipe's, and what interrupted builds left.
    Prune,
}

pub fn run(cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    match cmd {
        ImageCommand::Build { force, mirror } => {
            let start = Instant::now();
            let opts = BuildOptions { force, mirror, ..BuildOptions::default() };
            let image = tokio::runtime::Runtime::new()?.block_on(image::build(&paths, &opts))?;
            let m = &image.manifest;
            println!("image    {}", image.key);
            println!("dir      {}", image.dir.display());
            println!("kernel   {} ({})", m.kernel_version, image.kernel.display());
            println!("packages {}", m.packages.len());
            println!("size     {} MiB on disk, {} GiB virtual", mib(&image.dir), m.disk_virtual_bytes >> 30);
            println!("built    {} in {:.1} s", m.built_at, m.build_seconds);
            println!("took     {:.2} s", start.elapsed().as_secs_f64());
        }
        ImageCommand::List => {
            let images = image::list(&paths)?;
            if images.is_empty() {
                println!("no images under {} (`kthw image build` makes one)", paths.images().display());
            }
            println!("{:<26} {:>8}  {:<20}  {:<16} {:>8}", "KEY", "SIZE", "BUILT", "KERNEL", "PACKAGES");
            for i in images {
                let mark = if i.current { "  (current recipe)" } else { "" };
                println!(
                    "{:<26} {:>4} MiB  {:<20}  {:<16} {:>8}{mark}",
                    i.key,
                    i.size_bytes >> 20,
                    i.built_at,
                    i.kernel_version,
                    i.packages
                );
            }
        }
        ImageCommand::Prune => {
            let removed = image::prune(&paths)?;
            let total: u64 = removed.iter().map(|p| p.bytes).sum();
            for p in &removed {
                println!("removed {} ({} MiB)", p.path.display(), p.bytes >> 20);
            }
            println!("pruned {} entries, {} MiB freed", removed.len(), total >> 20);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn mib(dir: &std::path::Path) -> u64 {
    image::list(&Paths::from_env())
        .ok()
        .and_then(|l| l.into_iter().find(|i| i.dir == dir))
        .map_or(0, |i| i.size_bytes >> 20)
}
