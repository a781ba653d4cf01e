//! The apiserver's and Cilium's view for a bundle, through kubectl and the cilium CLI on the control plane
//! (where the seed runs them), each step bounded and its failure recorded.

use std::time::{Duration, Instant};

use super::writer::{guest, session, timed, Writer, COMMAND};
use super::{Step, SYSDUMP_CAP, TOTAL_CAP};
use crate::bootstrap::cilium_install::CILIUM_CLI;
use crate::bootstrap::Layout;
use crate::cluster::Cluster;
use crate::spec::Role;
use crate::ssh::{shell_quote, Session};

/// Written for KVM and scaled by the accelerator, like the phases' deadlines. Without profiling a sysdump of
/// our three nodes is each agent's `cilium-bugtool`, logs and the Kubernetes objects; it gets this, or what is
/// left of the bundle's Kubernetes budget when the steps before it were slow ([`sysdump_budget`]).
const SYSDUMP: Duration = Duration::from_secs(180);
/// What the sysdump leaves of the Kubernetes budget: our wait on the guest's `timeout` (which kills 10 s
/// after its budget) and the removal of its file.
const SYSDUMP_MARGIN: Duration = Duration::from_secs(20);
/// Less than this left, and no sysdump is tried: it would only be killed half-written.
const SYSDUMP_FLOOR: Duration = Duration::from_secs(30);
/// Failing pods described with their logs, at most this many (a crash-looping DaemonSet repeats itself).
const FAILING_PODS: usize = 20;
const POD_LOG_LINES: usize = 300;

/// The apiserver's view, when it answers: nodes, pods, events, failing pods with their logs, CiliumNodes,
/// `cilium status` and a sysdump when the CLI is on the control plane.
pub(super) async fn kubernetes(w: &mut Writer, cluster: &Cluster, ends: Instant) {
    let Some(cp) = cluster.spec().nodes.iter().find(|n| n.role == Role::ControlPlane).map(|n| n.name.clone()) else {
        return;
    };
    let Some(s) = session(w, cluster, &cp).await else { return };
    let scale = |d| cluster.accel().scale(d);
    let layout = Layout::default();
    let k = layout.kubectl();
    let started = Instant::now();
    let probe = s.exec(&format!("{k} get --raw=/readyz --request-timeout=10s"), scale(COMMAND)).await;
    let answers = match probe {
        Ok(out) if out.success() => None,
        Ok(out) => Some(out.summary()),
        Err(e) => Some(crate::chain(&e)),
    };
    if let Some(why) = answers {
        let why = format!("the apiserver does not answer, so no kubectl or cilium dumps: {why}");
        w.step("kubernetes/apiserver", "kubernetes/apiserver.txt", None, Some(why), started.elapsed());
        return;
    }
    for (file, args) in [
        ("nodes.txt", "get nodes -o wide"),
        ("pods.txt", "get pods -A -o wide"),
        ("events.txt", "get events -A --sort-by=.lastTimestamp"),
        ("ciliumnodes.yaml", "get ciliumnodes -o yaml"),
    ] {
        timed(w, format!("kubernetes/{file}"), guest(&s, &format!("{k} {args}"), scale(COMMAND))).await;
    }
    // Not Running, or Running with a container not ready; Completed jobs are fine.
    let failing = format!(
        "k={kq}; $k get pods -A --no-headers | awk '{{split($3,r,\"/\"); if ($4!=\"Completed\" && ($4!=\"Running\" \
         || r[1]!=r[2])) print $1, $2}}' | head -n {FAILING_PODS} | while read ns pod; do echo \"===== $ns/$pod\"; \
         $k -n \"$ns\" describe pod \"$pod\"; echo \"----- logs\"; $k -n \"$ns\" logs \"$pod\" --all-containers \
         --tail={POD_LOG_LINES} 2>&1; echo \"----- previous logs\"; $k -n \"$ns\" logs \"$pod\" --all-containers \
         --previous --tail={POD_LOG_LINES} 2>&1; done",
        kq = shell_quote(&k)
    );
    timed(w, "kubernetes/failing-pods.txt".into(), guest(&s, &failing, scale(COMMAND * 6))).await;
    cilium(w, cluster, &s, &layout, ends).await;
}

