//! connectivity: `cilium connectivity test`, as the seed's step 5 ran it (`--test-namespace cilium-test`),
//! with the tests that need the internet left out when the spec has no egress, the images it deploys pinned
//! by digest and preloaded like Cilium's (nodes cannot pull with egress off), and its JUnit report kept
//! beside the harness's.
//!
//! Sources (cilium/cilium-cli v0.18.4, vendor/github.com/cilium/cilium/cilium-cli/): the flags are
//! cli/connectivity.go's (`--test` "skip tests by starting the expression with '!', target Scenarios with
//! e.g. '/pod-to-cidr'", `--curl-image`, `--json-mock-image`, `--dns-test-server-image`, `--junit-file`,
//! `--test-namespace`); a scenario is matched as `<test>/<scenario>` (connectivity/check/test.go
//! `scenarioName`); the scenarios that reach outside the cluster are connectivity/tests/world.go's
//! `pod-to-world*` (the external targets one.one.one.one and k8s.io) and to-cidr.go's `pod-to-cidr` (1.1.1.1,
//! 1.0.0.1); the report's totals are `<testsuites tests= failures= errors=>` (connectivity/internal/junit).

use std::time::Duration;

use kthw::bootstrap::cilium_install::CILIUM_CLI;
use kthw::phase::Phase;

use crate::{Needs, Report, Scenario, ScenarioError, ScenarioFuture, World};
use kthw::testkit::pinned_image;

/// The images it deploys that no phase has put on the workers. cilium-cli v0.19.7 also deploys `l7-lb` with an
/// echo image no primary source pins (`kthw::diagnosis::UNPINNED`): without egress that pod never starts, the
/// run fails, and `explain()` names the image as unpinned rather than as a mirror's fault.
pub const IMAGES: &[&str] = &["connectivity-curl", "connectivity-json-mock"];
/// Scenarios that need a route to the internet: skipped when `egress = false`.
pub const NEEDS_INTERNET: [&str; 2] = ["!/pod-to-world", "!/pod-to-cidr"];
/// Where the CLI writes its JUnit on the control plane.
pub const REMOTE_JUNIT: &str = "/root/cilium-connectivity-junit.xml";

/// The command line: the seed's, with pinned images and, without egress, no internet tests. The DNS test
/// server is the pinned CoreDNS the coredns phase already put on the workers, in place of the CLI's default
/// (docker.io/coredns/coredns:1.12.0, which kthw does not pin).
pub fn argv(set: kthw::spec::VersionSet, egress: bool, kubeconfig: &std::path::Path) -> Vec<String> {
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
    if !egress {
        for t in NEEDS_INTERNET {
            v.push("--test".into());
            v.push(t.into());
        }
    }
    v
}

/// `(tests, failures, errors)` of a JUnit report's `<testsuites>` element.
pub fn junit_totals(xml: &str) -> Option<(u64, u64, u64)> {
    let start = xml.find("<testsuites")?;
    let tag = &xml[start..start + xml[start..].find('>')?];
    let attr = |name: &str| -> Option<u64> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        tag[at..].split('"').next()?.parse().ok()
    };
    Some((attr("tests")?, attr("failures").unwrap_or(0), attr("errors").unwrap_or(0)))
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
            let totals = junit_totals(xml);
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
    let egress = w.spec().egress;
    // A report left by an earlier run (a kept cluster) must not stand in for this one's.
    w.succeed(&w.cp(), &format!("rm -f {REMOTE_JUNIT}")).await?;
    let out = w
        .run_argv(&argv(w.spec().versions, egress, &root), w.scaled(Duration::from_secs(1800)), "connectivity-test.txt")
        .await?;
    r.check("`cilium connectivity test` passes", out.success(), out.describe_status());
    r.fact("tests left out", if egress { "none".to_string() } else { NEEDS_INTERNET.join(" ") });
    let cat = w.exec(&w.cp(), &format!("cat {REMOTE_JUNIT}"), w.scaled(Duration::from_secs(30))).await?;
    let junit = cat.success().then(|| cat.stdout_lossy());
    let (pass, evidence) = match &junit {
        Some(xml) => {
            let kept = w.keep("cilium-connectivity-junit.xml", xml)?;
            let (pass, totals) = junit_verdict(Some(xml), "connectivity-test.txt");
            (pass, format!("{totals} in {}", kept.display()))
        }
        None => junit_verdict(None, "connectivity-test.txt"),
    };
    r.check("its JUnit report lists tests and no failures", pass, evidence);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_egress_the_internet_scenarios_are_skipped_and_every_image_is_pinned() {
        let root = std::path::Path::new("/root/.kube/config");
        let v = argv(kthw::spec::VersionSet::Seed, false, root);
        let pairs: Vec<(&str, &str)> = v.windows(2).map(|p| (p[0].as_str(), p[1].as_str())).collect();
        assert!(pairs.contains(&("--test", "!/pod-to-world")) && pairs.contains(&("--test", "!/pod-to-cidr")));
        assert!(pairs.contains(&("--test-namespace", "cilium-test")), "the seed's namespace");
        for flag in ["--curl-image", "--json-mock-image", "--dns-test-server-image"] {
            let image = pairs.iter().find(|(f, _)| *f == flag).unwrap().1;
            assert!(image.contains("@sha256:"), "{flag} {image} is pinned by digest");
        }
        assert!(
            !argv(kthw::spec::VersionSet::Seed, true, root).iter().any(|a| a == "--test"),
            "with egress nothing is left out"
        );
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

    #[test]
    fn junit_totals_are_read_from_testsuites() {
        // Written by hand to exercise the reader: the attributes connectivity/internal/junit.TestSuites
        // marshals, after xml.Header.
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"42\" disabled=\"3\" errors=\"0\" \
failures=\"1\" time=\"300.5\">\n  <testsuite name=\"connectivity test\" tests=\"42\"></testsuite>\n</testsuites>\n";
        assert_eq!(junit_totals(xml), Some((42, 1, 0)));
        assert_eq!(junit_totals("not xml"), None);
    }
}
