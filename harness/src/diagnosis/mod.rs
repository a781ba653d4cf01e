//! Findings in the text a cluster prints, keyed to the seed's failure modes: what `cilium status`, kubectl,
//! pod events and pod statuses say when a wait fails, turned into the cause a person can act on.
//!
//! Every recogniser is tested against real output transcribed from public sources (each fixture names its
//! own); the seed's own words are in shared/seed/cilium-bootstrap.md.

use std::fmt;

/// One recognised symptom, with the values a person needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// `dial tcp: lookup worker-node-2 on 127.0.0.53:53: server misbehaving`: a node name the asking host could
    /// not resolve. In the seed this is the apiserver reaching a kubelet by hostname through systemd-resolved.
    NodeNameUnresolvable { name: String, resolver: String, reason: String },
    /// `cilium status` could not get one agent's own status (it execs into the pod, through the apiserver and
    /// the node's kubelet): `unable to retrieve cilium status: <detail>`.
    AgentStatusUnavailable { pod: String, detail: String },
    /// `User "system:kube-controller-manager" cannot get resource "clusterroles" in API group
    /// "rbac.authorization.k8s.io" at the cluster scope`: an identity without the rights the action needs.
    Forbidden { user: String, verb: String, resource: String, api_group: String },
    /// An image not on the node yet: being pulled (`Pulling` event without its `Pulled`, state `Pulling`), or a
    /// container waiting with no image ID. Only the first is a pull in flight ([`Finding::pull_in_flight`]):
    /// the seed's cold-image `status --wait` timeout.
    ImageNotPulled { image: Option<String>, node: Option<String>, since: Option<String>, state: String },
    /// A pull that failed: the kubelet's `ErrImagePull`, then `ImagePullBackOff` while it waits to retry
    /// (kubernetes/kubernetes v1.32.4 pkg/kubelet/images/types.go). Not slow, failing: a mirror without the
    /// digest, or a registry the node cannot reach.
    ImagePullFailed { image: Option<String>, node: Option<String>, reason: String, message: String },
    /// A pod whose containers are still being created (`ContainerCreating`, the kubelet's waiting reason while
    /// the sandbox is set up and images are pulled). A pull shows it, and so does a CNI that cannot give the pod
    /// a network: it is evidence of neither on its own.
    ContainerCreating { pod: Option<String> },
    /// A container that keeps exiting; `last_lines` are its previous run's last log lines, once attached
    /// ([`attach_last_lines`]), or the termination message `cilium status` quotes. `restarts` is empty where
    /// the text does not say.
    CrashLoop { pod: String, state: String, restarts: String, last_lines: Vec<String> },
    /// The apiserver did not answer at all: `Get "<url>": dial tcp <addr>: connect: connection refused`.
    ApiserverUnreachable { endpoint: String, reason: String },
}

/// What a kubelet's refusal of the apiserver needs: a right for the apiserver's kubelet-client identity, not
/// another kubeconfig (kelseyhightower/kubernetes-the-hard-way@master:configs/kube-apiserver-to-kubelet.yaml, which
/// the control-plane phase applies: `bootstrap::phases::control_plane::apiserver_to_kubelet_rbac`).
const KUBELET_CLIENT_FIX: &str =
    "bind the apiserver's kubelet-client identity (its --kubelet-client-certificate's CN) \
     to a ClusterRole allowing nodes/proxy, nodes/log and the other kubelet API resources, as Kubernetes the hard \
     way's system:kube-apiserver-to-kubelet does";

