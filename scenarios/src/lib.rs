//! The seed's scenarios, and the trait a scenario of your own implements to run the same way. Each turns one
//! lesson of shared/seed/cilium-bootstrap.md into something that runs, asserts what is true (where the seed's
//! explanation is wrong or incomplete, the scenario says so), and on failure keeps what explains it.
//!
//! A scenario implements [`Scenario`]: it declares the cluster it needs ([`Needs`]: the phase it starts from
//! and the spec changes it makes), acts on it through a [`World`] (built on `kthw::testkit`, the library's
//! public test API, and nothing else), and writes a [`Report`] of checks (asserted) and facts (reported,
//! never asserted). One implementation runs three ways: `kthw scenario run NAME [--on CLUSTER]` (the
//! built-ins, [`BuiltIn`]), a test binary (the `scenarios` nextest binary, or a user's own), and [`run`] from a
//! program that reproduces a reported bug: each with the same report, checks and failure bundle.
//!
//! What each scenario reads from upstream output (iptables chains, `cilium-dbg` tables, Forbidden texts, ...)
//! is parsed by pure functions beside it, unit-tested against real output whose source each fixture names.
//!
//! ```no_run
//! use kthw::phase::Phase;
//! use kthw_scenarios::{run, Needs, On, Options, Report, Scenario, ScenarioFuture, World};
//!
//! /// Every worker answers `hostname` with its own name.
//! struct Hostnames;
//!
//! impl Scenario for Hostnames {
//!     fn name(&self) -> &'static str {
//!         "hostnames"
//!     }
//!     fn shows(&self) -> &'static str {
//!         "every worker knows its name"
//!     }
//!     fn needs(&self) -> Needs {
//!         Needs::at(Phase::Etcd)
//!     }
//!     fn run<'a>(&'a self, w: &'a World, r: &'a mut Report) -> ScenarioFuture<'a> {
//!         Box::pin(async move {
//!             for worker in w.workers() {
//!                 let said = w.succeed(&worker, "hostname").await?;
//!                 r.check(format!("{worker} knows its name"), said.trim() == worker, said);
//!             }
//!             Ok(())
//!         })
//!     }
//! }
//!
//! # async fn f() -> Result<(), kthw_scenarios::ScenarioError> {
//! let on = On::Fresh { spec: Box::default(), name: "hostnames".into() };
//! let report = run(&Hostnames, on, Options::default()).await?;
//! assert!(report.passed(), "{report}");
//! # Ok(()) }
//! ```

mod error;
mod report;
mod run;
mod workload;
mod world;

pub mod clusterip;
pub mod cold_image;
pub mod connectivity;
pub mod dns_node_names;
pub mod pod_cidr;
pub mod rbac;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use kthw::phase::Phase;
use kthw::spec::ClusterSpec;

pub use error::ScenarioError;
pub use kthw::diagnosis;
pub use report::{Check, Fact, Report};
pub use run::{preflight, run, On, Options};
pub use world::{outputs, World};

/// What [`Scenario::run`] returns: its acting, borrowing its world and report.
pub type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ScenarioError>> + 'a>>;

/// A scenario: a named lesson with the cluster it needs, acted out on a [`World`] into a [`Report`]. A check
/// that fails is a report that did not pass; an error is a scenario that could not reach its verdict.
pub trait Scenario: Sync {
    /// The name a person types and reads (`kthw scenario run NAME`, directories, bundles).
    fn name(&self) -> &'static str;

    /// What it shows, in a line.
    fn shows(&self) -> &'static str;

    /// The cluster it needs.
    fn needs(&self) -> Needs;

    /// Acts on `w`, recording checks and facts in `r`.
    fn run<'a>(&'a self, w: &'a World, r: &'a mut Report) -> ScenarioFuture<'a>;
}

/// The built-in scenarios, by the name a person types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltIn {
    PodCidr,
    ClusterIpNoKubeProxy,
    RbacFailure,
    ColdImageWait,
    DnsNodeNames,
    Connectivity,
}

impl BuiltIn {
    pub const ALL: [BuiltIn; 6] = [
        BuiltIn::PodCidr,
        BuiltIn::ClusterIpNoKubeProxy,
        BuiltIn::RbacFailure,
        BuiltIn::ColdImageWait,
        BuiltIn::DnsNodeNames,
        BuiltIn::Connectivity,
    ];

