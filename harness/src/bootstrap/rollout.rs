//! Waiting for workloads to roll out, through the Kubernetes API, saying what each pod is doing in words a
//! person can act on: on which node it is pulling which image and for how long, still creating its
//! container, crash-looping with its last log lines, or running but not ready.
//!
//! What a pod is doing is read from its status and its events, as the kubelet reports them: container state
//! `waiting` with reason `ContainerCreating`, `ErrImagePull`, `ImagePullBackOff` or `CrashLoopBackOff`
//! (kubernetes/kubernetes pkg/kubelet/images/types.go and pkg/kubelet/container/sync_result.go name these
//! reasons), and the kubelet's `Pulling` / `Pulled` events (pkg/kubelet/events/event.go: PullingImage =
//! "Pulling", PulledImage = "Pulled"), whose message is `Pulling image "<reference>"`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Event as K8sEvent, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, LogParams};

use crate::diagnosis::Finding;
use crate::events::{Event, Events};
use crate::phase::Phase;

/// A workload to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    DaemonSet { namespace: String, name: String },
    Deployment { namespace: String, name: String },
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::DaemonSet { namespace, name } => write!(f, "daemonset {namespace}/{name}"),
            Workload::Deployment { namespace, name } => write!(f, "deployment {namespace}/{name}"),
        }
    }
}

/// What one pod is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    Ready,
    /// Running, but its readiness probe does not pass yet.
    NotReady,
    /// Not scheduled, or scheduled and not started (`reason` from the pod's conditions when there is one).
    Pending {
        reason: String,
    },
    /// The kubelet is pulling `image`, since `for_` ago.
    Pulling {
        image: String,
        for_: Duration,
    },
    /// A pull failed (`ErrImagePull`, `ImagePullBackOff`) with this message.
    PullFailed {
        image: Option<String>,
        reason: String,
        message: String,
    },
    /// Creating its container (image present or pulled).
    Creating,
    CrashLoop {
        container: String,
        restarts: i32,
        last_lines: String,
    },
}

/// One pod of a workload and what it is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProgress {
    pub pod: String,
    pub node: Option<String>,
    pub state: PodState,
}

impl fmt::Display for PodProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pod)?;
        if let Some(n) = &self.node {
            write!(f, " on {n}")?;
        }
        match &self.state {
            PodState::Ready => write!(f, ": ready"),
            PodState::NotReady => write!(f, ": running, not ready yet"),
            PodState::Pending { reason } => write!(f, ": pending ({reason})"),
            PodState::Pulling { image, for_ } => write!(f, ": pulling {image} for {} s", for_.as_secs()),
            PodState::PullFailed { reason, message, .. } => write!(f, ": {reason}: {message}"),
            PodState::Creating => write!(f, ": ContainerCreating"),
            PodState::CrashLoop { container, restarts, last_lines } => {
                write!(f, ": CrashLoopBackOff ({container}, {restarts} restarts); last lines:\n{last_lines}")
            }
        }
    }
}

/// What a pod is doing, from its status and its events (any order), at `now`.
pub fn pod_progress(pod: &Pod, events: &[K8sEvent], now: Timestamp) -> PodProgress {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let status = pod.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    let statuses: Vec<_> =
        status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten()).collect();
    let mut state = if ready { PodState::Ready } else { PodState::NotReady };
    if !ready {
        if statuses.is_empty() {
            let reason = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.status == "False" && c.reason.is_some())
                .and_then(|c| c.reason.clone())
                .unwrap_or_else(|| status.phase.clone().unwrap_or_else(|| "not scheduled".into()));
            state = PodState::Pending { reason };
        }
        for cs in &statuses {
            let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else { continue };
            let reason = waiting.reason.clone().unwrap_or_default();
            let message = waiting.message.clone().unwrap_or_default();
            state = match reason.as_str() {
                "CrashLoopBackOff" => PodState::CrashLoop {
                    container: cs.name.clone(),
                    restarts: cs.restart_count,
                    last_lines: String::new(),
                },
                "ErrImagePull" | "ImagePullBackOff" => PodState::PullFailed {
                    image: Some(cs.image.clone()).filter(|i| !i.is_empty()).or_else(|| quoted(&message)),
                    reason,
                    message,
                },
                _ => match pulling(events, &name, now) {
                    Some((image, for_)) => PodState::Pulling { image, for_ },
                    None => PodState::Creating,
                },
            };
            break;
        }
    }
    PodProgress { pod: name, node, state }
}

