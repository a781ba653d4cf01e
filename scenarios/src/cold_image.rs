//! cold-image-wait: the seed's `cilium status --wait` timeout on a cold node, made reproducible. With preload
//! off, the workers pull Cilium's images from a registry mirror on control-plane-1 whose link is held to a
//! fixed bandwidth (so the result does not depend on the internet's speed, and nodes still have no egress):
//! `cilium status --wait --wait-duration 30s` times out; the harness classifies it as still pulling (node,
//! image, progress), not failed; its own wait with a deadline sized for the bytes then succeeds; a second
//! install, on warm caches, pulls nothing. Cold over warm is reported as a ratio.
//!
//! Sources: the mirror is Debian's docker-registry (distribution) in the node image, listening on :5000; the
//! workers reach it through containerd's per-registry hosts (containerd v1.7.27 docs/hosts.md: `config_path`
//! for the CRI, `server = "https://..."` and `[host."http://HOST:5000"] capabilities = ["pull", "resolve"]`
//! for a plain-HTTP mirror); the bandwidth is a `tbf` qdisc on control-plane-1's cluster NIC (tc-tbf(8)); a
//! pull in flight shows in `ctr content active` as `REF SIZE AGE` (cmd/ctr/commands/content/content.go,
//! `units.HumanSize` of the bytes so far); a warm pull is the kubelet's `Pulled` event "Container image ...
//! already present on machine" (kubernetes/kubernetes pkg/kubelet/images/image_manager.go).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kthw::bootstrap::cilium_install::{install_argv, status_argv, CILIUM_CLI, CLUSTER_NIC};
use kthw::bootstrap::configs::REGISTRY_HOSTS_DIR;
use kthw::bootstrap::{cilium_workloads, rollout, CILIUM_IMAGES};
use kthw::diagnosis::{self, WaitTimeoutCause};
use kthw::phase::Phase;
use kthw::testkit::TestCluster;
use kube::api::{Api, ListParams};

use crate::{Needs, Override, Report, Scenario, ScenarioError, ScenarioFuture, World};

/// The mirror's port on control-plane-1 (docker-registry's default, /etc/docker/registry/config.yml).
pub const MIRROR_PORT: u16 = 5000;
/// The mirror's bandwidth: slow enough that a cold Cilium install outlasts [`SHORT_WAIT`] on any host.
pub const RATE_MBIT: u64 = 40;
/// How long one image may take to copy into the mirror.
const PUSH_DEADLINE: Duration = Duration::from_secs(600);
/// The seed's wait, cut short so that a cold node cannot make it.
pub const SHORT_WAIT: Duration = Duration::from_secs(30);

/// `hosts.toml` making `mirror` (plain HTTP) the first place containerd pulls `registry`'s images from.
pub fn hosts_toml(registry: &str, mirror: &str) -> String {
    format!("server = \"https://{registry}\"\n\n[host.\"http://{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n")
}

/// An image reference's registry host and the repository path under it: `quay.io/cilium/cilium:v1.17.4` is
/// (`quay.io`, `cilium/cilium:v1.17.4`).
pub fn split_registry(reference: &str) -> Option<(&str, &str)> {
    let (host, path) = reference.split_once('/')?;
    (host.contains('.') || host.contains(':')).then_some((host, path))
}

/// skopeo copying an OCI archive into the mirror (reached at 127.0.0.1:`port` through an SSH forward), every
/// platform and digest kept, so that a pull by the chart's index digest finds it.
pub fn push_argv(archive: &std::path::Path, path: &str, port: u16) -> Vec<String> {
    vec![
        "copy".into(),
        "--all".into(),
        "--preserve-digests".into(),
        "--dest-tls-verify=false".into(),
        format!("oci-archive:{}", archive.display()),
        format!("docker://127.0.0.1:{port}/{path}"),
    ]
}

