//! Writing your own tests with kthw: a cluster of your own for each test, restored from a golden snapshot in
//! seconds, driven the way NixOS's test driver drives machines, with Kubernetes through kube-rs, faults that
//! revert themselves, and a failure bundle on any failure that names the test. The built-in scenarios
//! (`kthw-scenarios`) are written on this and nothing else.
//!
//! - [`TestCluster::at`] a phase, optionally with a [`Golden`] state of your own, then
//!   [`Builder::start`]: a private copy. [`run`] wraps a test body so that an error or panic leaves a
//!   failure bundle naming the test and the message.
//! - [`TestCluster::node`] gives a [`Node`]: `succeed`, `fail`, `exec`, `wait_until_succeeds`,
//!   `wait_until_fails`, `wait_for_unit`, `wait_for_port`, `upload`, `download`;
//!   [`TestCluster::on_every_node`] runs one command on every node at once.
//! - [`TestCluster::kube`] gives a [`Kube`]: `apply` (server-side, multi-document), `delete`, `wait_for` a
//!   [`Condition`], `exec`, `logs`, `namespace`.
//! - [`TestCluster::fault`] gives a [`FaultGuard`] that reverts the fault when dropped.
//! - [`TestCluster::load_images`] and the spec's `images.extra` put images of your own on the nodes.
//! - [`TestCluster::attach_command`], [`TestCluster::attach_file`], [`TestCluster::attach_text`] add to the
//!   failure bundle; the pods of namespaces the test made ([`Kube::namespace`]) go in with their logs.
//!
//! Every deadline is written for KVM and scaled for the acceleration the cluster runs under, as the
//! library's own are. `KTHW_KEEP=on-failure` keeps a failed test's cluster and prints how to get in, and how
//! to run the test again on it (`KTHW_TEST_ON`).
//!
//! ```no_run
//! use kthw::phase::Phase;
//! use kthw::testkit::{run, TestCluster};
//!
//! #[tokio::test]
//! async fn every_node_runs_the_same_kernel() {
//!     let spec = kthw::ClusterSpec { etcd_from: kthw::spec::Origin::Debian, ..Default::default() };
//!     run(TestCluster::at(Phase::Etcd).spec(spec), "every_node_runs_the_same_kernel", async |cluster| {
//!         let kernels = cluster.on_every_node("uname -r").await?;
//!         let first = kernels.values().next().map(|o| o.stdout_lossy());
//!         for (node, out) in &kernels {
//!             if Some(out.stdout_lossy()) != first {
//!                 return Err(kthw::testkit::TestError::check(format!("{node} runs {}", out.stdout_lossy())));
//!             }
//!         }
//!         Ok(())
//!     })
//!     .await
//!     .unwrap();
//! }
//! ```

mod cluster;
mod condition;
mod error;
mod fault;
mod golden;
mod kube;
mod manifest;
mod node;
mod panics;
mod pinned;
mod run;

pub use self::kube::{Kube, FIELD_MANAGER};
pub use crate::bundle::{Extras, TestRecord};
pub use crate::cluster::Fault;
pub use cluster::{cluster_name, Builder, TestCluster, TEST_ON};
pub use condition::Condition;
pub use error::TestError;
pub use fault::FaultGuard;
pub use golden::{Golden, Setup, SetupFuture};
pub use manifest::{documents, Doc, ObjectRef};
pub use node::{Node, NodeOutputs};
pub use panics::reason;
pub use pinned::{pinned_image, pinned_pod};
pub use run::run;