/// The kubeconfig a Forbidden install should have used: the seed's RBAC fix.
const ADMIN_KUBECONFIG: &str = "the admin kubeconfig (CN=admin, O=system:masters): admin-internal, which is root's \
     /root/.kube/config on control-plane-1, not a component's scoped identity";

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::NodeNameUnresolvable { name, resolver, reason } => write!(
                f,
                "node name {name:?} does not resolve through {resolver} ({reason}): write node names into /etc/hosts \
                 (resolve_node_names = true) or prefer InternalIP in --kubelet-preferred-address-types"
            ),
            Finding::AgentStatusUnavailable { pod, detail } => write!(
                f,
                "cilium status could not ask agent {pod} for its status ({detail}): the apiserver reaches the pod \
                 through its node's kubelet"
            ),
            Finding::Forbidden { user, verb, resource, api_group } if api_group == KUBELET_API => {
                write!(f, "a kubelet refuses {user} ({verb} {resource}): {KUBELET_CLIENT_FIX}")
            }
            Finding::Forbidden { user, verb, resource, api_group } => {
                write!(f, "{user} may not {verb} {resource} ({api_group}): use {ADMIN_KUBECONFIG}")
            }
            Finding::ImageNotPulled { image, node, since, state } => {
                let image = image.as_deref().unwrap_or("an image");
                write!(f, "{image} is not on ")?;
                match node {
                    Some(n) => write!(f, "{n}")?,
                    None => write!(f, "its node")?,
                }
                write!(f, " yet ({state}")?;
                if let Some(s) = since {
                    write!(f, " for {s}")?;
                }
                match unpinned(image, "") {
                    Some(u) => write!(f, "): {}", u.why()),
                    None => write!(f, "): a cold node, or no registry access; preload the pinned images"),
                }
            }
            Finding::ImagePullFailed { image, node, reason, message } => {
                let image = image.as_deref().unwrap_or("an image");
                write!(f, "pulling {image} failed")?;
                if let Some(n) = node {
                    write!(f, " on {n}")?;
                }
                write!(f, " ({reason}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                match unpinned(image, message) {
                    Some(u) => write!(f, "): {}", u.why()),
                    None => write!(
                        f,
                        "): not slow but failing; check that the mirror or the preloaded archive holds that digest"
                    ),
                }
            }
            Finding::ContainerCreating { pod } => {
                let pod = pod.as_deref().unwrap_or("a pod");
                write!(f, "{pod} is still creating its containers (an image pull, or a pod network the CNI could not set up: its events tell which)")
            }
            Finding::CrashLoop { pod, state, restarts, last_lines } => {
                write!(f, "{pod} keeps crashing ({state}")?;
                if !restarts.is_empty() {
                    write!(f, ", {restarts} restarts")?;
                }
                write!(f, ")")?;
                if last_lines.is_empty() {
                    write!(f, "; see `kubectl logs --previous {pod}`")
                } else {
                    write!(f, "; its last lines:\n  {}", last_lines.join("\n  "))
                }
            }
            Finding::ApiserverUnreachable { endpoint, reason } => write!(
                f,
                "the apiserver at {endpoint} does not answer ({reason}): check the kubeconfig's server (no \
                 kubeconfig means localhost:8080) and that kube-apiserver runs"
            ),
        }
    }
}

/// Why a wait (the harness's own, or `cilium status --wait`) timed out, as far as the text around it tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitTimeoutCause {
    /// Nothing else matters while the apiserver does not answer.
    ApiserverUnreachable(String),
    /// The installing identity lacks rights: the seed's first attempt.
    Forbidden { user: String },
    /// A kubelet refuses the apiserver (exec, logs, `cilium status`'s per-agent calls): not the installer's
    /// identity but the apiserver's kubelet-client one lacks the right.
    KubeletRefused { user: String },
    /// Per-node status could not be fetched because node names do not resolve; warm images would not help.
    UnresolvableNodeNames(Vec<String>),
    /// Pods that keep crashing: waiting longer will not help.
    CrashLoop(Vec<String>),
    /// Image pulls failed: waiting longer will not help.
    ImagePullFailed(Vec<String>),
    /// Agents were still pulling images: the seed's explanation, true only when nothing above is wrong.
    ColdImages(Vec<String>),
    /// Agents ran but `cilium status` could not reach them (apiserver to kubelet).
    AgentStatusUnavailable(Vec<String>),
    /// None of these: look at the bundle.
    Unknown,
}

impl fmt::Display for WaitTimeoutCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| v.join(", ");
        match self {
            WaitTimeoutCause::ApiserverUnreachable(e) => write!(f, "the apiserver at {e} does not answer"),
            WaitTimeoutCause::Forbidden { user } => {
                write!(f, "{user} lacks the rights: install with {ADMIN_KUBECONFIG}")
            }
            WaitTimeoutCause::KubeletRefused { user } => write!(f, "kubelets refuse {user}: {KUBELET_CLIENT_FIX}"),
            WaitTimeoutCause::UnresolvableNodeNames(n) => write!(
                f,
                "node names do not resolve on the control plane ({}): per-agent status fails however warm the \
                 images are",
                list(n)
            ),
            WaitTimeoutCause::CrashLoop(p) => {
                write!(f, "pods keep crashing ({}): waiting longer will not help", list(p))
            }
            WaitTimeoutCause::ImagePullFailed(i) => {
                write!(f, "image pulls failed ({}): not slow, failing; waiting longer will not help", list(i))
            }
            WaitTimeoutCause::ColdImages(i) => write!(f, "images still pulling ({}): not failed, only slow", list(i)),
            WaitTimeoutCause::AgentStatusUnavailable(p) => {
                write!(f, "agents run but their status cannot be fetched through the apiserver ({})", list(p))
            }
            WaitTimeoutCause::Unknown => write!(f, "no known cause in the output"),
        }
    }
}

