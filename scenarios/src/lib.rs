//! The seed's scenarios: each turns one lesson of shared/seed/cilium-bootstrap.md into something that runs,
//! asserts what is true (where the seed's explanation is wrong or incomplete, the scenario says so), and on
//! failure keeps what explains it.
//!
//! A scenario is one module and one [`Scenario`] entry. It declares the cluster it needs ([`Needs`]: the
//! phase it starts from and the spec changes it makes), acts on it through a [`World`], and writes a
//! [`Report`] of checks (asserted) and facts (reported, never asserted). One implementation runs three ways:
//! `kthw scenario run NAME [--on CLUSTER]`, the `scenarios` nextest binary, and [`run`] from a program that
//! reproduces a reported bug.
//!
//! What each scenario reads from upstream output (iptables chains, `cilium-dbg` tables, Forbidden texts, ...)
//! is parsed by pure functions beside it, unit-tested against real output whose source each fixture names.

mod error;
mod report;
mod run;
mod workload;
mod world;

pub mod cilium_junit;
pub mod clusterip;
pub mod cold_image;
pub mod connectivity;
pub mod dns_node_names;
pub mod pod_cidr;
pub mod rbac;

use std::fmt;

use kthw::phase::Phase;
use kthw::spec::ClusterSpec;

pub use error::ScenarioError;
pub use kthw::diagnosis;
pub use report::{Check, Fact, Report};
pub use run::{preflight, run, On, Options};
pub use world::{outputs, World};

/// Every scenario, by the name a person types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    PodCidr,
    ClusterIpNoKubeProxy,
    RbacFailure,
    ColdImageWait,
    DnsNodeNames,
    Connectivity,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::PodCidr,
        Scenario::ClusterIpNoKubeProxy,
        Scenario::RbacFailure,
        Scenario::ColdImageWait,
        Scenario::DnsNodeNames,
        Scenario::Connectivity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::PodCidr => "pod-cidr",
            Scenario::ClusterIpNoKubeProxy => "clusterip-no-kube-proxy",
            Scenario::RbacFailure => "rbac-failure",
            Scenario::ColdImageWait => "cold-image-wait",
            Scenario::DnsNodeNames => "dns-node-names",
            Scenario::Connectivity => "connectivity",
        }
    }

    /// What it shows, in a line.
    pub fn shows(self) -> &'static str {
        match self {
            Scenario::PodCidr => {
                "each Cilium node has one distinct block of the pool; pods get addresses in their node's block; the \
                 deployed pool equals the spec's"
            }
            Scenario::ClusterIpNoKubeProxy => {
                "no kube-proxy and no KUBE-* chains anywhere; ClusterIP (by IP and name) and NodePort answer through \
                 Cilium; a service scaled to zero refuses"
            }
            Scenario::RbacFailure => {
                "`cilium install` as system:kube-controller-manager is Forbidden (as an access review predicts); \
                 with admin-internal it succeeds"
            }
            Scenario::ColdImageWait => {
                "with cold images behind a slow mirror, `cilium status --wait` times out and is classified as still \
                 pulling; a longer wait succeeds; warm installs are fast"
            }
            Scenario::DnsNodeNames => {
                "without node names in /etc/hosts, `cilium status` cannot resolve worker names though every node is \
                 Ready; what clears it (and whether CoreDNS does)"
            }
            Scenario::Connectivity => {
                "`cilium connectivity test` without the tests that need the internet, its images pinned and \
                 preloaded, its JUnit kept"
            }
        }
    }

    /// The cluster it needs.
    pub fn needs(self) -> Needs {
        match self {
            Scenario::PodCidr => Needs::at(Phase::Ready),
            // Its client runs on another worker than its server: what crosses nodes is what Cilium routes.
            Scenario::ClusterIpNoKubeProxy => Needs::at(Phase::Ready).images(clusterip::IMAGES).workers(2),
            Scenario::RbacFailure => Needs::at(Phase::Workers).running(Phase::Cilium),
            Scenario::ColdImageWait => Needs::at(Phase::Workers).running(Phase::Cilium).with(Override::Preload(false)),
            Scenario::DnsNodeNames => {
                Needs::at(Phase::Workers).running(Phase::Coredns).with(Override::ResolveNodeNames(false))
            }
            Scenario::Connectivity => Needs::at(Phase::Ready).images(connectivity::IMAGES),
        }
    }

    /// The scenario named `name`, or an error that lists the known ones.
    pub fn from_name(name: &str) -> Result<Scenario, ScenarioError> {
        Scenario::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| ScenarioError::Unknown {
            name: name.to_string(),
            known: Scenario::ALL.iter().map(|s| s.name()).collect(),
        })
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A change a scenario makes to the spec it is given, before anything boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override {
    /// `images.preload`: false makes pods pull, as on the seed's cold nodes.
    Preload(bool),
    /// `resolve_node_names`: false leaves node names out of every /etc/hosts, as in the seed.
    ResolveNodeNames(bool),
}

impl Override {
    pub fn apply(self, spec: &mut ClusterSpec) {
        match self {
            Override::Preload(v) => spec.images.preload = v,
            Override::ResolveNodeNames(v) => spec.resolve_node_names = v,
        }
    }

