//! What a scenario acts through: its test cluster (`kthw::testkit`, the library's public test API), the
//! apiserver, the phases' artifacts, and commands on nodes, named as a person would do them (`succeed`,
//! `exec`, `kubectl`, `wait_until`), each with a deadline scaled for the acceleration, and every output worth
//! reading kept in the scenario's directory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kthw::bootstrap::cilium_install::CILIUM_CLI;
use kthw::bootstrap::{Bootstrap, Layout, CILIUM_IMAGES};
use kthw::diagnosis;
use kthw::events::Events;
use kthw::paths::Paths;
use kthw::phase::Phase;
use kthw::spec::ClusterSpec;
use kthw::ssh::Output;
use kthw::testkit::{Kube, TestCluster, TestError};

use crate::{Report, Scenario, ScenarioError};

/// How often waits look again.
const POLL: Duration = Duration::from_secs(2);
/// A command on a node, on KVM; scaled under TCG.
const COMMAND: Duration = Duration::from_secs(60);

/// Where a scenario named `scenario` run on `cluster` keeps its report and outputs.
pub fn outputs(paths: &Paths, cluster: &str, scenario: &str) -> PathBuf {
    paths.state.join("scenarios").join(cluster).join(scenario)
}

/// A scenario's view of its cluster.
#[derive(Debug)]
pub struct World {
    name: &'static str,
    pub cluster: TestCluster,
    pub kube: Kube,
    events: Events,
    dir: PathBuf,
}