/// How long the sysdump may take when the Kubernetes budget ends at `ends`: its own deadline (`scaled`), or
/// what is left before the budget's end less [`SYSDUMP_MARGIN`]; `None` when that is under [`SYSDUMP_FLOOR`].
fn sysdump_budget(scaled: Duration, now: Instant, ends: Instant) -> Option<Duration> {
    let left = ends.saturating_duration_since(now).saturating_sub(SYSDUMP_MARGIN);
    (left >= SYSDUMP_FLOOR).then(|| scaled.min(left))
}

async fn cilium(w: &mut Writer, cluster: &Cluster, s: &Session, layout: &Layout, ends: Instant) {
    let scale = |d| cluster.accel().scale(d);
    let kubeconfig = shell_quote(&layout.root_kubeconfig.display().to_string());
    let started = Instant::now();
    if !s.exec(&format!("test -x {CILIUM_CLI}"), scale(COMMAND)).await.is_ok_and(|o| o.success()) {
        let why = format!("no cilium CLI at {CILIUM_CLI} on the control plane (the cilium phase installs it)");
        w.step("cilium", "cilium/status.txt", None, Some(why), started.elapsed());
        return;
    }
    let status = format!("{CILIUM_CLI} status --kubeconfig {kubeconfig}");
    timed(w, "cilium/status.txt".into(), guest(s, &status, scale(COMMAND * 3))).await;

    let started = Instant::now();
    let Some(budget) = sysdump_budget(scale(SYSDUMP), started, ends) else {
        let why = "skipped: too little of the bundle's Kubernetes budget was left after the steps before it";
        w.step("cilium/sysdump.zip", "cilium/sysdump.zip", None, Some(why.into()), Duration::ZERO);
        return;
    };
    let remote = "/tmp/kthw-bundle-sysdump";
    let argv: Vec<String> = sysdump_argv(&layout.root_kubeconfig.display().to_string(), remote, budget)
        .iter()
        .map(|a| shell_quote(a))
        .collect();
    let dump = format!("rm -f {remote}.zip; {} >/dev/null && stat -c %s {remote}.zip", argv.join(" "));
    // Our own wait a little longer than the guest's `timeout`, so the CLI is stopped on the node, not left
    // writing while the next step removes its file.
    let error = match s.exec(&dump, budget + SYSDUMP_MARGIN / 2).await {
        Ok(out) if out.success() => match out.stdout_lossy().trim().parse::<u64>() {
            Ok(size) if size > SYSDUMP_CAP => Some(format!("the sysdump has {size} bytes, over the {SYSDUMP_CAP} cap")),
            Ok(_) if w.total >= TOTAL_CAP => Some(format!("skipped: the bundle reached its {TOTAL_CAP}-byte cap")),
            Ok(size) => {
                let local = w.dir.join("cilium/sysdump.zip");
                let _ = std::fs::create_dir_all(w.dir.join("cilium"));
                match s.download(&format!("{remote}.zip"), &local).await {
                    Ok(()) => {
                        w.total += size;
                        w.steps.push(Step {
                            name: "cilium/sysdump.zip".into(),
                            file: Some("cilium/sysdump.zip".into()),
                            bytes: size,
                            truncated_from: None,
                            error: None,
                            seconds: started.elapsed().as_secs_f64(),
                        });
                        None
                    }
                    Err(e) => Some(crate::chain(&e)),
                }
            }
            Err(_) => Some(format!("the sysdump's size is unreadable: {}", out.summary())),
        },
        Ok(out) => Some(format!("cilium sysdump failed: {}", out.summary())),
        Err(e) => Some(crate::chain(&e)),
    };
    if let Some(e) = error {
        w.step("cilium/sysdump.zip", "cilium/sysdump.zip", None, Some(e), started.elapsed());
    }
    let _ = s.exec(&format!("rm -f {remote}.zip"), scale(COMMAND)).await;
}

