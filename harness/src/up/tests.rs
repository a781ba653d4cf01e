use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::bootstrap::BootstrapError;
use crate::cluster::ClusterError;
use crate::rundir::RunDir;

fn up_in(home: &std::path::Path) -> Up {
    Up::new(ClusterSpec::default()).paths(Paths::under(home.to_path_buf()))
}

#[test]
fn without_artifacts_the_plan_refuses_naming_each_and_the_way_on() {
    let home = tempfile::tempdir().unwrap();
    let err = up_in(home.path()).until(Phase::Workers).plan().unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("the phases through workers need 7 artifacts this host lacks; no VM was booted"));
    for a in ["etcd", "kubernetes-server", "kubernetes-node", "pause", "containerd", "runc", "cni-plugins"] {
        assert!(text.contains(&format!("  - {a} (for ")), "{a} in {text}");
    }
    assert!(text.contains("etcd_from = \"debian\""), "the Debian etcd hint: {text}");
    assert!(text.contains("kthw up --partial"), "{text}");
}

#[test]
fn partial_goes_as_far_as_the_artifacts_allow() {
    let home = tempfile::tempdir().unwrap();
    let plan = up_in(home.path()).partial(true).plan().unwrap();
    assert_eq!(plan.last, Phase::Kubeconfigs);
    assert_eq!(plan.blocked.as_ref().map(|(p, _)| *p), Some(Phase::Etcd));
    assert!(plan.hint(&ClusterSpec::default()).is_some());
    let plan = up_in(home.path()).until(Phase::Pki).plan().unwrap();
    assert_eq!(plan, Plan { last: Phase::Pki, blocked: None });
}

#[test]
fn a_cilium_value_that_is_no_chart_key_is_refused_before_anything_boots() {
    let home = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec::default();
    spec.cilium.values.insert("kubeProxyReplacment".into(), "true".into());
    let err = Up::new(spec.clone()).paths(Paths::under(home.path().to_path_buf())).partial(true).plan().unwrap_err();
    assert!(
        err.to_string().contains("\"kubeProxyReplacment\" is not a value of the Cilium 1.17.4 Helm chart"),
        "{err}"
    );
    let fine = Up::new(spec).paths(Paths::under(home.path().to_path_buf())).until(Phase::Workers).partial(true);
    assert!(fine.plan().is_ok(), "no Cilium phase, no Cilium values checked");
}

#[test]
fn a_chart_with_no_compiled_in_keys_checks_cilium_values_against_its_locks_keys() {
    let home = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec::default();
    spec.versions.named.insert(crate::spec::VersionKey::Cilium, "1.18.3".into());
    spec.cilium.values.insert("hubble.enabled".into(), true.into());
    let locked = |keys: &[&str]| Lock {
        versions: spec.versions.pins(),
        chart_keys: keys.iter().map(|k| k.to_string()).collect(),
        ..Lock::preset(crate::spec::VersionSet::Seed)
    };
    let up = |lock| Up::new(spec.clone()).paths(Paths::under(home.path().to_path_buf())).partial(true).lock(lock);
    let err = up(locked(&[])).plan().unwrap_err().to_string();
    assert!(err.contains("keys of the Cilium 1.18.3 Helm chart are unknown"), "{err}");
    let err = up(locked(&["image"])).plan().unwrap_err().to_string();
    assert!(err.contains("\"hubble.enabled\"") && err.contains("1.18.3"), "{err}");
    let fine = up(locked(&["image", "hubble"]));
    assert_eq!(fine.bootstrap().chart_keys, ["image", "hubble"], "what a failure bundle's lock carries");
    assert!(fine.plan().is_ok());
}

#[test]
fn a_kept_failure_names_its_bundle_and_how_to_get_in() {
    let source = Box::new(BootstrapError::Node { phase: Phase::Etcd, detail: "etcd exited".into() });
    let err = UpError::Phase {
        name: "lab".into(),
        run_dir: RunDir::at("/state/runs/lab"),
        kept: true,
        bundle: Some(PathBuf::from("/state/bundles/lab-20261129T120000Z")),
        source,
    };
    let text = err.to_string();
    for part in [
        "`kthw ssh lab NODE`",
        "`kthw kubeconfig lab`",
        "`kthw down lab` removes it, `kthw gc` once its time to live ends",
        "failure bundle: /state/bundles/lab-20261129T120000Z (and /state/bundles/lab-20261129T120000Z.tar.gz); \
         where the time went: /state/bundles/lab-20261129T120000Z/run/timeline.svg",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
}

#[test]
fn a_failed_boot_names_its_bundle_and_a_kept_test_cluster_says_how_to_get_in() {
    let source = Box::new(ClusterError::NoImage);
    let bundle = Some(PathBuf::from("/state/bundles/lab-20261129T120000Z"));
    let text = UpError::Boot { name: "lab".into(), bundle, source }.to_string();
    assert_eq!(
        text,
        "cluster lab did not come up; it was torn down\nfailure bundle: /state/bundles/lab-20261129T120000Z \
         (and /state/bundles/lab-20261129T120000Z.tar.gz): the nodes' consoles are in its run/nodes/*/console.log, \
         where the time went in its run/timeline.svg"
    );
    let text = UpError::Boot { name: "lab".into(), bundle: None, source: Box::new(ClusterError::NoImage) };
    assert_eq!(text.to_string(), "cluster lab did not come up");

    let home = tempfile::tempdir().unwrap();
    let paths = Paths::under(home.path().to_path_buf());
    let ttl = Duration::from_secs(2 * 3600);
    let text = how_to_get_in("lab", &paths, Keep::OnFailure, ttl);
    let kthw = format!("KTHW_HOME={} kthw", home.path().display());
    for part in [
        "cluster lab stays up for 2 h 0 min (KTHW_KEEP_TTL)".to_string(),
        format!("`{kthw} ssh lab NODE`"),
        format!("`{kthw} kubeconfig lab`"),
        format!("`{kthw} down lab` removes it"),
    ] {
        assert!(text.contains(&part), "{part:?} in {text}");
    }
}

#[test]
fn the_name_defaults_to_the_specs() {
    assert_eq!(Up::new(ClusterSpec::default()).cluster_name(), "kthw");
    assert_eq!(Up::new(ClusterSpec::default()).name("bug-1234").cluster_name(), "bug-1234");
}

#[test]
fn a_run_that_must_rerun_a_phase_restores_only_what_comes_before_it() {
    // A plain run may restore its whole state; `--fresh` nothing.
    assert_eq!(golden_through(Phase::Ready, None, false), Some(Phase::Ready));
    assert_eq!(golden_through(Phase::Ready, None, true), None);
    // `kthw repro` of a bundle that failed in cilium: a snapshot through workers at most, cilium runs here.
    assert_eq!(golden_through(Phase::Cilium, Some(Phase::Cilium), false), Some(Phase::Workers));
    assert_eq!(golden_through(Phase::Ready, Some(Phase::Cilium), false), Some(Phase::Workers));
    assert_eq!(golden_through(Phase::Cilium, Some(Phase::Cilium), true), None);
    // A failure in the first phase (the boot) leaves nothing to restore.
    assert_eq!(golden_through(Phase::Ready, Some(Phase::Nodes), false), None);
    // Going only as far as before the failed phase hides nothing: the whole state may be restored.
    assert_eq!(golden_through(Phase::Etcd, Some(Phase::Cilium), false), Some(Phase::Etcd));
}