/// The ingests `ctr content active` lists: (ref, bytes so far as printed).
pub fn active_pulls(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip_while(|l| !l.starts_with("REF"))
        .skip(1)
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

/// How long `workers` nodes pulling `bytes` each through one link of `rate_mbit` take, with room: 1.5 times
/// the transfer, plus two minutes for everything else.
pub fn pull_deadline(bytes: u64, workers: u64, rate_mbit: u64) -> Duration {
    let seconds = bytes * workers * 8 / (rate_mbit * 1_000_000);
    Duration::from_secs(seconds * 3 / 2 + 120)
}

/// Of `events` about the pods named `pods`: the images pulled from a registry (a `Pulling` event) and the
/// ones found on the node (`Pulled` ... "already present on machine").
pub fn pulls(events: &[Event], pods: &[String]) -> (Vec<String>, Vec<String>) {
    let mine = |e: &&Event| e.involved_object.name.as_ref().is_some_and(|n| pods.contains(n));
    let message = |e: &Event| e.message.clone().unwrap_or_default();
    let pulled = events.iter().filter(mine).filter(|e| e.reason.as_deref() == Some("Pulling")).map(message).collect();
    let present = events
        .iter()
        .filter(mine)
        .filter(|e| e.reason.as_deref() == Some("Pulled") && message(e).contains("already present on machine"))
        .map(message)
        .collect();
    (pulled, present)
}

/// A registry mirror serving on the control plane: the registries it stands in for, and the bytes of the
/// archives it was filled from (every platform: an upper bound on what one node pulls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub registries: Vec<String>,
    pub bytes: u64,
}

/// Whether `findings` say "still pulling, not failed": the cause is cold images, naming at least one image
/// (nothing ranked above it, a failed pull included), and every image finding is a pull in flight, a
/// `Pulling` event without its `Pulled`, that names both its image and its node. A mirror without the digest,
/// or containerd falling back to a registry it cannot reach, shows `ErrImagePull`/`ImagePullBackOff` and must
/// fail this check; so must a verdict that cannot say what is pulling where.
pub fn still_pulling(findings: &[diagnosis::Finding]) -> bool {
    use diagnosis::Finding;
    let images: Vec<&Finding> = findings
        .iter()
        .filter(|f| matches!(f, Finding::ImageNotPulled { .. } | Finding::ImagePullFailed { .. }))
        .collect();
    matches!(diagnosis::wait_timeout_cause(findings), WaitTimeoutCause::ColdImages(named) if !named.is_empty())
        && !images.is_empty()
        && images
            .iter()
            .all(|f| f.pull_in_flight() && matches!(f, Finding::ImageNotPulled { image: Some(_), node: Some(_), .. }))
}

/// The nodes `findings` name as pulling, each once: where `ctr content active` must show the pull.
pub fn pulling_nodes(findings: &[diagnosis::Finding]) -> Vec<String> {
    let mut nodes: Vec<String> = Vec::new();
    for f in findings.iter().filter(|f| f.pull_in_flight()) {
        if let diagnosis::Finding::ImageNotPulled { node: Some(n), .. } = f {
            if !nodes.contains(n) {
                nodes.push(n.clone());
            }
        }
    }
    nodes
}

/// Of `pods` (name, the images its containers and init containers run): each (pod, image) for which `events`
/// hold no kubelet `Pulled` "Container image \"IMAGE\" already present on machine". Empty when every image of
/// every pod started from the node's cache.
pub fn not_shown_present(events: &[Event], pods: &[(String, Vec<String>)]) -> Vec<String> {
    let mut missing = Vec::new();
    for (pod, images) in pods {
        for image in images {
            let quoted = format!("Container image \"{image}\" already present on machine");
            let shown = events.iter().any(|e| {
                e.involved_object.name.as_deref() == Some(pod.as_str())
                    && e.reason.as_deref() == Some("Pulled")
                    && e.message.as_deref() == Some(quoted.as_str())
            });
            if !shown {
                missing.push(format!("{pod}: {image}"));
            }
        }
    }
    missing
}

/// Starts the node image's registry (on a node) and waits up to 30 s for `GET /v2/` to succeed: 200 only
/// because the image's config.yml has no auth (Debian's packaged one answers 401 to everything). The vm tier
/// runs this same command on a booted node.
pub fn start_mirror_command() -> String {
    format!(
        "systemctl start docker-registry && for i in $(seq 30); do curl -sf http://127.0.0.1:{MIRROR_PORT}/v2/ && exit 0; sleep 1; done; exit 1"
    )
}