/// `cilium sysdump` on the control plane, ended by the guest's coreutils `timeout` after `budget` (SIGTERM,
/// then SIGKILL 10 s later), without profiling: by default the CLI takes CPU and heap profiles of every agent
/// and the operator through gops (cilium/cilium-cli@v0.18.4 and @v0.19.7:
/// vendor/github.com/cilium/cilium/cilium-cli/sysdump/defaults.go `DefaultProfiling = true`; sysdump.go
/// `if c.Options.Profiling` around `SubmitStreamProfilingGopsSubtasks`), which a failure bundle does not need
/// and a loaded runner cannot fit in its budget. The flags are `InitSysdumpFlags`'s with the empty prefix
/// `cilium sysdump` gives it (cli/sysdump.go:62 at both tags): `--profiling` (sysdump.go:3224 at v0.18.4,
/// 3543 at v0.19.7) and `--output-filename` (3261, 3580), and the root command's `--kubeconfig` (cli/cmd.go:92,
/// 114). A boolean pflag takes its value only after `=`: `--profiling false` would leave profiling on and pass
/// `false` as an argument.
pub(super) fn sysdump_argv(kubeconfig: &str, output: &str, budget: Duration) -> Vec<String> {
    [
        "timeout",
        "--kill-after=10",
        &budget.as_secs().to_string(),
        CILIUM_CLI,
        "sysdump",
        "--kubeconfig",
        kubeconfig,
        "--profiling=false",
        "--output-filename",
        output,
    ]
    .map(str::to_string)
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag `cilium sysdump` accepts at both pinned CLI tags that the argv uses, as each tag's source
    /// defines it (cilium/cilium-cli@v0.18.4 and @v0.19.7: vendor/github.com/cilium/cilium/cilium-cli/
    /// sysdump/sysdump.go `InitSysdumpFlags`, cli/cmd.go's persistent `kubeconfig`).
    const BOTH_TAGS_DEFINE: [&str; 3] = ["kubeconfig", "profiling", "output-filename"];

    #[test]
    fn the_sysdump_takes_no_profiles_uses_only_flags_both_clis_have_and_ends_within_its_budget() {
        let argv = sysdump_argv("/root/.kube/config", "/tmp/x", Duration::from_secs(180));
        assert_eq!(&argv[..3], ["timeout", "--kill-after=10", "180"], "the guest ends the CLI at the budget");
        assert_eq!(&argv[3..5], [CILIUM_CLI, "sysdump"]);
        assert!(argv.contains(&"--profiling=false".to_string()), "profiling off, with `=`: {argv:?}");
        for flag in argv.iter().filter_map(|a| a.strip_prefix("--")).skip(1) {
            let name = flag.split('=').next().unwrap();
            assert!(BOTH_TAGS_DEFINE.contains(&name), "--{name} is not a flag both pinned CLIs define");
        }
        let pairs: Vec<(&str, &str)> = argv.windows(2).map(|w| (w[0].as_str(), w[1].as_str())).collect();
        assert!(
            pairs.contains(&("--output-filename", "/tmp/x")) && pairs.contains(&("--kubeconfig", "/root/.kube/config"))
        );
    }

    #[test]
    fn the_sysdump_gets_its_deadline_or_what_the_budget_has_left_and_none_when_that_is_too_little() {
        let now = Instant::now();
        let scaled = Duration::from_secs(180);
        assert_eq!(sysdump_budget(scaled, now, now + Duration::from_secs(290)), Some(scaled), "quick steps before it");
        let left = Duration::from_secs(100);
        assert_eq!(sysdump_budget(scaled, now, now + left), Some(left - SYSDUMP_MARGIN), "slow steps before it");
        assert_eq!(sysdump_budget(scaled, now, now + Duration::from_secs(40)), None);
        assert_eq!(sysdump_budget(scaled, now + Duration::from_secs(5), now), None, "the budget is over");
    }
}