impl World {
    /// The world of `scenario` on `cluster`. Its outputs go to `<state>/scenarios/<cluster>/<scenario>/`,
    /// outside the run directory, so that they outlive a cluster torn down after the run.
    pub async fn new(scenario: &dyn Scenario, cluster: &TestCluster, events: &Events) -> Result<World, ScenarioError> {
        let name = scenario.name();
        let kube = cluster.kube().await.map_err(|e| ScenarioError::Test { scenario: name, source: Box::new(e) })?;
        let dir = outputs(cluster.paths(), cluster.name(), name);
        std::fs::create_dir_all(&dir).map_err(|source| ScenarioError::Io {
            scenario: name,
            path: dir.clone(),
            source,
        })?;
        Ok(World {
            name,
            cluster: cluster.clone(),
            kube,
            events: events.with_timeline(cluster.cluster().run_dir()),
            dir,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// A test API error as this scenario's.
    pub fn err(&self) -> impl Fn(TestError) -> ScenarioError + '_ {
        move |e| ScenarioError::Test { scenario: self.name, source: Box::new(e) }
    }

    pub fn spec(&self) -> &ClusterSpec {
        self.cluster.spec()
    }

    pub fn bootstrap(&self) -> &Bootstrap {
        self.cluster.bootstrap()
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    pub fn layout(&self) -> &Layout {
        &self.bootstrap().layout
    }

    pub fn client(&self) -> kube::Client {
        self.kube.client()
    }

    /// The control plane's name.
    pub fn cp(&self) -> String {
        self.cluster.control_plane()
    }

    pub fn workers(&self) -> Vec<String> {
        self.cluster.workers()
    }

    /// A deadline written for KVM, scaled for this cluster's acceleration.
    pub fn scaled(&self, kvm: Duration) -> Duration {
        self.cluster.scaled(kvm)
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn report(&self) -> Report {
        Report::new(self.name, self.cluster.name(), self.dir.clone())
    }

    /// Runs `cmd` on `node` within `deadline` (already scaled) and returns its output whatever its exit
    /// status.
    pub async fn exec(&self, node: &str, cmd: &str, deadline: Duration) -> Result<Output, ScenarioError> {
        let node = self.cluster.node(node).map_err(self.err())?;
        node.exec_within(cmd, deadline).await.map_err(self.err())
    }

    /// Runs `cmd` on `node`; its stdout, or an error with everything it printed.
    pub async fn succeed(&self, node: &str, cmd: &str) -> Result<String, ScenarioError> {
        let out = self.exec(node, cmd, self.scaled(COMMAND)).await?;
        if out.success() {
            return Ok(out.stdout_lossy());
        }
        Err(ScenarioError::Command {
            scenario: self.name,
            node: node.to_string(),
            cmd: cmd.to_string(),
            status: out.describe_status(),
            output: format!("{}{}", out.stdout_lossy(), out.stderr_lossy()),
        })
    }

    /// kubectl on the control plane as root's admin-internal identity.
    pub async fn kubectl(&self, args: &str) -> Result<Output, ScenarioError> {
        let cmd = format!("{} {args}", self.layout().kubectl());
        self.exec(&self.cp(), &cmd, self.scaled(COMMAND)).await
    }

    /// Keeps `text` as `file` in the scenario's directory; returns where.
    pub fn keep(&self, file: &str, text: &str) -> Result<PathBuf, ScenarioError> {
        let path = self.dir.join(file);
        std::fs::write(&path, text).map_err(|source| ScenarioError::Io {
            scenario: self.name(),
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Runs one phase of the bootstrap on the cluster.
    pub async fn phase(&self, phase: Phase) -> Result<(), ScenarioError> {
        let ran = self.bootstrap().run(self.cluster.cluster(), phase, &self.events).await;
        ran.map(|_| ()).map_err(|e| ScenarioError::Phase { scenario: self.name(), phase, source: Box::new(e) })
    }

    /// Puts pinned images on every worker, as `phase` would.
    pub async fn preload(&self, phase: Phase, images: &[&str]) -> Result<(), ScenarioError> {
        self.bootstrap()
            .preload(self.cluster.cluster(), phase, images, &self.events)
            .await
            .map(|_| ())
            .map_err(|e| ScenarioError::Phase { scenario: self.name(), phase, source: Box::new(e) })
    }

    /// Polls `probe` until it returns `Ok(Some(value))`, at most `deadline`; `Ok(None)` and `Err(seen)` mean
    /// not yet, and the last thing seen is in the timeout's error.
    pub async fn wait_until<T, F>(&self, what: &str, deadline: Duration, mut probe: F) -> Result<T, ScenarioError>
    where
        F: AsyncFnMut() -> Result<Option<T>, String>,
    {
        let start = Instant::now();
        let mut last = "nothing yet".to_string();
        loop {
            match probe().await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(seen) => last = seen,
            }
            if start.elapsed() >= deadline {
                return Err(ScenarioError::Timeout {
                    scenario: self.name(),
                    what: what.to_string(),
                    waited: start.elapsed(),
                    last,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The pinned cilium CLI on the control plane, where the cilium phase puts it; and, unless the spec says
    /// otherwise, Cilium's images on the workers (as the phase does before it installs).
    pub async fn cilium_cli(&self) -> Result<(), ScenarioError> {
        let phase = Phase::Cilium;
        let err = |e| ScenarioError::Phase { scenario: self.name(), phase, source: Box::new(e) };
        let cli = self.bootstrap().binaries(phase, "cilium-cli", &["cilium".to_string()]).map_err(err)?.remove(0);
        let cp = self.cluster.node(&self.cp()).map_err(self.err())?;
        cp.upload(&cli, CILIUM_CLI).await.map_err(self.err())?;
        // An upload keeps the cache's mode; the CLI must be executable whatever that says.
        cp.succeed(&format!("chmod 0755 {CILIUM_CLI}")).await.map_err(self.err())?;
        if self.spec().images.preload {
            self.preload(phase, &CILIUM_IMAGES).await?;
        }
        Ok(())
    }

    /// A command line on the control plane, quoted word by word; its output whatever the exit status, with
    /// the command and output kept as `file`.
    pub async fn run_argv(&self, argv: &[String], deadline: Duration, file: &str) -> Result<Output, ScenarioError> {
        let cmd = argv.iter().map(|a| kthw::ssh::shell_quote(a)).collect::<Vec<_>>().join(" ");
        let out = self.exec(&self.cp(), &cmd, deadline).await?;
        self.keep(
            file,
            &format!("$ {cmd}\n{}{}\n({})\n", out.stdout_lossy(), out.stderr_lossy(), out.describe_status()),
        )?;
        Ok(out)
    }

    /// What the cluster says about a failure: pods, recent events and their diagnosis, kept as files; the
    /// findings, most telling cause first, for the report.
    pub async fn explain(&self) -> Vec<String> {
        let mut text = String::new();
        for (file, args) in [
            ("pods.txt", "get pods -A -o wide"),
            ("events.txt", "get events -A --sort-by=.lastTimestamp"),
            ("describe-unready-pods.txt", "describe pods -A --field-selector=status.phase!=Running"),
        ] {
            match self.kubectl(args).await {
                Ok(out) => {
                    let got = format!("$ kubectl {args}\n{}{}", out.stdout_lossy(), out.stderr_lossy());
                    if let Err(e) = self.keep(file, &got) {
                        tracing::warn!(error = %kthw::chain(&e), "cannot keep {file}");
                    }
                    text.push_str(&got);
                }
                Err(e) => text.push_str(&format!("kubectl {args}: {}\n", kthw::chain(&e))),
            }
        }
        let findings = diagnosis::diagnose(&text);
        if findings.is_empty() {
            return vec![format!("nothing known in pods and events (kept in {})", self.dir.display())];
        }
        diagnosis::explain(&findings).lines().map(|l| l.trim().to_string()).collect()
    }
}
