//! The `etcd` phase: etcd with TLS on the control plane, from the pinned upstream release or, with
//! `etcd_from = "debian"`, Debian trixie's etcd 3.5 packages (`artifacts::debian::ETCD`: the seed's minor; the
//! node image's bookworm etcd is 3.4), which the host fetches through apt and installs with dpkg (nodes have
//! no egress). Done when `etcdctl endpoint health` answers with our client certificate; the output says which
//! etcd answered.
//!
//! Debian's own `etcd.service` (a plaintext single node on localhost) is disabled in the image; ours is
//! installed under the same name in /etc/systemd/system, which shadows the package's unit entirely (masking it
//! would mask ours too).

use std::path::PathBuf;
use std::time::Duration;

use crate::artifacts::debian;
use crate::bootstrap::context::Ctx;
use crate::bootstrap::debs;
use crate::bootstrap::node::{install, start, wait, Put, Wait};
use crate::bootstrap::node_files::etcd_files;
use crate::bootstrap::BootstrapError;
use crate::events::Event;
use crate::spec::Origin;
use crate::ssh::{shell_quote, Session};

/// Written for KVM (Debian's etcd answers in about a second), scaled by the accelerator.
const HEALTHY_DEADLINE: Duration = Duration::from_secs(30);

/// The upstream tarball's members the control plane runs.
fn members(upstream_version: &str) -> Vec<String> {
    ["etcd", "etcdctl"].iter().map(|b| format!("etcd-{upstream_version}-linux-amd64/{b}")).collect()
}

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Vec<String>, BootstrapError> {
    let (phase, spec, layout, b) = (ctx.phase, ctx.spec(), ctx.layout(), ctx.b);
    let cp = &spec.control_plane().name;
    let s = ctx.session(cp).await?;

    let mut files: Vec<Put> = match spec.etcd_from {
        Origin::Upstream => {
            let (a, _) = b.artifact(phase, "etcd")?;
            let bins = b.binaries(phase, "etcd", &members(&a.upstream_version))?;
            bins.into_iter()
                .map(|p| Put::file(layout.bin_dir.join(p.file_name().expect("a binary")), p, 0o755))
                .collect()
        }
        Origin::Debian => Vec::new(),
    };
    files.extend(etcd_files(spec, layout, ctx.accel()).into_iter().map(Put::from));
    let mut changed = install(phase, &s, &files).await?;
    if spec.etcd_from == Origin::Debian {
        changed.extend(debian_etcd(ctx, &s).await?);
    }
    // etcd refuses, or warns about, a data directory others can read.
    let data = shell_quote(&layout.etcd_data_dir.display().to_string());
    ctx.ssh(s.succeed(&format!("install -d -m 0700 {data}")).await)?;
    start(phase, &s, &["etcd"], !changed.is_empty()).await?;
    let check = format!("{} endpoint health", layout.etcdctl(spec));
    let w = Wait {
        what: "etcd to answer `endpoint health` over TLS with the etcd-client certificate".into(),
        check,
        unit: Some("etcd".into()),
        deadline: ctx.accel().scale(HEALTHY_DEADLINE),
    };
    wait(phase, &s, &w, ctx.events).await?;
    say_which_etcd(ctx, &s, cp).await?;
    Ok(changed.into_iter().map(|p| format!("{cp}:{}", p.display())).collect())
}

/// Trixie's etcd-server and etcd-client on the control plane, fetched by the host (once, then from its cache,
/// checked against their pins either way) and installed unless dpkg has them at their pinned version already.
/// Returns the binaries it replaced (so that etcd restarts), empty when nothing changed.
async fn debian_etcd(ctx: &Ctx<'_>, s: &Session) -> Result<Vec<PathBuf>, BootstrapError> {
    let phase = ctx.phase;
    let missing = ctx.ssh(debs::not_installed(s, &debian::ETCD).await)?;
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let cache = ctx.b.deb_cache.clone();
    let pinned: Vec<debian::Deb> = missing.iter().map(|d| **d).collect();
    let fetched = tokio::task::spawn_blocking(move || debian::fetch_pinned(&pinned, &cache))
        .await
        .expect("the Debian fetch does not panic")
        .map_err(|source| BootstrapError::Deb { phase, source: Box::new(source) })?;
    ctx.ssh(debs::install_debs(s, &fetched).await)?;
    let layout = ctx.layout();
    Ok(vec![layout.etcd_binary(ctx.spec()), layout.etcdctl_binary(ctx.spec())])
}

/// Which etcd answered, from the binary the unit runs: an event on the output and `etcd-version.txt` in the
/// phase's output directory.
async fn say_which_etcd(ctx: &Ctx<'_>, s: &Session, cp: &str) -> Result<(), BootstrapError> {
    let spec = ctx.spec();
    let binary = shell_quote(&ctx.layout().etcd_binary(spec).display().to_string());
    let out = ctx.ssh(s.succeed(&format!("{binary} --version")).await)?.stdout_lossy();
    let kept = ctx.keep_output(ETCD_VERSION_OUTPUT, &out)?;
    let running = etcd_version(&out).unwrap_or("(unknown version)");
    let origin = match spec.etcd_from {
        Origin::Upstream => format!("the pinned upstream release {}", spec.versions.pins().etcd),
        Origin::Debian => format!(
            "Debian {}'s etcd-server {}, fetched by the host; the {} set pins {}",
            debian::ETCD[0].suite,
            debian::ETCD[0].version,
            spec.versions,
            spec.versions.pins().etcd
        ),
    };
    ctx.events.emit(Event::Note(format!(
        "phase etcd: {cp} runs etcd {running} ({origin}; `etcd --version` kept in {})",
        kept.display()
    )));
    Ok(())
}

/// What the etcd phase keeps of `etcd --version` (`RunDir::phase_output`).
pub const ETCD_VERSION_OUTPUT: &str = "etcd-version.txt";

/// The version in `etcd --version`'s first line, `etcd Version: 3.5.16` (etcd-io/etcd@v3.5.16:server/etcdmain/etcd.go
/// prints "etcd Version: %s" with version.Version; 3.4 and 3.6 print the same).
fn etcd_version(out: &str) -> Option<&str> {
    out.lines().find_map(|l| l.strip_prefix("etcd Version: ")).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_etcds_own_words() {
        // What etcd 3.5.16 printed on a node (Debian trixie's build), written by hand from that run's output.
        let out = "etcd Version: 3.5.16\nGit SHA: Not provided (use ./build instead of go build)\nGo Version: go1.24.4\nGo OS/Arch: linux/amd64\n";
        assert_eq!(etcd_version(out), Some("3.5.16"));
        assert_eq!(etcd_version("no such line"), None);
    }

    #[test]
    fn the_upstream_members_follow_the_release_layout() {
        assert_eq!(members("v3.5.21"), ["etcd-v3.5.21-linux-amd64/etcd", "etcd-v3.5.21-linux-amd64/etcdctl"]);
    }
}