/// Starts the node image's registry on the control plane, fills it with `images` (OCI archive, reference)
/// from the host through an SSH forward (the host touches only its loopback), and holds the control plane's
/// cluster NIC to `rate_mbit`. Needs only the nodes.
pub async fn serve_mirror(
    cluster: &TestCluster,
    images: &[(PathBuf, String)],
    rate_mbit: u64,
) -> Result<Mirror, ScenarioError> {
    let me = ColdImageWait.name();
    let err = |e| ScenarioError::Test { scenario: me, source: Box::new(e) };
    let cp = cluster.node(&cluster.control_plane()).map_err(err)?;
    cp.succeed(&start_mirror_command()).await.map_err(err)?;
    let tunnel = cp.forward("127.0.0.1", MIRROR_PORT).await.map_err(err)?;
    let mut mirror = Mirror { registries: Vec::new(), bytes: 0 };
    for (archive, reference) in images {
        mirror.bytes += std::fs::metadata(archive).map(|m| m.len()).unwrap_or(0);
        let (registry, path) = split_registry(reference).unwrap_or(("docker.io", reference));
        if !mirror.registries.iter().any(|r| r == registry) {
            mirror.registries.push(registry.to_string());
        }
        let argv = push_argv(archive, path, tunnel.local.port());
        let failed = |status: String, output: String| ScenarioError::Command {
            scenario: me,
            node: "host".into(),
            cmd: format!("skopeo {}", argv.join(" ")),
            status,
            output,
        };
        let run = tokio::process::Command::new("skopeo").args(&argv).kill_on_drop(true).output();
        let out = tokio::time::timeout(PUSH_DEADLINE, run)
            .await
            .map_err(|_| failed(format!("still running after {PUSH_DEADLINE:?}"), String::new()))?
            .map_err(|e| failed("did not start".into(), e.to_string()))?;
        if !out.status.success() {
            return Err(failed(out.status.to_string(), String::from_utf8_lossy(&out.stderr).into_owned()));
        }
    }
    let shape = format!("tc qdisc replace dev {CLUSTER_NIC} root tbf rate {rate_mbit}mbit burst 64kb latency 500ms");
    cp.succeed(&shape).await.map_err(err)?;
    Ok(mirror)
}

/// Makes every worker's containerd pull `registries`' images from the control plane's mirror first.
pub async fn use_mirror(cluster: &TestCluster, registries: &[String]) -> Result<(), ScenarioError> {
    let err = |e| ScenarioError::Test { scenario: ColdImageWait.name(), source: Box::new(e) };
    let mirror = format!("{}:{MIRROR_PORT}", cluster.spec().control_plane().address);
    for worker in cluster.workers() {
        let node = cluster.node(&worker).map_err(err)?;
        for registry in registries {
            let dir = format!("{REGISTRY_HOSTS_DIR}/{registry}");
            let toml = kthw::ssh::shell_quote(&hosts_toml(registry, &mirror));
            node.succeed(&format!("mkdir -p {dir} && printf '%s' {toml} > {dir}/hosts.toml")).await.map_err(err)?;
        }
    }
    Ok(())
}

/// The scenario; the module's documentation says what it shows and how.
pub struct ColdImageWait;

impl Scenario for ColdImageWait {
    fn name(&self) -> &'static str {
        "cold-image-wait"
    }

    fn shows(&self) -> &'static str {
        "with cold images behind a slow mirror, `cilium status --wait` times out and is classified as still pulling; a longer wait succeeds; warm installs are fast"
    }

    fn needs(&self) -> Needs {
        Needs::at(Phase::Workers).running(Phase::Cilium).with(Override::Preload(false))
    }

    fn run<'a>(&'a self, w: &'a World, r: &'a mut Report) -> ScenarioFuture<'a> {
        Box::pin(act(w, r))
    }
}

