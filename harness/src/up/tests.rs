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