/// The image the kubelet began pulling for `pod` and has not reported pulled, and for how long.
fn pulling(events: &[K8sEvent], pod: &str, now: Timestamp) -> Option<(String, Duration)> {
    let mut pulls: BTreeMap<String, Option<Timestamp>> = BTreeMap::new();
    let mut sorted: Vec<&K8sEvent> = events.iter().filter(|e| e.involved_object.name.as_deref() == Some(pod)).collect();
    sorted.sort_by_key(|e| when(e));
    for e in sorted {
        let image = e.message.as_deref().and_then(quoted);
        match (e.reason.as_deref(), image) {
            (Some("Pulling"), Some(image)) => {
                pulls.insert(image, when(e));
            }
            (Some("Pulled"), Some(image)) => {
                pulls.remove(&image);
            }
            // "Successfully pulled image \"…\"" names the image too; a Pulled event without a quoted name
            // (older kubelets) ends every pull.
            (Some("Pulled"), None) => pulls.clear(),
            _ => {}
        }
    }
    let (image, since) = pulls.into_iter().next()?;
    let for_ =
        since.map_or(Duration::ZERO, |s| Duration::from_secs(now.as_second().saturating_sub(s.as_second()) as u64));
    Some((image, for_))
}

fn when(e: &K8sEvent) -> Option<Timestamp> {
    e.event_time.as_ref().map(|t| t.0).or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
}

/// The first double-quoted part of an event message.
fn quoted(message: &str) -> Option<String> {
    let rest = message.split_once('"')?.1;
    Some(rest.split_once('"')?.0.to_string())
}

impl PodProgress {
    /// What the shared classifier makes of this pod, if anything is wrong with it.
    pub fn finding(&self) -> Option<Finding> {
        match &self.state {
            PodState::Pulling { image, for_ } => Some(Finding::ImageNotPulled {
                image: Some(image.clone()),
                node: self.node.clone(),
                since: Some(format!("{} s", for_.as_secs())),
                state: crate::diagnosis::PULLING.into(),
            }),
            PodState::PullFailed { image, reason, message } => Some(Finding::ImagePullFailed {
                image: image.clone(),
                node: self.node.clone(),
                reason: reason.clone(),
                message: message.clone(),
            }),
            // Creating is a pull or a sandbox the CNI has not set up; the pod's events tell which, not this.
            PodState::Creating => Some(Finding::ContainerCreating { pod: Some(self.pod.clone()) }),
            PodState::CrashLoop { restarts, last_lines, .. } => Some(Finding::CrashLoop {
                pod: self.pod.clone(),
                state: "CrashLoopBackOff".into(),
                restarts: restarts.to_string(),
                last_lines: last_lines.lines().map(|l| l.trim().to_string()).collect(),
            }),
            _ => None,
        }
    }
}

/// Why a rollout did not finish in time: every pod that was not ready, as last seen.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{workload} did not roll out within {waited:?}: {}\n{}", crate::diagnosis::wait_timeout_cause(&self.findings()), render(pods))]
pub struct RolloutStalled {
    pub workload: String,
    pub waited: Duration,
    pub pods: Vec<PodProgress>,
}

impl RolloutStalled {
    pub fn findings(&self) -> Vec<Finding> {
        self.pods.iter().filter_map(PodProgress::finding).collect()
    }
}

fn render(pods: &[PodProgress]) -> String {
    if pods.is_empty() {
        return "  (no pods: the workload was not created, or its controller made none)".into();
    }
    pods.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
}

/// How often the rollout is looked at, and how often a person is told about it.
const POLL: Duration = Duration::from_secs(2);
const TELL_EVERY: Duration = Duration::from_secs(10);

