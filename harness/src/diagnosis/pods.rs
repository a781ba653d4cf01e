//! Recognisers for pods: `cilium status`'s per-agent errors, crash loops, and images (pulls in flight, failed,
//! done). Each reads one normalised line ([`super::text::normalise`]).

use super::text::{event_age, event_node, pod_row, yaml_value};
use super::{Finding, PULLING};

/// cilium-cli's wrapper around an agent's failure (status/status.go parseStatusResponse).
pub(super) const STATUS_MARK: &str = "unable to retrieve cilium status: ";

/// The error `cilium status --wait` ends with when it stops waiting because an agent crashed (cilium-cli
/// v0.18.4 and v0.19.7 status/k8s.go Status: the wait's context is canceled once an agent container is in
/// CrashLoopBackOff).
pub const STATUS_WAIT_AGENT_CRASHED: &str = "wait canceled, cilium agent container has crashed or was terminated";

/// The kubelet's message for a pull in back-off, lowercased (pkg/kubelet/images/image_manager.go:
/// `msg := fmt.Sprintf("Back-off pulling image %q", imgRef)`; from 1.31 followed by `: <the last pull's error>`).
const BACK_OFF_PULLING: &str = "back-off pulling image \"";

/// The kubelet's event for a pull that failed (pkg/kubelet/images/image_manager.go, 1.1x to 1.35:
/// `Failed to pull image %q: %v`), lowercased.
const FAILED_TO_PULL: &str = "failed to pull image \"";

/// The kubelet's `Pulled` message for an image it found on the node, in both wordings (kubernetes/kubernetes
/// pkg/kubelet/images/image_manager.go EnsureImageExists): `Container image %q already present on machine`
/// (1.32, and 1.35 with KubeletEnsureSecretPulledImages off), and `... already present on machine and can be
/// accessed by the pod` (1.35, where pkg/features/kube_features.go makes that gate beta, default true; alpha,
/// default false, from 1.33).
pub const PRESENT_TAILS: [&str; 2] =
    [" already present on machine", " already present on machine and can be accessed by the pod"];

/// The image a kubelet `Pulled` message says was already on the node, when `message` is exactly that message
/// in either wording ([`PRESENT_TAILS`]).
pub fn image_present(message: &str) -> Option<&str> {
    let (image, tail) = message.strip_prefix("Container image \"")?.split_once('"')?;
    PRESENT_TAILS.contains(&tail).then_some(image)
}

/// A row of `cilium status`'s Errors table: `<workload> <pod> unable to retrieve cilium status: <detail>`
/// (cilium-cli v0.18.4 and v0.19.7 status/status.go parseStatusResponse wraps each agent it could not ask
/// this way). An agent whose container does not run says why (status/k8s.go, both tags):
/// `container cilium-agent is in CrashLoopBackOff, exited with code N: <termination message>`; that is a
/// crash loop, not an unreachable agent.
pub(super) fn agent_status(line: &str) -> Option<Finding> {
    let at = line.find(STATUS_MARK)?;
    let pod = line[..at].split_whitespace().last()?.to_string();
    let detail = line[at + STATUS_MARK.len()..].trim().to_string();
    if let Some(rest) = detail.strip_prefix("container ").and_then(|r| r.split_once(" is in CrashLoopBackOff")) {
        let (_container, after) = rest;
        // `, exited with code N: last` or `: last`.
        let (exit, last) = match after.strip_prefix(", ") {
            Some(a) => a.split_once(": ").map_or((a, ""), |(e, l)| (e, l)),
            None => ("", after.trim_start_matches(':').trim()),
        };
        let state = if exit.is_empty() { "CrashLoopBackOff".to_string() } else { format!("CrashLoopBackOff, {exit}") };
        let last_lines =
            if last.is_empty() || last.starts_with("try 'kubectl") { Vec::new() } else { vec![last.into()] };
        return Some(Finding::CrashLoop { pod, state, restarts: String::new(), last_lines });
    }
    Some(Finding::AgentStatusUnavailable { pod, detail })
}

pub(super) fn agent_crashed(line: &str) -> Option<Finding> {
    line.contains(STATUS_WAIT_AGENT_CRASHED).then(|| Finding::CrashLoop {
        pod: "a cilium agent".into(),
        state: "`cilium status --wait` stopped waiting: crashed or terminated".into(),
        restarts: String::new(),
        last_lines: Vec::new(),
    })
}

/// A container that keeps exiting: a `kubectl get pods` row in CrashLoopBackOff (`Init:CrashLoopBackOff` for
/// an init container); the kubelet's BackOff event (kubernetes/kubernetes@v1.32.4:
/// pkg/kubelet/kuberuntime/kuberuntime_manager.go doBackOff: `Back-off restarting failed container %s in pod
/// %s`, the pod as `name_namespace(uid)`); or its pod worker's log (pkg/kubelet/pod_workers.go: `"Error
/// syncing pod, skipping" err="... with CrashLoopBackOff: ..." pod="namespace/name"`).
pub(super) fn crash_loop(line: &str) -> Option<Finding> {
    if line.contains(STATUS_MARK) {
        return None; // `cilium status`'s own words, read by agent_status
    }
    let looping = |pod: &str, state: &str, restarts: &str| Finding::CrashLoop {
        pod: pod.into(),
        state: state.into(),
        restarts: restarts.into(),
        last_lines: Vec::new(),
    };
    if let Some((pod, status, restarts)) = pod_row(line) {
        return status.ends_with("CrashLoopBackOff").then(|| looping(&pod, &status, &restarts));
    }
    if let Some((_, rest)) = line.split_once("Back-off restarting failed container ") {
        let pod = rest.split_once(" in pod ")?.1.split(['_', '(', ' ']).next()?;
        return Some(looping(pod, "CrashLoopBackOff", ""));
    }
    if line.contains("with CrashLoopBackOff") {
        let pod = line.split_once(" pod=\"")?.1.split('"').next()?;
        return Some(looping(pod.rsplit('/').next()?, "CrashLoopBackOff", ""));
    }
    None
}