async fn act(w: &World, r: &mut Report) -> Result<(), ScenarioError> {
    let cp = w.cp();
    let root = w.layout().root_kubeconfig.clone();
    w.cilium_cli().await?;

    let mut images = Vec::new();
    for name in CILIUM_IMAGES {
        let (a, archive) = w.bootstrap().artifact(Phase::Cilium, name).map_err(|e| ScenarioError::Phase {
            scenario: w.name(),
            phase: Phase::Cilium,
            source: Box::new(e),
        })?;
        images.push((archive, a.locator().to_string()));
    }
    let mirror = serve_mirror(&w.cluster, &images, RATE_MBIT).await?;
    use_mirror(&w.cluster, &mirror.registries).await?;
    let bytes = mirror.bytes;
    let workers = w.workers().len() as u64;
    r.fact("the mirror", format!("{} MiB of image archives behind {RATE_MBIT} Mbit/s on {cp}", bytes >> 20));

    // Cold: the seed's wait, short, times out; what it was waiting for is named.
    let cold_start = Instant::now();
    let installed =
        w.run_argv(&install_argv(w.spec(), &root), w.scaled(Duration::from_secs(120)), "install-cold.txt").await?;
    r.check("`cilium install` on cold nodes returns", installed.success(), installed.describe_status());
    let mut short = w.spec().clone();
    short.cilium.status_wait = SHORT_WAIT;
    let waited = w
        .run_argv(&status_argv(&short, &root), SHORT_WAIT + w.scaled(Duration::from_secs(60)), "status-wait-cold.txt")
        .await?;
    r.check(
        format!("`cilium status --wait --wait-duration {}s` times out while images pull", SHORT_WAIT.as_secs()),
        !waited.success(),
        waited.describe_status(),
    );
    let stalled =
        rollout::wait(&w.client(), &cilium_workloads(), Duration::from_secs(1), Phase::Cilium, w.events()).await;
    let mut findings = diagnosis::diagnose(&format!("{}{}", waited.stdout_lossy(), waited.stderr_lossy()));
    if let Err(s) = &stalled {
        findings.extend(s.findings());
    }
    r.check(
        "the timeout is classified as images still pulling, not a failure",
        still_pulling(&findings),
        diagnosis::explain(&findings),
    );
    // The verdict's evidence on the nodes themselves: every node it names as pulling has an ingest open.
    let named = pulling_nodes(&findings);
    r.check("the verdict names at least one node whose pull is in flight", !named.is_empty(), format!("{named:?}"));
    for worker in w.workers() {
        let active = w
            .exec(&worker, &format!("{} -n k8s.io content active", w.layout().ctr()), w.scaled(Duration::from_secs(30)))
            .await?;
        let pulls = active_pulls(&active.stdout_lossy());
        if named.contains(&worker) {
            r.check(
                format!("`ctr content active` shows a pull in flight on {worker}"),
                !pulls.is_empty(),
                format!("{pulls:?}"),
            );
        } else {
            r.fact(format!("pulls in flight on {worker}"), format!("{pulls:?}"));
        }
    }

    // The harness's own wait, sized for the bytes, succeeds; so does the seed's command after it.
    let deadline = w.scaled(pull_deadline(bytes, workers, RATE_MBIT));
    let rolled = rollout::wait(&w.client(), &cilium_workloads(), deadline, Phase::Cilium, w.events()).await;
    r.check(
        format!("the harness's wait ({deadline:.0?}) sees every Cilium pod ready"),
        rolled.is_ok(),
        rolled.err().map(|e| e.to_string()).unwrap_or_default(),
    );
    let cold = cold_start.elapsed();
    let ok = w
        .run_argv(
            &status_argv(w.spec(), &root),
            w.spec().cilium.status_wait + w.scaled(Duration::from_secs(60)),
            "status-wait-after.txt",
        )
        .await?;
    r.check("then `cilium status --wait` succeeds", ok.success(), ok.describe_status());

    // Warm: uninstall, install again; nothing is pulled.
    // `--wait`: "Wait for uninstallation to have completed" (cilium-cli v0.18.4 cli/install.go
    // addCommonUninstallFlags), so that the second install meets no object still being deleted.
    let uninstall = vec![
        CILIUM_CLI.to_string(),
        "uninstall".into(),
        "--wait".into(),
        "--kubeconfig".into(),
        root.display().to_string(),
    ];
    let gone = w.run_argv(&uninstall, w.scaled(Duration::from_secs(300)), "uninstall.txt").await?;
    r.check("`cilium uninstall` succeeds", gone.success(), gone.describe_status());
    let warm_start = Instant::now();
    let installed =
        w.run_argv(&install_argv(w.spec(), &root), w.scaled(Duration::from_secs(120)), "install-warm.txt").await?;
    r.check("`cilium install` on warm nodes returns", installed.success(), installed.describe_status());
    let rolled =
        rollout::wait(&w.client(), &cilium_workloads(), w.spec().cilium.status_wait, Phase::Cilium, w.events()).await;
    let warm = warm_start.elapsed();
    r.check(
        "the warm install's pods are ready",
        rolled.is_ok(),
        rolled.err().map(|e| e.to_string()).unwrap_or_default(),
    );
    // Only the warm install's own pods (the uninstall waited for the old ones to go), each image of each.
    let listed = Api::<Pod>::namespaced(w.client(), "kube-system")
        .list(&ListParams::default())
        .await
        .map_err(|e| ScenarioError::Kube { scenario: w.name(), what: "list pods".into(), source: Box::new(e) })?;
    let pods: Vec<(String, Vec<String>)> = listed
        .items
        .iter()
        .filter_map(|p| {
            let name = p.metadata.name.clone().filter(|n| n.starts_with("cilium"))?;
            let spec = p.spec.as_ref()?;
            let images =
                spec.init_containers.iter().flatten().chain(&spec.containers).filter_map(|c| c.image.clone()).collect();
            Some((name, images))
        })
        .collect();
    let names: Vec<String> = pods.iter().map(|(n, _)| n.clone()).collect();
    let events: Api<Event> = Api::namespaced(w.client(), "kube-system");
    let listed = events.list(&ListParams::default()).await.map_err(|e| ScenarioError::Kube {
        scenario: w.name(),
        what: "list events".into(),
        source: Box::new(e),
    })?;
    let (pulled, _) = pulls(&listed.items, &names);
    let missing = not_shown_present(&listed.items, &pods);
    r.check(
        "the warm install pulls nothing: every image of every Cilium pod is already present",
        !pods.is_empty() && pulled.is_empty() && missing.is_empty(),
        format!("{} pods; pulling: {pulled:?}; not shown present: {missing:?}", pods.len()),
    );
    r.fact(
        "cold over warm",
        format!(
            "{:.1} s / {:.1} s = {:.1}",
            cold.as_secs_f64(),
            warm.as_secs_f64(),
            cold.as_secs_f64() / warm.as_secs_f64().max(0.001)
        ),
    );
    w.succeed(&cp, &format!("tc qdisc del dev {CLUSTER_NIC} root")).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;

    #[test]
    fn the_mirror_is_a_plain_http_host_that_may_pull_and_resolve() {
        let v: toml::Value = toml::from_str(&hosts_toml("quay.io", "10.0.0.4:5000")).unwrap();
        assert_eq!(v["server"].as_str(), Some("https://quay.io"));
        let caps = v["host"]["http://10.0.0.4:5000"]["capabilities"].as_array().unwrap();
        assert_eq!(caps.iter().map(|c| c.as_str().unwrap()).collect::<Vec<_>>(), ["pull", "resolve"]);
    }

    #[test]
    fn images_go_to_the_mirror_under_their_repository_path_with_every_digest() {
        assert_eq!(split_registry("quay.io/cilium/cilium:v1.17.4"), Some(("quay.io", "cilium/cilium:v1.17.4")));
        assert_eq!(split_registry("cilium/cilium:v1.17.4"), None, "no registry host");
        let argv = push_argv(std::path::Path::new("/c/cilium.oci.tar"), "cilium/cilium:v1.17.4", 40123);
        assert_eq!(
            argv,
            [
                "copy",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
                "oci-archive:/c/cilium.oci.tar",
                "docker://127.0.0.1:40123/cilium/cilium:v1.17.4"
            ]
        );
    }

    #[test]
    fn pulls_in_flight_are_read_from_ctr_content_active() {
        // Written by hand to exercise the reader, in the columns ctr prints (REF, SIZE as units.HumanSize, AGE
        // as units.HumanDuration: containerd/containerd@v1.7.27:cmd/ctr/commands/content/content.go).
        let text = "REF                                                                             SIZE    AGE\n\
layer-sha256:1b1b2fb5e3b44e0de6b2e7f5b3bfb8d1e6a2a8f0e0c5cbd3fae7d2b28c1e2f3a   37.2MB  14 seconds\n";
        assert_eq!(
            active_pulls(text),
            [(
                "layer-sha256:1b1b2fb5e3b44e0de6b2e7f5b3bfb8d1e6a2a8f0e0c5cbd3fae7d2b28c1e2f3a".to_string(),
                "37.2MB".to_string()
            )]
        );
        assert!(active_pulls("REF SIZE AGE\n").is_empty());
    }

    #[test]
    fn the_deadline_grows_with_the_bytes_and_the_workers_sharing_the_link() {
        // 300 MB to each of two workers through 40 Mbit/s: 120 s of transfer, 180 s with room, plus 120 s.
        assert_eq!(pull_deadline(300_000_000, 2, 40), Duration::from_secs(300));
        assert!(pull_deadline(600_000_000, 2, 40) > pull_deadline(300_000_000, 2, 40));
    }

    #[test]
    fn still_pulling_means_every_image_in_flight_and_none_failed() {
        use kthw::diagnosis::Finding;
        let pulling = Finding::ImageNotPulled {
            image: Some("quay.io/cilium/cilium:v1.17.4".into()),
            node: Some("worker-node-1".into()),
            since: Some("20 s".into()),
            state: kthw::diagnosis::PULLING.into(),
        };
        let failed = Finding::ImagePullFailed {
            image: Some("quay.io/cilium/operator-generic:v1.17.4".into()),
            node: Some("worker-node-2".into()),
            reason: "ImagePullBackOff".into(),
            message: String::new(),
        };
        let creating = Finding::ContainerCreating { pod: Some("cilium-envoy-abcde".into()) };
        assert!(still_pulling(&[pulling.clone(), creating.clone()]));
        assert!(!still_pulling(&[pulling.clone(), failed.clone()]), "one failed pull fails the check");
        assert!(!still_pulling(&[failed]));
        assert!(!still_pulling(&[creating]), "ContainerCreating alone is no evidence of a pull");
        let no_id = Finding::ImageNotPulled { image: None, node: None, since: None, state: "no image ID".into() };
        assert!(!still_pulling(&[pulling.clone(), no_id]), "an image with no ID is not a pull seen in flight");
        let nameless = Finding::ImageNotPulled {
            image: None,
            node: None,
            since: Some("20 s".into()),
            state: kthw::diagnosis::PULLING.into(),
        };
        assert!(
            !still_pulling(std::slice::from_ref(&nameless)),
            "a pull that names no image and no node is no verdict"
        );
        let no_node = Finding::ImageNotPulled {
            image: Some("quay.io/cilium/cilium-envoy:v1.32.6".into()),
            node: None,
            since: None,
            state: kthw::diagnosis::PULLING.into(),
        };
        assert!(!still_pulling(&[pulling.clone(), no_node]), "every pull names where it runs");
        assert_eq!(pulling_nodes(&[pulling.clone(), pulling, nameless]), ["worker-node-1"]);
    }

    #[test]
    fn a_warm_start_needs_every_image_of_every_pod_shown_present() {
        let image = "quay.io/cilium/cilium:v1.17.4@sha256:24a7";
        let present = format!("Container image \"{image}\" already present on machine");
        let pods = vec![
            ("cilium-abcde".to_string(), vec![image.to_string()]),
            ("cilium-fghij".to_string(), vec![image.to_string()]),
        ];
        let one = [event("cilium-abcde", "Pulled", &present)];
        assert_eq!(not_shown_present(&one, &pods), [format!("cilium-fghij: {image}")], "one event is not every pod");
        let both = [event("cilium-abcde", "Pulled", &present), event("cilium-fghij", "Pulled", &present)];
        assert!(not_shown_present(&both, &pods).is_empty());
        let other = [event(
            "cilium-abcde",
            "Pulled",
            "Container image \"quay.io/cilium/operator:v1\" already present on machine",
        )];
        assert_eq!(not_shown_present(&other, &pods[..1]).len(), 1, "another image's event says nothing of this one");
    }

    fn event(pod: &str, reason: &str, message: &str) -> Event {
        Event {
            involved_object: ObjectReference { name: Some(pod.into()), ..ObjectReference::default() },
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..Event::default()
        }
    }

    #[test]
    fn a_warm_start_is_told_from_a_pull_by_the_kubelets_events() {
        // The kubelet's messages (pkg/kubelet/images/image_manager.go): `Pulling image %q` and
        // `Container image %q already present on machine`.
        let events = [
            event(
                "cilium-abcde",
                "Pulled",
                "Container image \"quay.io/cilium/cilium:v1.17.4@sha256:24a7\" already present on machine",
            ),
            event("cilium-old", "Pulling", "Pulling image \"quay.io/cilium/cilium:v1.17.4@sha256:24a7\""),
        ];
        let (pulled, present) = pulls(&events, &["cilium-abcde".to_string()]);
        assert!(pulled.is_empty(), "the old pod's pull is not this install's");
        assert_eq!(present.len(), 1);
        let (pulled, _) = pulls(&events, &["cilium-old".to_string()]);
        assert_eq!(pulled.len(), 1);
    }
}
