//! What a scenario acts through: its cluster, the phases' artifacts, an API client, and commands on nodes,
//! named as a person would do them (`succeed`, `exec`, `kubectl`, `wait_until`), each with a deadline scaled
//! for the acceleration, and every output worth reading kept in the scenario's directory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kthw::access::ApiClient;
use kthw::bootstrap::cilium_install::CILIUM_CLI;
use kthw::bootstrap::{Bootstrap, Layout, CILIUM_IMAGES};
use kthw::cluster::Cluster;
use kthw::diagnosis;
use kthw::events::Events;
use kthw::paths::Paths;
use kthw::phase::Phase;
use kthw::spec::ClusterSpec;
use kthw::ssh::{Output, Session};

use crate::{Report, Scenario, ScenarioError};

/// How often waits look again.
const POLL: Duration = Duration::from_secs(2);
/// A command on a node, on KVM; scaled under TCG.
const COMMAND: Duration = Duration::from_secs(60);

/// Where a scenario run on `cluster` keeps its report and outputs.
pub fn outputs(paths: &Paths, cluster: &str, scenario: Scenario) -> PathBuf {
    paths.state.join("scenarios").join(cluster).join(scenario.name())
}

/// An SSH session to `node`, for what `scenario` does there.
pub(crate) async fn session(
    scenario: Scenario,
    cluster: &Cluster,
    node: &str,
    what: &str,
) -> Result<Session, ScenarioError> {
    cluster.session(node).await.map_err(|e| ScenarioError::Command {
        scenario: scenario.name(),
        node: node.to_string(),
        cmd: what.to_string(),
        status: "no session".into(),
        output: kthw::chain(&e),
    })
}

/// `cmd` on `node`: its output whatever the exit status. Needs only the nodes, not the apiserver.
pub(crate) async fn exec(
    scenario: Scenario,
    cluster: &Cluster,
    node: &str,
    cmd: &str,
    deadline: Duration,
) -> Result<Output, ScenarioError> {
    let s = session(scenario, cluster, node, cmd).await?;
    s.exec(cmd, deadline).await.map_err(|e| ScenarioError::Ssh {
        scenario: scenario.name(),
        node: node.to_string(),
        cmd: cmd.to_string(),
        source: Box::new(e),
    })
}

/// `cmd` on `node`, which must succeed: its stdout, or an error with everything it printed.
pub(crate) async fn succeed(
    scenario: Scenario,
    cluster: &Cluster,
    node: &str,
    cmd: &str,
    deadline: Duration,
) -> Result<String, ScenarioError> {
    let out = exec(scenario, cluster, node, cmd, deadline).await?;
    if out.success() {
        return Ok(out.stdout_lossy());
    }
    Err(ScenarioError::Command {
        scenario: scenario.name(),
        node: node.to_string(),
        cmd: cmd.to_string(),
        status: out.describe_status(),
        output: format!("{}{}", out.stdout_lossy(), out.stderr_lossy()),
    })
}

pub struct World<'a> {
    pub scenario: Scenario,
    pub cluster: &'a Cluster,
    pub bootstrap: &'a Bootstrap,
    pub events: &'a Events,
    pub api: ApiClient,
    dir: PathBuf,
}

impl<'a> World<'a> {
    /// The scenario's outputs go to `<state>/scenarios/<cluster>/<scenario>/`, outside the run directory, so
    /// that they outlive a cluster torn down after the run.
    pub async fn new(
        scenario: Scenario,
        cluster: &'a Cluster,
        bootstrap: &'a Bootstrap,
        events: &'a Events,
        paths: &Paths,
    ) -> Result<World<'a>, ScenarioError> {
        let api = kthw::access::client(cluster)
            .await
            .map_err(|e| ScenarioError::Access { scenario: scenario.name(), source: Box::new(e) })?;
        let dir = outputs(paths, cluster.name(), scenario);
        std::fs::create_dir_all(&dir).map_err(|source| ScenarioError::Io {
            scenario: scenario.name(),
            path: dir.clone(),
            source,
        })?;
        Ok(World { scenario, cluster, bootstrap, events, api, dir })
    }

    pub fn name(&self) -> &'static str {
        self.scenario.name()
    }

    pub fn spec(&self) -> &ClusterSpec {
        self.cluster.spec()
    }

    pub fn layout(&self) -> &Layout {
        &self.bootstrap.layout
    }

    pub fn client(&self) -> kube::Client {
        self.api.client.clone()
    }

    /// The control plane's name.
    pub fn cp(&self) -> String {
        self.spec().control_plane().name.clone()
    }

    pub fn workers(&self) -> Vec<String> {
        self.spec().workers().map(|w| w.name.clone()).collect()
    }

    /// A deadline written for KVM, scaled for this cluster's acceleration.
    pub fn scaled(&self, kvm: Duration) -> Duration {
        self.cluster.accel().scale(kvm)
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn report(&self) -> Report {
        Report::new(self.scenario, self.cluster.name(), self.dir.clone())
    }

    /// Runs `cmd` on `node` and returns its output whatever its exit status.
    pub async fn exec(&self, node: &str, cmd: &str, deadline: Duration) -> Result<Output, ScenarioError> {
        exec(self.scenario, self.cluster, node, cmd, deadline).await
    }

    /// Runs `cmd` on `node`; its stdout, or an error with everything it printed.
    pub async fn succeed(&self, node: &str, cmd: &str) -> Result<String, ScenarioError> {
        succeed(self.scenario, self.cluster, node, cmd, self.scaled(COMMAND)).await
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
        self.bootstrap.run(self.cluster, phase, self.events).await.map(|_| ()).map_err(|e| ScenarioError::Phase {
            scenario: self.name(),
            phase,
            source: Box::new(e),
        })
    }

    /// Puts pinned images on every worker, as `phase` would.
    pub async fn preload(&self, phase: Phase, images: &[&str]) -> Result<(), ScenarioError> {
        self.bootstrap
            .preload(self.cluster, phase, images, self.events)
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
        let cli = self.bootstrap.binaries(phase, "cilium-cli", &["cilium".to_string()]).map_err(err)?.remove(0);
        let cp = self.cp();
        let session = session(self.scenario, self.cluster, &cp, "upload the cilium CLI").await?;
        session.upload(&cli, CILIUM_CLI, 0o755).await.map_err(|e| ScenarioError::Ssh {
            scenario: self.name(),
            node: cp.clone(),
            cmd: format!("upload {}", cli.display()),
            source: Box::new(e),
        })?;
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
