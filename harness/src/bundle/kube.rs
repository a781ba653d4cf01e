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

/// Written for KVM and scaled by the accelerator, like the phases' deadlines.
const SYSDUMP: Duration = Duration::from_secs(120);
/// Failing pods described with their logs, at most this many (a crash-looping DaemonSet repeats itself).
const FAILING_PODS: usize = 20;
const POD_LOG_LINES: usize = 300;

/// The apiserver's view, when it answers: nodes, pods, events, failing pods with their logs, CiliumNodes,
/// `cilium status` and a sysdump when the CLI is on the control plane.
pub(super) async fn kubernetes(w: &mut Writer, cluster: &Cluster) {
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
    cilium(w, cluster, &s, &layout).await;
}

async fn cilium(w: &mut Writer, cluster: &Cluster, s: &Session, layout: &Layout) {
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
    let remote = "/tmp/kthw-bundle-sysdump";
    let dump = format!(
        "rm -f {remote}.zip; {CILIUM_CLI} sysdump --kubeconfig {kubeconfig} --output-filename {remote} >/dev/null \
         && stat -c %s {remote}.zip"
    );
    let error = match s.exec(&dump, scale(SYSDUMP)).await {
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