/// An image an upstream tool deploys that kthw does not pin: no primary source gives its digest, so no phase
/// preloads it, and a node without egress can never pull it. A failed pull of it is that, not a mirror's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unpinned {
    pub image: &'static str,
    /// The pods that run it (`kubectl get pods` rows name the pod, not the image).
    pub pod_prefix: &'static str,
    pub deployed_by: &'static str,
    /// What its missing pod does to the run that deployed it.
    pub effect: &'static str,
}

impl Unpinned {
    fn why(&self) -> String {
        format!(
            "not pinned by kthw, so never preloaded, and it cannot be pulled without egress: {} deploys {} by a \
             tag that no primary source pins to a digest; {}",
            self.deployed_by, self.image, self.effect
        )
    }
}

/// cilium-cli v0.19.7 (vendor/github.com/cilium/cilium/cilium-cli/): connectivity/check/deployment.go `deploy`
/// creates Deployment `l7-lb` on every run, under no feature or flag, with `ct.params.EchoImage`, whose default
/// (cli/connectivity.go `--echo-image`) is defaults/defaults.go
/// `ConnectivityCheckOptionalImagesTest["ConnectivityTestEchoImage"]`, a gateway-api staging tag. It never
/// waits for it (`validateDeployment` waits for `deploymentList()`, which does not name it), and its one test,
/// `l7-lb`, runs only with cilium-config's `loadbalancer-l7: envoy` (builder/l7_lb.go, utils/features/features.go),
/// which Cilium's chart writes only with `loadBalancer.l7.backend=envoy` (chart 1.19.5's default: disabled).
/// cilium-cli v0.18.4 has no `--echo-image`. kthw-scenarios' connectivity module cites the lines.
pub const UNPINNED: &[Unpinned] = &[Unpinned {
    image: "gcr.io/k8s-staging-gateway-api/echo-advanced:v20251204-v1.4.1",
    pod_prefix: "l7-lb-",
    deployed_by: "cilium-cli v0.19.7's connectivity test (Deployment l7-lb, its default --echo-image)",
    effect: "the CLI never waits for that pod, so it stays stuck without failing the suite, unless \
             loadBalancer.l7.backend=envoy runs the l7-lb test against it (the connectivity scenario leaves that \
             test out then)",
}];

/// The unpinned image a finding is about, by its reference or by the pod a `kubectl get pods` row names.
fn unpinned(image: &str, message: &str) -> Option<&'static Unpinned> {
    let pod = message.strip_prefix("pod ").unwrap_or_default();
    UNPINNED.iter().find(|u| image == u.image || (!pod.is_empty() && pod.starts_with(u.pod_prefix)))
}

/// A failed wait explained: the most telling cause, then every finding.
pub fn explain(findings: &[Finding]) -> String {
    let mut text = wait_timeout_cause(findings).to_string();
    for f in findings {
        text.push_str("\n  - ");
        text.push_str(&f.to_string());
    }
    text
}

