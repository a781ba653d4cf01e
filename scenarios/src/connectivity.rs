//! connectivity: `cilium connectivity test`, as the seed's step 5 ran it (`--test-namespace cilium-test`),
//! with the tests that need the internet left out when the spec has no egress, the images it deploys pinned
//! by digest and preloaded like Cilium's (nodes cannot pull with egress off), and its JUnit report kept
//! beside the harness's, each failed test case named in the report ([`crate::cilium_junit`]).
//!
//! Sources (cilium/cilium-cli v0.18.4, vendor/github.com/cilium/cilium/cilium-cli/): the flags are
//! cli/connectivity.go's (`--test` "skip tests by starting the expression with '!', target Scenarios with
//! e.g. '/pod-to-cidr'", `--curl-image`, `--json-mock-image`, `--dns-test-server-image`, `--junit-file`,
//! `--test-namespace`); a scenario is matched as `<test>/<scenario>` (connectivity/check/test.go
//! `scenarioName`); the scenarios that reach outside the cluster are connectivity/tests/world.go's
//! `pod-to-world*` (the external targets one.one.one.one and k8s.io) and to-cidr.go's `pod-to-cidr` (1.1.1.1,
//! 1.0.0.1); the report's totals are `<testsuites tests= failures= errors=>` (connectivity/internal/junit).
//!
//! cilium-cli v0.19.7 also deploys `l7-lb` on every run (connectivity/check/deployment.go `deploy`, :1691) with
//! its `--echo-image`, which kthw does not pin ([`kthw::diagnosis::UNPINNED`]): without egress that pod never
//! starts. The CLI never waits for it (it is not in `deploymentList()`, deployment.go:2483, the deployments
//! `validateDeployment`, :2716, waits for), and the only test that uses it, `l7-lb` (connectivity/builder/l7_lb.go),
//! needs the `loadbalancer-l7` feature (`features.RequireEnabled(features.L7LoadBalancer)`), on only when
//! cilium-config holds `loadbalancer-l7: envoy` (utils/features/features.go:419-420). Cilium's chart 1.19.5
//! writes that only with `loadBalancer.l7.backend=envoy` (templates/cilium-configmap.yaml:320-321; values.yaml
//! :2504 `backend: disabled`; the chart is cilium-cli v0.19.7's vendor/github.com/cilium/charts/cilium-1.19.5.tgz).
//! So by default the stuck pod fails nothing; only a spec that turns the Envoy L7 backend on without egress
//! would run `l7-lb` against it, and there the test is left out ([`L7_LB_SKIP`]). v0.18.4 has no `l7-lb`.

use std::time::Duration;

use kthw::bootstrap::cilium_install::CILIUM_CLI;
use kthw::phase::Phase;

use crate::{cilium_junit, Needs, Report, Scenario, ScenarioError, ScenarioFuture, World};
use kthw::testkit::pinned_image;

/// The images it deploys that no phase has put on the workers (and `l7-lb`'s, which no source pins: see the
/// module's note; `kthw::diagnosis::explain` names it as unpinned rather than as a mirror's fault).
pub const IMAGES: &[&str] = &["connectivity-curl", "connectivity-json-mock"];
/// Scenarios that need a route to the internet: skipped when `egress = false`.
pub const NEEDS_INTERNET: [&str; 2] = ["!/pod-to-world", "!/pod-to-cidr"];
/// The test that needs the `l7-lb` pods, left out where it would run without them (see the module's note).
pub const L7_LB_SKIP: &str = "!l7-lb";
/// The Helm value that turns on the Envoy L7 backend, and the value that does (chart 1.19.5 values.yaml
/// `loadBalancer.l7.backend`, "Applicable values: envoy, disabled").
const L7_BACKEND: (&str, &str) = ("loadBalancer.l7.backend", "envoy");
/// Where the CLI writes its JUnit on the control plane.
pub const REMOTE_JUNIT: &str = "/root/cilium-connectivity-junit.xml";
/// The longest `cilium connectivity test` may run, for KVM (scaled like every deadline). .config/nextest.toml
/// gives the scenario tier time for this, the cluster's bring-up and a bundle (harness/tests/lint/).
pub const TEST_DEADLINE: Duration = Duration::from_secs(1800);

/// Whether `spec`'s CLI would run `l7-lb` against pods that cannot start: its CLI deploys them (v0.19 on), the
/// Envoy L7 backend is on (so the test's feature requirement holds), and without egress their image never
/// arrives.
pub fn l7_lb_cannot_run(spec: &kthw::spec::ClusterSpec) -> bool {
    let (key, on) = L7_BACKEND;
    let envoy = spec.cilium.values.get(key).and_then(|v| v.as_str()) == Some(on);
    let deploys = !spec.versions.pins().cilium_cli.starts_with("0.18.");
    envoy && deploys && !spec.egress
}

