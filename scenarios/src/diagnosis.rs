//! Findings in the text a cluster prints, keyed to the seed's failure modes.

use std::fmt;

/// One recognised symptom, with the values a person needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// `dial tcp: lookup worker-node-2 on 127.0.0.53:53: server misbehaving`: a node name the asking host could
    /// not resolve. In the seed this is the apiserver reaching a kubelet by hostname through systemd-resolved.
    NodeNameUnresolvable { name: String, resolver: String, reason: String },
    /// `User "system:kube-controller-manager" cannot get resource "clusterroles" in API group
    /// "rbac.authorization.k8s.io" at the cluster scope`: an identity without the rights the action needs.
    Forbidden { user: String, verb: String, resource: String, api_group: String },
    /// An image still being pulled or failing to pull: the seed's cold-image `status --wait` timeout.
    ImageNotPulled { image: Option<String>, state: String },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::NodeNameUnresolvable { name, resolver, reason } => write!(
                f,
                "node name {name:?} does not resolve through {resolver} ({reason}): write node names into /etc/hosts \
                 (resolve_node_names = true) or prefer InternalIP in --kubelet-preferred-address-types"
            ),
            Finding::Forbidden { user, verb, resource, api_group } => write!(
                f,
                "{user} may not {verb} {resource} ({api_group}): use the admin kubeconfig (O=system:masters), not a \
                 component's scoped identity"
            ),
            Finding::ImageNotPulled { image, state } => match image {
                Some(i) => write!(f, "image {i} not pulled yet ({state}): a cold node, or no registry access"),
                None => write!(f, "a container is waiting for its image ({state}): a cold node, or no registry access"),
            },
        }
    }
}

/// Why `cilium status --wait` timed out, as far as the text around it tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitTimeoutCause {
    /// Per-node status could not be fetched because node names do not resolve; warm images would not help.
    UnresolvableNodeNames(Vec<String>),
    /// Agents were still pulling images: the seed's explanation, true only when nothing else is wrong.
    ColdImages,
    /// Neither: look at the bundle.
    Unknown,
}

/// Every finding in `text`, in order of appearance, each reported once.
pub fn diagnose(text: &str) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let next = lines.get(i + 1).copied().unwrap_or("");
        let found = node_name_lookup(line).or_else(|| forbidden(line, next)).or_else(|| image_not_pulled(line));
        if let Some(f) = found {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out
}