    /// The scenario itself.
    pub fn scenario(self) -> &'static dyn Scenario {
        match self {
            BuiltIn::PodCidr => &pod_cidr::PodCidr,
            BuiltIn::ClusterIpNoKubeProxy => &clusterip::ClusterIpNoKubeProxy,
            BuiltIn::RbacFailure => &rbac::RbacFailure,
            BuiltIn::ColdImageWait => &cold_image::ColdImageWait,
            BuiltIn::DnsNodeNames => &dns_node_names::DnsNodeNames,
            BuiltIn::Connectivity => &connectivity::Connectivity,
        }
    }

    pub fn name(self) -> &'static str {
        self.scenario().name()
    }

    pub fn shows(self) -> &'static str {
        self.scenario().shows()
    }

    pub fn needs(self) -> Needs {
        self.scenario().needs()
    }

    /// The built-in scenario named `name`, or an error that lists them.
    pub fn from_name(name: &str) -> Result<BuiltIn, ScenarioError> {
        BuiltIn::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| ScenarioError::Unknown {
            name: name.to_string(),
            known: BuiltIn::ALL.iter().map(|s| s.name()).collect(),
        })
    }
}

impl fmt::Display for BuiltIn {
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
    /// A cluster with every phase through `from` done, none after, as the spec says, one worker at least.
    pub fn at(from: Phase) -> Needs {
        Needs { from, through: from, overrides: Vec::new(), images: &[], workers: 1 }
    }

    /// It runs the phases after `from` through `through` itself: their artifacts must be at hand.
    pub fn running(mut self, through: Phase) -> Needs {
        self.through = through;
        self
    }

    /// A change to the spec it is given.
    pub fn with(mut self, o: Override) -> Needs {
        self.overrides.push(o);
        self
    }

    /// Pinned image artifacts it deploys beyond the phases' own.
    pub fn images(mut self, images: &'static [&'static str]) -> Needs {
        self.images = images;
        self
    }

    /// The fewest workers its checks mean anything on.
    pub fn workers(mut self, workers: usize) -> Needs {
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
        for s in BuiltIn::ALL {
            assert_eq!(BuiltIn::from_name(s.name()).unwrap(), s);
            assert!(!s.shows().is_empty());
        }
        let err = BuiltIn::from_name("pod-cidrs").unwrap_err().to_string();
        assert!(err.contains("pod-cidrs") && err.contains("pod-cidr, clusterip-no-kube-proxy"), "{err}");
    }

    #[test]
    fn every_image_a_scenario_deploys_is_pinned_for_it() {
        for set in kthw::spec::VersionSet::ALL {
            let m = Manifest::pinned().for_set(set);
            for s in BuiltIn::ALL {
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
        let needs = BuiltIn::ClusterIpNoKubeProxy.needs();
        assert_eq!(needs.unfit(&ClusterSpec::default()), None, "the seed's two workers fit");
        assert_eq!(needs.unfit(&one).as_deref(), Some("it needs 2 workers and the spec has 1"));
        assert_eq!(BuiltIn::PodCidr.needs().unfit(&one), None, "one worker holds pod-cidr's checks");
        // Through the entry point every caller uses: refused before the artifacts are looked at or a VM boots.
        let on = On::Fresh { spec: Box::new(one), name: "kthw-unfit".into() };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let err = rt.block_on(run(BuiltIn::ClusterIpNoKubeProxy.scenario(), on, Options::default())).unwrap_err();
        assert!(matches!(err, ScenarioError::Unfit { .. }), "{}", kthw::chain(&err));
        assert!(err.to_string().contains("needs 2 workers and the spec has 1; no VM was booted"), "{err}");
    }

    /// A scenario of a user's own, as they would write it, written by hand to exercise the trait.
    struct ThreeWorkers;

    impl Scenario for ThreeWorkers {
        fn name(&self) -> &'static str {
            "three-workers"
        }
        fn shows(&self) -> &'static str {
            "a user's scenario runs the way the built-ins do"
        }
        fn needs(&self) -> Needs {
            Needs::at(Phase::Etcd).workers(3).with(Override::ResolveNodeNames(false))
        }
        fn run<'a>(&'a self, w: &'a World, r: &'a mut Report) -> ScenarioFuture<'a> {
            Box::pin(async move {
                r.check("it ran", true, w.name());
                Ok(())
            })
        }
    }

    #[test]
    fn a_users_scenario_goes_through_the_same_entry_point_and_refusals() {
        let on = On::Fresh { spec: Box::default(), name: "kthw-users".into() };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let err = rt.block_on(run(&ThreeWorkers, on, Options::default())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "scenario three-workers cannot run on this spec: it needs 3 workers and the spec has 2; no VM was booted"
        );
        assert_eq!(ThreeWorkers.needs().describe(), "a cluster through etcd, resolve_node_names = false, 3 workers");
    }

    #[test]
    fn overrides_change_the_spec_and_say_so() {
        let needs = BuiltIn::DnsNodeNames.needs();
        let spec = needs.spec(ClusterSpec::default());
        assert!(!spec.resolve_node_names);
        assert!(needs.overrides.iter().all(|o| o.holds(&spec)));
        assert!(!Override::ResolveNodeNames(false).holds(&ClusterSpec::default()));
        assert_eq!(
            needs.describe(),
            "a cluster through workers, the artifacts through coredns, resolve_node_names = false"
        );
        assert!(!BuiltIn::ColdImageWait.needs().spec(ClusterSpec::default()).images.preload);
    }
}