/// The command line: the seed's, with pinned images and, without egress, no internet tests. The DNS test
/// server is the pinned CoreDNS the coredns phase already put on the workers, in place of the CLI's default
/// (docker.io/coredns/coredns:1.12.0, which kthw does not pin).
pub fn argv(spec: &kthw::spec::ClusterSpec, kubeconfig: &std::path::Path) -> Vec<String> {
    let set = spec.versions.preset;
    let mut v: Vec<String> = vec![
        CILIUM_CLI.into(),
        "connectivity".into(),
        "test".into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--test-namespace".into(),
        "cilium-test".into(),
        "--curl-image".into(),
        pinned_image(set, "connectivity-curl"),
        "--json-mock-image".into(),
        pinned_image(set, "connectivity-json-mock"),
        "--dns-test-server-image".into(),
        pinned_image(set, "coredns"),
        "--junit-file".into(),
        REMOTE_JUNIT.into(),
    ];
    let mut skips: Vec<&str> = if spec.egress { vec![] } else { NEEDS_INTERNET.to_vec() };
    if l7_lb_cannot_run(spec) {
        skips.push(L7_LB_SKIP);
    }
    for t in skips {
        v.push("--test".into());
        v.push(t.into());
    }
    v
}

/// What the argv leaves out, for the report.
fn left_out(argv: &[String]) -> String {
    let skips: Vec<&str> = argv.windows(2).filter(|p| p[0] == "--test").map(|p| p[1].as_str()).collect();
    if skips.is_empty() {
        "none".to_string()
    } else {
        skips.join(" ")
    }
}

/// The JUnit check's verdict and evidence, from what `cat` of the report printed (`None`: no file). The CLI
/// writes the report only after the tests ran (cilium-cli v0.18.4 connectivity/suite.go `Run`: a setup error,
/// a suite builder's error or `runConnectivityTests`'s returns before `junitCollector.Write()`), so a missing
/// file is a run that died early: a failed check, not an error that skips the report and the bundle.
pub fn junit_verdict(report: Option<&str>, kept: &str) -> (bool, String) {
    match report {
        None => (
            false,
            format!(
                "no JUnit report at {REMOTE_JUNIT}: the CLI writes it only after the tests ran, so it stopped in \
                 setup or a test ended the run; see {kept}"
            ),
        ),
        Some(xml) => {
            let totals = cilium_junit::totals(xml);
            (totals.is_some_and(|(t, f, e)| t > 0 && f == 0 && e == 0), format!("(tests, failures, errors) {totals:?}"))
        }
    }
}

/// The scenario; the module's documentation says what it shows and how.
pub struct Connectivity;

impl Scenario for Connectivity {
    fn name(&self) -> &'static str {
        "connectivity"
    }

    fn shows(&self) -> &'static str {
        "`cilium connectivity test` without the tests that need the internet, its images pinned and preloaded, its JUnit kept"
    }

    fn needs(&self) -> Needs {
        Needs::at(Phase::Ready).images(IMAGES)
    }

    fn run<'a>(&'a self, w: &'a World, r: &'a mut Report) -> ScenarioFuture<'a> {
        Box::pin(act(w, r))
    }
}