/// Unresolvable node names explain a timeout before images do: they make `status --wait` fail even warm.
pub fn wait_timeout_cause(findings: &[Finding]) -> WaitTimeoutCause {
    let names: Vec<String> = findings
        .iter()
        .filter_map(|f| match f {
            Finding::NodeNameUnresolvable { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    if !names.is_empty() {
        WaitTimeoutCause::UnresolvableNodeNames(names)
    } else if findings.iter().any(|f| matches!(f, Finding::ImageNotPulled { .. })) {
        WaitTimeoutCause::ColdImages
    } else {
        WaitTimeoutCause::Unknown
    }
}

/// Go's resolver error: `lookup NAME on RESOLVER: REASON`.
fn node_name_lookup(line: &str) -> Option<Finding> {
    let rest = &line[line.find("lookup ")? + "lookup ".len()..];
    let (name, rest) = rest.split_once(" on ")?;
    let (resolver, reason) = rest.split_once(": ")?;
    // A dotted name is a service or external host, not a node's single-label hostname.
    if name.is_empty() || name.contains('.') || name.contains(' ') {
        return None;
    }
    let reason = reason.split([',', '"']).next().unwrap_or(reason).trim();
    Some(Finding::NodeNameUnresolvable { name: name.into(), resolver: resolver.into(), reason: reason.into() })
}

/// Kubernetes' RBAC denial: `User "U" cannot VERB resource "R" in API group "G" ...`; terminals and logs
/// often wrap it before "in API group", so the group may be on the next line.
fn forbidden(line: &str, next: &str) -> Option<Finding> {
    let rest = &line[line.find("User \"")? + "User \"".len()..];
    let (user, rest) = rest.split_once("\" cannot ")?;
    let (verb, rest) = rest.split_once(" resource \"")?;
    let (resource, rest) = rest.split_once('"')?;
    let group_text = if rest.contains("in API group") { rest } else { next };
    let api_group = group_text
        .split_once("in API group \"")
        .and_then(|(_, g)| g.split_once('"'))
        .map(|(g, _)| if g.is_empty() { "core".to_string() } else { g.to_string() })
        .unwrap_or_else(|| "core".to_string());
    Some(Finding::Forbidden { user: user.into(), verb: verb.into(), resource: resource.into(), api_group })
}

/// Kubelet events and pod states while an image is missing.
fn image_not_pulled(line: &str) -> Option<Finding> {
    if let Some(i) = line.find("Pulling image \"") {
        let image = line[i + "Pulling image \"".len()..].split('"').next().map(str::to_string);
        return Some(Finding::ImageNotPulled { image, state: "Pulling".into() });
    }
    ["ImagePullBackOff", "ErrImagePull", "ContainerCreating", "PodInitializing"]
        .into_iter()
        .find(|s| line.split_whitespace().any(|w| w == *s || w.starts_with(&format!("{s}:"))))
        .map(|s| Finding::ImageNotPulled { image: None, state: s.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The seed's own words (shared/seed/cilium-bootstrap.md).
    const SEED_DNS: &str = "dial tcp: lookup worker-node-2 on 127.0.0.53:53: server misbehaving";
    const SEED_RBAC: &str = "User \"system:kube-controller-manager\" cannot get resource \"clusterroles\"\n\
        in API group \"rbac.authorization.k8s.io\" at the cluster scope";

    #[test]
    fn the_seeds_dns_error_names_the_node_and_the_resolver() {
        let f = diagnose(SEED_DNS);
        assert_eq!(
            f,
            [Finding::NodeNameUnresolvable {
                name: "worker-node-2".into(),
                resolver: "127.0.0.53:53".into(),
                reason: "server misbehaving".into()
            }]
        );
        assert!(f[0].to_string().contains("resolve_node_names"));
    }

    #[test]
    fn the_seeds_rbac_error_names_the_identity_and_resource_even_when_wrapped() {
        let f = diagnose(&SEED_RBAC.replace('\n', " "));
        assert_eq!(
            f,
            [Finding::Forbidden {
                user: "system:kube-controller-manager".into(),
                verb: "get".into(),
                resource: "clusterroles".into(),
                api_group: "rbac.authorization.k8s.io".into()
            }]
        );
        assert_eq!(diagnose(SEED_RBAC), f, "wrapped over two lines, as in the seed");
        assert!(
            matches!(&diagnose("User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"x\"")[0],
            Finding::Forbidden { api_group, .. } if api_group == "core")
        );
    }

    #[test]
    fn image_pulls_are_recognised_from_events_and_pod_states() {
        let text = "Normal  Pulling  2m  kubelet  Pulling image \"quay.io/cilium/cilium:v1.17.4\"\n\
                    kube-system  cilium-abcde  0/1  Init:0/6  ContainerCreating  0  3m\n";
        let f = diagnose(text);
        assert_eq!(
            f[0],
            Finding::ImageNotPulled { image: Some("quay.io/cilium/cilium:v1.17.4".into()), state: "Pulling".into() }
        );
        assert_eq!(f[1], Finding::ImageNotPulled { image: None, state: "ContainerCreating".into() });
    }

    #[test]
    fn a_timeout_with_unresolvable_names_is_not_blamed_on_cold_images() {
        let text = format!("{SEED_DNS}\ncilium-xyz 0/1 ContainerCreating\n{SEED_DNS}\n");
        let f = diagnose(&text);
        assert_eq!(f.len(), 2, "repeats are reported once: {f:?}");
        assert_eq!(wait_timeout_cause(&f), WaitTimeoutCause::UnresolvableNodeNames(vec!["worker-node-2".into()]));
        assert_eq!(wait_timeout_cause(&diagnose("cilium-xyz 0/1 ContainerCreating")), WaitTimeoutCause::ColdImages);
        assert_eq!(wait_timeout_cause(&diagnose("all fine")), WaitTimeoutCause::Unknown);
    }

    #[test]
    fn service_name_lookups_are_not_node_names() {
        assert!(diagnose("dial tcp: lookup kubernetes.default.svc on 10.32.0.10:53: no such host").is_empty());
    }
}