/// The image a line says has arrived: a `Pulled` event's `Successfully pulled image "X"` or the kubelet's
/// message for an image already present ([`image_present`]), wherever the event's columns put it.
pub(super) fn pulled(line: &str) -> Option<String> {
    let lower = line.to_ascii_lowercase();
    if let Some(at) = lower.find("successfully pulled image \"") {
        return line[at + "successfully pulled image \"".len()..].split('"').next().map(str::to_string);
    }
    let at = line.find("Container image \"")?;
    let message = line[at..].trim_end().trim_end_matches('"');
    image_present(message).map(str::to_string)
}

/// Kubelet `Pulling` events (`Normal  Pulling  5m36s  kubelet, k8s2  pulling image "X"`: age, and the node
/// where the event source names it), failed pulls and back-offs, pod states while an image is missing, and
/// container statuses whose `imageID` is still empty. `rest` are the lines after this one (a YAML status
/// says why it waits a few lines further down).
pub(super) fn image_not_pulled(
    line: &str,
    rest: &[String],
    node: Option<&str>,
    image: Option<&str>,
) -> Option<Finding> {
    let lower = line.to_ascii_lowercase();
    let words: Vec<&str> = line.split_whitespace().collect();
    let node = event_node(&words).or_else(|| node.map(str::to_string));
    let quoted_after = |marker: &str| {
        let at = lower.find(marker)? + marker.len();
        line[at..].split('"').next().map(str::to_string)
    };
    // The back-off, which a search for a pull must not take.
    if let Some(failed) = quoted_after(BACK_OFF_PULLING) {
        return Some(Finding::ImagePullFailed {
            image: Some(failed),
            node,
            reason: "ImagePullBackOff".into(),
            message: line.trim().to_string(),
        });
    }
    if let Some(failed) = quoted_after(FAILED_TO_PULL) {
        let message = line[lower.find(FAILED_TO_PULL)?..].trim().to_string();
        return Some(Finding::ImagePullFailed { image: Some(failed), node, reason: "ErrImagePull".into(), message });
    }
    if let Some(pulling) = quoted_after("pulling image \"") {
        let since = event_age(&words, PULLING);
        return Some(Finding::ImageNotPulled { image: Some(pulling), node, since, state: PULLING.into() });
    }
    if yaml_value(line, "imageID").is_some_and(|v| v.is_empty()) {
        return Some(no_image_id(rest, node, image));
    }
    let failing = ["ErrImagePull", "ImagePullBackOff"];
    if let Some((pod, status, _)) = pod_row(line) {
        let status = status.trim_start_matches("Init:");
        return if failing.contains(&status) {
            Some(Finding::ImagePullFailed {
                image: image.map(str::to_string).filter(|i| !i.is_empty()),
                node,
                reason: status.into(),
                message: format!("pod {pod}"),
            })
        } else {
            (status == "ContainerCreating").then_some(Finding::ContainerCreating { pod: Some(pod) })
        };
    }
    // A waiting reason anywhere else (`Error: ErrImagePull`, `Reason: ContainerCreating`): no pod to name.
    let reason = words.iter().map(|w| w.trim_start_matches("Init:").trim_end_matches([',', ';', ':', '"']));
    let reason: Vec<&str> = reason.collect();
    if let Some(r) = failing.iter().find(|f| reason.contains(f)) {
        return Some(Finding::ImagePullFailed {
            image: image.map(str::to_string).filter(|i| !i.is_empty()),
            node,
            reason: r.to_string(),
            message: String::new(),
        });
    }
    reason.contains(&"ContainerCreating").then_some(Finding::ContainerCreating { pod: None })
}

/// A container status with an empty `imageID`: the image is not there yet. Its waiting reason, when the
/// status says (`reason:` on the next line, or a failed pull anywhere before the next container), tells a
/// failure from a wait.
fn no_image_id(rest: &[String], node: Option<String>, image: Option<&str>) -> Finding {
    let image = image.map(str::to_string);
    let block = rest.iter().take_while(|l| !l.trim_start().starts_with("- "));
    let failed = block.filter_map(|l| yaml_value(l, "reason")).find(|r| r == "ErrImagePull" || r == "ImagePullBackOff");
    if let Some(reason) = failed {
        return Finding::ImagePullFailed { image, node, reason, message: String::new() };
    }
    let state = rest.first().and_then(|l| yaml_value(l, "reason")).unwrap_or_else(|| "no image ID".into());
    Finding::ImageNotPulled { image, node, since: None, state }
}