async fn act(w: &World, r: &mut Report) -> Result<(), ScenarioError> {
    w.preload(Phase::Ready, IMAGES).await?;
    let root = w.layout().root_kubeconfig.clone();
    // A report left by an earlier run (a kept cluster) must not stand in for this one's.
    w.succeed(&w.cp(), &format!("rm -f {REMOTE_JUNIT}")).await?;
    let argv = argv(w.spec(), &root);
    let out = w.run_argv(&argv, w.scaled(TEST_DEADLINE), "connectivity-test.txt").await?;
    r.check("`cilium connectivity test` passes", out.success(), out.describe_status());
    r.fact("tests left out", left_out(&argv));
    let cat = w.exec(&w.cp(), &format!("cat {REMOTE_JUNIT}"), w.scaled(Duration::from_secs(30))).await?;
    let junit = cat.success().then(|| cat.stdout_lossy());
    let (pass, evidence) = match &junit {
        Some(xml) => {
            let kept = w.keep("cilium-connectivity-junit.xml", xml)?;
            let (pass, totals) = junit_verdict(Some(xml), "connectivity-test.txt");
            let failed = cilium_junit::describe_failures(&cilium_junit::cases(xml), &out.stdout_lossy());
            let named = if failed.is_empty() { String::new() } else { format!("; failed: {}", failed.join(" | ")) };
            (pass, format!("{totals} in {}{named}", kept.display()))
        }
        None => junit_verdict(None, "connectivity-test.txt"),
    };
    r.check("its JUnit report lists tests and no failures", pass, evidence);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use kthw::spec::{ClusterSpec, VersionSet};

    fn spec(versions: VersionSet, egress: bool, envoy: bool) -> ClusterSpec {
        let mut spec = ClusterSpec { versions: versions.into(), egress, ..ClusterSpec::default() };
        if envoy {
            spec.cilium.values.insert(L7_BACKEND.0.into(), toml::Value::String(L7_BACKEND.1.into()));
        }
        spec
    }

    #[test]
    fn without_egress_the_internet_scenarios_are_skipped_and_every_image_is_pinned() {
        let root = std::path::Path::new("/root/.kube/config");
        let v = argv(&spec(VersionSet::Seed, false, false), root);
        let pairs: Vec<(&str, &str)> = v.windows(2).map(|p| (p[0].as_str(), p[1].as_str())).collect();
        assert!(pairs.contains(&("--test", "!/pod-to-world")) && pairs.contains(&("--test", "!/pod-to-cidr")));
        assert!(pairs.contains(&("--test-namespace", "cilium-test")), "the seed's namespace");
        for flag in ["--curl-image", "--json-mock-image", "--dns-test-server-image"] {
            let image = pairs.iter().find(|(f, _)| *f == flag).unwrap().1;
            assert!(image.contains("@sha256:"), "{flag} {image} is pinned by digest");
        }
        assert!(
            !argv(&spec(VersionSet::Seed, true, false), root).iter().any(|a| a == "--test"),
            "with egress nothing is left out"
        );
        assert_eq!(left_out(&v), "!/pod-to-world !/pod-to-cidr");
    }

    /// `l7-lb` is left out only where it would run against pods that cannot start: the current set's CLI (the
    /// seed's v0.18.4 has no such test), the Envoy L7 backend on, no egress.
    #[test]
    fn l7_lb_is_left_out_only_with_the_envoy_backend_on_and_egress_off() {
        let root = std::path::Path::new("/root/.kube/config");
        let skips = |s: &ClusterSpec| left_out(&argv(s, root));
        assert_eq!(skips(&spec(VersionSet::Current, false, true)), "!/pod-to-world !/pod-to-cidr !l7-lb");
        assert_eq!(skips(&spec(VersionSet::Current, false, false)), "!/pod-to-world !/pod-to-cidr", "chart default");
        assert_eq!(skips(&spec(VersionSet::Current, true, true)), "none", "with egress its image arrives");
        assert_eq!(skips(&spec(VersionSet::Seed, false, true)), "!/pod-to-world !/pod-to-cidr", "v0.18.4 has no l7-lb");
        assert!(VersionSet::Current.pins().cilium_cli.starts_with("0.19."), "the set this was read for");
        // cilium/cilium-cli@v0.19.7:vendor/github.com/cilium/cilium/cilium-cli/connectivity/builder/l7_lb.go:17
        // names the test `newTest("l7-lb", ct)`; a '!' filter without '/' matches the test's name.
        assert_eq!(L7_LB_SKIP.trim_start_matches('!'), "l7-lb");
    }

    #[test]
    fn a_missing_report_is_a_failed_check_that_says_why() {
        let (pass, why) = junit_verdict(None, "connectivity-test.txt");
        assert!(!pass);
        assert!(why.contains(REMOTE_JUNIT) && why.contains("connectivity-test.txt"), "{why}");
        // Written by hand to exercise the verdict when totals are present.
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="42" disabled="0" errors="0" failures="0" time="301.2"></testsuites>"#;
        assert!(junit_verdict(Some(xml), "x").0);
        assert!(!junit_verdict(Some(&xml.replace("failures=\"0\"", "failures=\"1\"")), "x").0);
        assert!(!junit_verdict(Some(""), "x").0, "an empty file lists no tests");
    }

    #[test]
    fn the_skip_filters_match_the_internet_scenarios_by_name() {
        // What cilium-cli does with a '!' filter: a regexp matched against "<test>/<scenario>". The
        // scenario names: world.go "pod-to-world", "pod-to-world-2", "pod-to-world-with-tls-intercept";
        // to-cidr.go "pod-to-cidr". Matching is unanchored, as Go's regexp.MatchString is.
        let skipped = |name: &str| NEEDS_INTERNET.iter().any(|f| name.contains(f.trim_start_matches('!')));
        for s in ["no-policies/pod-to-world", "to-fqdns/pod-to-world-2", "no-policies/pod-to-cidr"] {
            assert!(skipped(s), "{s}");
        }
        for s in ["no-policies/pod-to-pod", "no-policies/pod-to-service", "no-policies/pod-to-host"] {
            assert!(!skipped(s), "{s}");
        }
    }
}
