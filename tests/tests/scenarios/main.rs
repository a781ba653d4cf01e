//! The scenario tier: every scenario of kthw-scenarios as a test (`-E 'binary(scenarios)'`), on a fresh
//! cluster of its own, asserting its report passed and printing it whole either way (it reaches JUnit).
//! They need the pinned upstream artifacts, so they are `#[ignore]`d: the default and ci profiles list them
//! as skipped, and the nightly profile (`--run-ignored all`) runs them. What runs everywhere: a scenario
//! asked to run without its artifacts refuses before anything boots.

use kthw_scenarios::{BuiltIn, On, Options, ScenarioError};
use kthw_tests::{artifacts_dir, host_prerequisite, node_image, test_paths, unique_name, vm_host_missing};
use rstest::rstest;

#[rstest]
#[case::pod_cidr(BuiltIn::PodCidr)]
#[case::clusterip_no_kube_proxy(BuiltIn::ClusterIpNoKubeProxy)]
#[case::rbac_failure(BuiltIn::RbacFailure)]
#[case::cold_image_wait(BuiltIn::ColdImageWait)]
#[case::dns_node_names(BuiltIn::DnsNodeNames)]
#[case::connectivity(BuiltIn::Connectivity)]
#[ignore = "needs the pinned upstream artifacts (`kthw artifacts fetch`); the nightly profile runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_passes(#[case] scenario: BuiltIn) {
    let Some(()) = host_prerequisite("scenarios", vm_host_missing()) else { return };
    let on = On::Fresh { spec: Box::new(kthw_tests::cluster_spec()), name: unique_name(scenario.name()) };
    // KTHW_KEEP=on-failure|always and KTHW_KEEP_TTL keep a scenario's cluster for a person to look at.
    let (keep, keep_ttl) = kthw::keep::from_env().unwrap_or_else(|e| panic!("{e}"));
    let opts = Options {
        paths: test_paths(),
        artifacts_dir: artifacts_dir(),
        keep,
        keep_ttl,
        image: Some(node_image().await),
        save_golden: true,
        ..Options::default()
    };
    let report =
        kthw_scenarios::run(scenario.scenario(), on, opts).await.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    println!("{report}");
    assert!(report.passed(), "{report}");
}

#[tokio::test]
async fn a_scenario_without_its_artifacts_refuses_before_anything_boots() {
    let empty = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let paths = kthw::paths::Paths::under(home.path().to_path_buf());
    let on = On::Fresh { spec: Box::default(), name: "refused".into() };
    let opts = Options { paths: paths.clone(), artifacts_dir: Some(empty.path().to_path_buf()), ..Options::default() };
    let err = kthw_scenarios::run(BuiltIn::DnsNodeNames.scenario(), on, opts).await.expect_err("no artifacts, no run");
    let ScenarioError::MissingArtifacts { scenario, lacks } = &err else { panic!("{}", kthw::chain(&err)) };
    assert_eq!(*scenario, "dns-node-names");
    let names: Vec<&str> = lacks.iter().map(|l| l.artifact.as_str()).collect();
    // Through coredns, which the scenario runs itself after starting from workers.
    for a in ["kubernetes-node", "cilium-cli", "cilium", "coredns"] {
        assert!(names.contains(&a), "{a} not named: {names:?}");
    }
    assert!(err.to_string().contains("no VM was booted"), "{err}");
    assert!(!paths.state.join("runs").exists(), "a run directory was made");
}