/// Every finding in `text`, in order of appearance, each reported once. An image whose pull finished or failed
/// later in the same text is not reported as in flight.
pub fn diagnose(text: &str) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    let raw: Vec<&str> = text.lines().map(text::unquote_markdown).collect();
    let lines: Vec<String> = text.lines().map(text::normalise).collect();
    let mut node: Option<String> = None;
    let mut image: Option<String> = None;
    for (i, line) in lines.iter().enumerate() {
        let line = line.as_str();
        let next = lines.get(i + 1).map(String::as_str).unwrap_or("");
        // Context that later lines refer to: `kubectl describe pod`'s node, a status's container image.
        if let Some(n) = line.strip_prefix("Node:") {
            node = n.split('/').next().map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        }
        if let Some(v) = text::yaml_value(line, "image") {
            image = Some(v);
        }
        let mut found = Vec::new();
        found.extend(access::status_json(raw[i]));
        found.extend(access::forbidden(line, next));
        found.extend(pods::agent_status(line));
        found.extend(access::node_name_lookup(line));
        found.extend(access::apiserver_unreachable(line));
        found.extend(pods::crash_loop(line));
        found.extend(pods::agent_crashed(line));
        found.extend(pods::image_not_pulled(line, &lines[i + 1..], node.as_deref(), image.as_deref()));
        // A pull that finished, or failed, on this line is no longer in flight.
        let failed = found.iter().find_map(|f| match f {
            Finding::ImagePullFailed { image: Some(i), .. } => Some(i.clone()),
            _ => None,
        });
        if let Some(done) = pods::pulled(line).or(failed) {
            out.retain(|f| !matches!(f, Finding::ImageNotPulled { image: Some(i), .. } if *i == done));
        }
        for f in found {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out
}

/// Fills in the last `n` lines of `logs` (e.g. `kubectl logs --previous POD`) for `pod`'s crash loop.
pub fn attach_last_lines(findings: &mut [Finding], pod: &str, logs: &str, n: usize) {
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail: Vec<String> = lines[lines.len().saturating_sub(n)..].iter().map(|l| l.to_string()).collect();
    for f in findings.iter_mut() {
        if let Finding::CrashLoop { pod: p, last_lines, .. } = f {
            if p == pod {
                *last_lines = tail.clone();
            }
        }
    }
}

/// The most telling cause first: an unreachable apiserver or a missing right explains everything after it;
/// unresolvable node names make `status --wait` fail even with warm images, so they come before cold images;
/// so does one failed pull, however many others are still in flight.
pub fn wait_timeout_cause(findings: &[Finding]) -> WaitTimeoutCause {
    let collect = |pick: fn(&Finding) -> Option<String>| -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for s in findings.iter().filter_map(pick) {
            if !v.contains(&s) {
                v.push(s);
            }
        }
        v
    };
    if let Some(Finding::ApiserverUnreachable { endpoint, .. }) =
        findings.iter().find(|f| matches!(f, Finding::ApiserverUnreachable { .. }))
    {
        return WaitTimeoutCause::ApiserverUnreachable(endpoint.clone());
    }
    if let Some(Finding::Forbidden { user, api_group, .. }) =
        findings.iter().find(|f| matches!(f, Finding::Forbidden { .. }))
    {
        if api_group == KUBELET_API {
            return WaitTimeoutCause::KubeletRefused { user: user.clone() };
        }
        return WaitTimeoutCause::Forbidden { user: user.clone() };
    }
    let names = collect(|f| match f {
        Finding::NodeNameUnresolvable { name, .. } => Some(name.clone()),
        _ => None,
    });
    if !names.is_empty() {
        return WaitTimeoutCause::UnresolvableNodeNames(names);
    }
    let crashing = collect(|f| match f {
        Finding::CrashLoop { pod, .. } => Some(pod.clone()),
        _ => None,
    });
    if !crashing.is_empty() {
        return WaitTimeoutCause::CrashLoop(crashing);
    }
    if let Some(failed) = findings.iter().find(|f| matches!(f, Finding::ImagePullFailed { .. })) {
        let mut images = collect(|f| match f {
            Finding::ImagePullFailed { image: Some(i), .. } => Some(i.clone()),
            _ => None,
        });
        if images.is_empty() {
            if let Finding::ImagePullFailed { reason, .. } = failed {
                images.push(format!("an image, {reason}"));
            }
        }
        return WaitTimeoutCause::ImagePullFailed(images);
    }
    if findings.iter().any(|f| matches!(f, Finding::ImageNotPulled { .. })) {
        return WaitTimeoutCause::ColdImages(collect(|f| match f {
            Finding::ImageNotPulled { image: Some(i), .. } => Some(i.clone()),
            _ => None,
        }));
    }
    let agents = collect(|f| match f {
        Finding::AgentStatusUnavailable { pod, .. } => Some(pod.clone()),
        _ => None,
    });
    if !agents.is_empty() {
        return WaitTimeoutCause::AgentStatusUnavailable(agents);
    }
    WaitTimeoutCause::Unknown
}

impl Finding {
    /// Whether this is a pull the kubelet began and has not finished (its `Pulling` event without a
    /// `Pulled`): the only evidence that images are slow rather than missing.
    pub fn pull_in_flight(&self) -> bool {
        matches!(self, Finding::ImageNotPulled { state, .. } if state == PULLING)
    }
}

/// The kubelet's event reason for a pull it began (kubernetes/kubernetes v1.32.4 pkg/kubelet/events/event.go:
/// `PullingImage = "Pulling"`).
pub const PULLING: &str = "Pulling";

mod access;
mod pods;
mod text;

pub use access::{KUBELET_API, NON_RESOURCE};
pub use pods::{image_present, PRESENT_TAILS, STATUS_WAIT_AGENT_CRASHED};

#[cfg(test)]
mod corpus;
#[cfg(test)]
mod tests;
