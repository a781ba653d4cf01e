//! `kthw load NAME IMAGE...`: put images into every node's containerd, digests preserved, as kind's
//! `load image-archive` does: for testing a patched build on a cluster whose nodes cannot pull.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kthw::cluster::Cluster;
use kthw::oci;
use kthw::paths::Paths;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The cluster.
    name: String,
    /// OCI image archives (files, as `docker save`, `ctr images export`, BuildKit or skopeo write them), or
    /// image references to pull first: `repo:tag`, `repo@sha256:…` or `repo:tag@sha256:…` (a registry on a
    /// loopback address is spoken to over plain HTTP).
    #[arg(required = true, value_name = "ARCHIVE-OR-REFERENCE")]
    images: Vec<String>,
}

pub fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    let cluster = Cluster::open(&args.name, &paths)?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    for line in rt.block_on(oci::load_given(&cluster, &args.images))? {
        println!("loaded {line}");
    }
    Ok(ExitCode::SUCCESS)
}