/// Waits until every workload has every pod ready, at most `deadline`, announcing what the pods do.
pub async fn wait(
    client: &kube::Client,
    workloads: &[Workload],
    deadline: Duration,
    phase: Phase,
    events: &Events,
) -> Result<(), RolloutStalled> {
    let start = Instant::now();
    let mut told = Instant::now() - TELL_EVERY;
    loop {
        let mut stalled = None;
        for w in workloads {
            let (done, pods) = look(client, w).await;
            if !done {
                stalled = Some((w.clone(), pods));
                break;
            }
        }
        let Some((w, pods)) = stalled else {
            waited(events, phase, workloads, start.elapsed(), true);
            return Ok(());
        };
        if told.elapsed() >= TELL_EVERY {
            told = Instant::now();
            let busy: Vec<String> = pods.iter().filter(|p| p.state != PodState::Ready).map(|p| p.to_string()).collect();
            events.emit(Event::Waiting {
                phase,
                node: "the API".into(),
                what: format!("{w} to roll out"),
                waited: start.elapsed(),
                last: busy.join("; "),
            });
        }
        if start.elapsed() >= deadline {
            let mut pods = pods;
            for p in &mut pods {
                if let PodState::CrashLoop { container, last_lines, .. } = &mut p.state {
                    *last_lines = last_log_lines(client, namespace(&w), &p.pod, container).await;
                }
            }
            pods.retain(|p| p.state != PodState::Ready);
            waited(events, phase, workloads, start.elapsed(), false);
            return Err(RolloutStalled { workload: w.to_string(), waited: start.elapsed(), pods });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Tells the rollout wait's end, naming every workload it waited for, when it took long enough to be seen in
/// the run's picture.
fn waited(events: &Events, phase: Phase, workloads: &[Workload], took: Duration, ok: bool) {
    if took >= crate::events::WAIT_WORTH_DRAWING {
        let names: Vec<String> = workloads.iter().map(|w| w.to_string()).collect();
        let what = format!("{} to roll out", names.join(", "));
        events.emit(Event::Waited { phase, node: "the API".into(), what, took, ok });
    }
}

fn namespace(w: &Workload) -> &str {
    match w {
        Workload::DaemonSet { namespace, .. } | Workload::Deployment { namespace, .. } => namespace,
    }
}

/// Whether `w` is rolled out, and what its pods do. An API error reads as "not yet" with no pods: the wait's
/// deadline, not one failed request, decides.
async fn look(client: &kube::Client, w: &Workload) -> (bool, Vec<PodProgress>) {
    let ns = namespace(w);
    let (done, selector) = match w {
        Workload::DaemonSet { name, .. } => {
            match Api::<DaemonSet>::namespaced(client.clone(), ns).get_opt(name).await {
                Ok(Some(ds)) => {
                    let s = ds.status.clone().unwrap_or_default();
                    let done = s.desired_number_scheduled > 0
                        && s.number_ready == s.desired_number_scheduled
                        && s.updated_number_scheduled.unwrap_or(0) == s.desired_number_scheduled;
                    (done, ds.spec.and_then(|sp| sp.selector.match_labels))
                }
                _ => (false, None),
            }
        }
        Workload::Deployment { name, .. } => {
            match Api::<Deployment>::namespaced(client.clone(), ns).get_opt(name).await {
                Ok(Some(d)) => {
                    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    let s = d.status.clone().unwrap_or_default();
                    let done = s.ready_replicas.unwrap_or(0) >= want && s.updated_replicas.unwrap_or(0) >= want;
                    (done, d.spec.and_then(|sp| sp.selector.match_labels))
                }
                _ => (false, None),
            }
        }
    };
    let Some(labels) = selector else { return (done, Vec::new()) };
    let selector = labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let pods = Api::<Pod>::namespaced(client.clone(), ns).list(&ListParams::default().labels(&selector)).await;
    let events = Api::<K8sEvent>::namespaced(client.clone(), ns).list(&ListParams::default()).await;
    let (Ok(pods), Ok(events)) = (pods, events) else { return (done, Vec::new()) };
    let now = Timestamp::now();
    (done, pods.items.iter().map(|p| pod_progress(p, &events.items, now)).collect())
}

/// The last lines a crash-looping container printed before it died (its previous instance).
async fn last_log_lines(client: &kube::Client, ns: &str, pod: &str, container: &str) -> String {
    let params =
        LogParams { container: Some(container.into()), previous: true, tail_lines: Some(20), ..Default::default() };
    match Api::<Pod>::namespaced(client.clone(), ns).logs(pod, &params).await {
        Ok(text) => text.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n"),
        Err(e) => format!("      (its log could not be read: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod and events as the apiserver returns them (JSON of `kubectl get pod -o json` and
    /// `kubectl get events -o json`), trimmed to the fields read here. The shapes follow the Kubernetes API
    /// reference for core/v1 Pod and Event; the reasons are the kubelet's.
    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn event(reason: &str, message: &str, at: &str) -> K8sEvent {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "e", "namespace": "kube-system" },
            "involvedObject": { "kind": "Pod", "name": "cilium-x7k2p", "namespace": "kube-system" },
            "reason": reason, "message": message, "type": "Normal",
            "firstTimestamp": at, "lastTimestamp": at,
        }))
        .unwrap()
    }

    fn waiting(reason: &str, message: &str) -> Pod {
        pod(serde_json::json!({
            "metadata": { "name": "cilium-x7k2p", "namespace": "kube-system" },
            "spec": { "nodeName": "worker-node-1", "containers": [{ "name": "cilium-agent" }] },
            "status": {
                "phase": "Pending",
                "conditions": [{ "type": "Ready", "status": "False" }],
                "containerStatuses": [{
                    "name": "cilium-agent", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                    "state": { "waiting": { "reason": reason, "message": message } },
                }],
            },
        }))
    }

    const IMAGE: &str =
        "quay.io/cilium/cilium:v1.17.4@sha256:24a73fe795351cf3279ac8e84918633000b52a9654ff73a6b0d7223bcff4a67a";

    #[test]
    fn a_pod_whose_image_is_still_pulling_says_which_image_on_which_node_for_how_long() {
        let now: Timestamp = "2026-11-29T10:00:41Z".parse().unwrap();
        let events = [
            event("Scheduled", "Successfully assigned", "2026-11-29T09:59:59Z"),
            event("Pulling", &format!("Pulling image \"{IMAGE}\""), "2026-11-29T10:00:00Z"),
        ];
        let p = pod_progress(&waiting("ContainerCreating", ""), &events, now);
        assert_eq!(p.state, PodState::Pulling { image: IMAGE.into(), for_: Duration::from_secs(41) });
        assert_eq!(p.to_string(), format!("cilium-x7k2p on worker-node-1: pulling {IMAGE} for 41 s"));
    }

    #[test]
    fn once_pulled_the_pod_is_creating() {
        let now: Timestamp = "2026-11-29T10:01:00Z".parse().unwrap();
        let events = [
            event("Pulled", &format!("Successfully pulled image \"{IMAGE}\" in 52.1s"), "2026-11-29T10:00:52Z"),
            event("Pulling", &format!("Pulling image \"{IMAGE}\""), "2026-11-29T10:00:00Z"),
        ];
        assert_eq!(pod_progress(&waiting("ContainerCreating", ""), &events, now).state, PodState::Creating);
    }

    #[test]
    fn pull_failures_and_crash_loops_are_named() {
        let now = Timestamp::now();
        // The kubelet's waiting message for a pull in back-off (pkg/kubelet/images/image_manager.go).
        let p = pod_progress(&waiting("ImagePullBackOff", "Back-off pulling image \"x\""), &[], now);
        assert_eq!(
            p.state,
            PodState::PullFailed {
                image: Some("x".into()),
                reason: "ImagePullBackOff".into(),
                message: "Back-off pulling image \"x\"".into()
            }
        );
        let f = p.finding().unwrap();
        assert!(matches!(f, Finding::ImagePullFailed { ref image, .. } if image.as_deref() == Some("x")), "{f:?}");
        assert!(!f.pull_in_flight());
        assert!(matches!(
            crate::diagnosis::wait_timeout_cause(&[f]),
            crate::diagnosis::WaitTimeoutCause::ImagePullFailed(i) if i == ["x"]
        ));
        let p = pod_progress(&waiting("CrashLoopBackOff", "back-off 40s restarting failed container"), &[], now);
        assert!(matches!(p.state, PodState::CrashLoop { ref container, .. } if container == "cilium-agent"), "{p:?}");
    }

    #[test]
    fn a_ready_pod_is_ready_and_an_unscheduled_one_says_why() {
        let ready = pod(serde_json::json!({
            "metadata": { "name": "cilium-operator-1" },
            "status": { "conditions": [{ "type": "Ready", "status": "True" }], "containerStatuses": [] },
        }));
        assert_eq!(pod_progress(&ready, &[], Timestamp::now()).state, PodState::Ready);
        let pending = pod(serde_json::json!({
            "metadata": { "name": "coredns-1" },
            "status": { "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable" }] },
        }));
        assert_eq!(
            pod_progress(&pending, &[], Timestamp::now()).state,
            PodState::Pending { reason: "Unschedulable".into() }
        );
    }

    #[test]
    fn a_stalled_rollout_lists_each_pod_that_is_not_ready() {
        let e = RolloutStalled {
            workload: "daemonset kube-system/cilium".into(),
            waited: Duration::from_secs(180),
            pods: vec![PodProgress {
                pod: "cilium-x7k2p".into(),
                node: Some("worker-node-2".into()),
                state: PodState::Pulling { image: IMAGE.into(), for_: Duration::from_secs(170) },
            }],
        };
        let text = e.to_string();
        assert!(text.starts_with("daemonset kube-system/cilium did not roll out within 180s: images still pulling (quay.io/cilium/cilium:v1.17.4@sha256:"), "{text}");
        assert!(text.contains("\n  - cilium-x7k2p on worker-node-2: pulling"), "{text}");
    }
}