    /// Whether `spec` already says what this override says (a kept cluster's spec, for `--on`).
    pub fn holds(self, spec: &ClusterSpec) -> bool {
        match self {
            Override::Preload(v) => spec.images.preload == v,
            Override::ResolveNodeNames(v) => spec.resolve_node_names == v,
        }
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Override::Preload(v) => write!(f, "images.preload = {v}"),
            Override::ResolveNodeNames(v) => write!(f, "resolve_node_names = {v}"),
        }
    }
}

/// The cluster a scenario needs: the phase it starts from (every phase through it done, none after), the
/// phases it runs itself (whose artifacts it needs), its spec changes, and images of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    pub from: Phase,
    /// The last phase whose artifacts the scenario needs: `from`, or a later one it runs itself.
    pub through: Phase,
    pub overrides: Vec<Override>,
    /// Pinned image artifacts it deploys beyond the phases' own (`scenarios` in harness/artifacts.toml).
    pub images: &'static [&'static str],
    /// The fewest workers its checks mean anything on.
    pub workers: usize,
}

impl Needs {
    fn at(from: Phase) -> Needs {
        Needs { from, through: from, overrides: Vec::new(), images: &[], workers: 1 }
    }
    fn running(mut self, through: Phase) -> Needs {
        self.through = through;
        self
    }
    fn with(mut self, o: Override) -> Needs {
        self.overrides.push(o);
        self
    }
    fn images(mut self, images: &'static [&'static str]) -> Needs {
        self.images = images;
        self
    }
    fn workers(mut self, workers: usize) -> Needs {
        self.workers = workers;
        self
    }

    /// Why `spec` cannot hold this scenario's checks, if it cannot: too few workers.
    pub fn unfit(&self, spec: &ClusterSpec) -> Option<String> {
        let has = spec.workers().count();
        (has < self.workers).then(|| format!("it needs {} workers and the spec has {has}", self.workers))
    }

    /// `spec` with this scenario's changes.
    pub fn spec(&self, mut spec: ClusterSpec) -> ClusterSpec {
        for o in &self.overrides {
            o.apply(&mut spec);
        }
        spec
    }

    /// One line for `kthw scenario list`.
    pub fn describe(&self) -> String {
        let mut s = format!("a cluster through {}", self.from);
        if self.through != self.from {
            s.push_str(&format!(", the artifacts through {}", self.through));
        }
        for o in &self.overrides {
            s.push_str(&format!(", {o}"));
        }
        for i in self.images {
            s.push_str(&format!(", image {i}"));
        }
        if self.workers > 1 {
            s.push_str(&format!(", {} workers", self.workers));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kthw::artifacts::{Kind, Manifest};

    #[test]
    fn every_scenario_has_a_unique_name_that_finds_it() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::from_name(s.name()).unwrap(), s);
            assert!(!s.shows().is_empty());
        }
        let err = Scenario::from_name("pod-cidrs").unwrap_err().to_string();
        assert!(err.contains("pod-cidrs") && err.contains("pod-cidr, clusterip-no-kube-proxy"), "{err}");
    }

    #[test]
    fn every_image_a_scenario_deploys_is_pinned_for_it() {
        for set in kthw::spec::VersionSet::ALL {
            let m = Manifest::pinned().for_set(set);
            for s in Scenario::ALL {
                for name in s.needs().images {
                    let a = m.get(name).unwrap_or_else(|| panic!("{s}: {name} is not pinned"));
                    assert_eq!(a.kind, Kind::Image, "{name}");
                    assert!(a.scenarios.iter().any(|n| n == s.name()), "{name} does not name {s} in artifacts.toml");
                }
            }
        }
    }

    #[test]
    fn a_scenario_that_needs_two_workers_refuses_a_one_worker_spec_before_booting() {
        let mut one = ClusterSpec::default();
        one.nodes.retain(|n| n.name != "worker-node-2");
        let needs = Scenario::ClusterIpNoKubeProxy.needs();
        assert_eq!(needs.unfit(&ClusterSpec::default()), None, "the seed's two workers fit");
        assert_eq!(needs.unfit(&one).as_deref(), Some("it needs 2 workers and the spec has 1"));
        assert_eq!(Scenario::PodCidr.needs().unfit(&one), None, "one worker holds pod-cidr's checks");
        // Through the entry point every caller uses: refused before the artifacts are looked at or a VM boots.
        let on = On::Fresh { spec: Box::new(one), name: "kthw-unfit".into() };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let err = rt.block_on(run(Scenario::ClusterIpNoKubeProxy, on, Options::default())).unwrap_err();
        assert!(matches!(err, ScenarioError::Unfit { .. }), "{}", kthw::chain(&err));
        assert!(err.to_string().contains("needs 2 workers and the spec has 1; no VM was booted"), "{err}");
    }

    #[test]
    fn overrides_change_the_spec_and_say_so() {
        let needs = Scenario::DnsNodeNames.needs();
        let spec = needs.spec(ClusterSpec::default());
        assert!(!spec.resolve_node_names);
        assert!(needs.overrides.iter().all(|o| o.holds(&spec)));
        assert!(!Override::ResolveNodeNames(false).holds(&ClusterSpec::default()));
        assert_eq!(
            needs.describe(),
            "a cluster through workers, the artifacts through coredns, resolve_node_names = false"
        );
        assert!(!Scenario::ColdImageWait.needs().spec(ClusterSpec::default()).images.preload);
    }
}
