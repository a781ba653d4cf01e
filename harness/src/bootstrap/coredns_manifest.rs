//! The objects of the `coredns` phase, as `k8s-openapi` types for server-side apply: CoreDNS's own deployment
//! manifest (coredns/deployment@master:kubernetes/coredns.yaml.sed, last changed by 7853d4a "Add Kubernetes
//! 1.32 (#303)", the template its deploy.sh fills in) with the template's placeholders taken from the spec: CLUSTER_DOMAIN
//! is `network.cluster_domain`, CLUSTER_DNS_IP is `network.cluster_dns`, REVERSE_CIDRS is deploy.sh's default
//! (`in-addr.arpa ip6.arpa`), the image is the pinned one by digest, and UPSTREAMNAMESERVER depends on egress
//! (see [`corefile`]).
//!
//! k8s-openapi is built for Kubernetes 1.33 (its oldest API version); every object here is a stable v1 API
//! (core/v1, apps/v1, rbac.authorization.k8s.io/v1) whose fields used here are the same in 1.32.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, KeyToPath,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Sysctl, Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::spec::ClusterSpec;

pub const NAMESPACE: &str = "kube-system";
/// The ServiceAccount, ConfigMap and Deployment are `coredns`; the Service keeps kube-dns's name.
pub const NAME: &str = "coredns";
pub const SERVICE_NAME: &str = "kube-dns";
pub const CLUSTER_ROLE: &str = "system:coredns";
const REVERSE_ZONES: &str = "in-addr.arpa ip6.arpa";
const CONFIG_DIR: &str = "/etc/coredns";

/// Every object of the phase, in the order they are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreDns {
    pub service_account: ServiceAccount,
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub service: Service,
}

/// The Corefile: the upstream template's plugins, in its order. CoreDNS runs with `dnsPolicy: Default`, so
/// its own /etc/resolv.conf is the kubelet's `resolvConf`, systemd-resolved's list of real upstream servers
/// (`configs::KUBELET_RESOLV_CONF`), never the 127.0.0.53 stub, which a pod cannot reach and which makes
/// the `loop` plugin halt CoreDNS. With `egress = false` there is no upstream at all, so there is no
/// `forward`: CoreDNS answers cluster names only, and says so in a comment of the Corefile.
pub fn corefile(spec: &ClusterSpec) -> String {
    let forward = if spec.egress {
        "    # Other names go to the node's upstream servers, as the kubelet's resolvConf lists them\n    \
         # (systemd-resolved's /run/systemd/resolve/resolv.conf, not its local stub listener).\n    \
         forward . /etc/resolv.conf {\n        max_concurrent 1000\n    }\n"
    } else {
        "    # egress = false: the nodes have no way out of the cluster network, so there is no upstream and no\n    \
         # `forward`. This server answers cluster names only; any other name fails (SERVFAIL).\n"
    };
    format!(
        ".:53 {{\n    \
         errors\n    \
         health {{\n        lameduck 5s\n    }}\n    \
         ready\n    \
         kubernetes {domain} {REVERSE_ZONES} {{\n        fallthrough {REVERSE_ZONES}\n    }}\n    \
         prometheus :9153\n\
         {forward}    \
         cache 30\n    \
         loop\n    \
         reload\n    \
         loadbalance\n\
         }}\n",
        domain = spec.network.cluster_domain,
    )
}

fn meta(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
    let map = |kv: &[(&str, &str)]| {
        (!kv.is_empty()).then(|| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
    };
    ObjectMeta {
        name: Some(name.to_string()),
        labels: map(labels),
        annotations: map(annotations),
        ..ObjectMeta::default()
    }
}

fn namespaced(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta { namespace: Some(NAMESPACE.to_string()), ..meta(name, labels, annotations) }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The pods' labels, which the Deployment and the Service select on.
const POD_LABELS: [(&str, &str); 2] = [("k8s-app", "kube-dns"), ("app.kubernetes.io/name", "coredns")];

fn pod_labels() -> BTreeMap<String, String> {
    POD_LABELS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn port(name: &str, port: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some(protocol.to_string()),
        ..ContainerPort::default()
    }
}

fn http_probe(path: &str, port: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(port),
            scheme: Some("HTTP".to_string()),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    }
}

fn container(image: &str) -> Container {
    let quantities = |kv: &[(&str, &str)]| -> BTreeMap<String, Quantity> {
        kv.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()
    };
    Container {
        name: NAME.to_string(),
        image: Some(image.to_string()),
        // The image is preloaded by digest; a pull is what the harness must never need.
        image_pull_policy: Some("IfNotPresent".to_string()),
        resources: Some(ResourceRequirements {
            limits: Some(quantities(&[("memory", "170Mi")])),
            requests: Some(quantities(&[("cpu", "100m"), ("memory", "70Mi")])),
            ..ResourceRequirements::default()
        }),
        args: Some(strings(&["-conf", &format!("{CONFIG_DIR}/Corefile")])),
        volume_mounts: Some(vec![VolumeMount {
            name: "config-volume".to_string(),
            mount_path: CONFIG_DIR.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        ports: Some(vec![port("dns", 53, "UDP"), port("dns-tcp", 53, "TCP"), port("metrics", 9153, "TCP")]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: Some(strings(&["NET_BIND_SERVICE"])),
                drop: Some(strings(&["all"])),
            }),
            read_only_root_filesystem: Some(true),
            ..SecurityContext::default()
        }),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(60),
            timeout_seconds: Some(5),
            success_threshold: Some(1),
            failure_threshold: Some(5),
            ..http_probe("/health", 8080)
        }),
        readiness_probe: Some(http_probe("/ready", 8181)),
        ..Container::default()
    }
}

fn deployment(image: &str) -> Deployment {
    let labels = [("k8s-app", "kube-dns"), ("kubernetes.io/name", "CoreDNS"), ("app.kubernetes.io/name", "coredns")];
    let pod = PodSpec {
        priority_class_name: Some("system-cluster-critical".to_string()),
        service_account_name: Some(NAME.to_string()),
        tolerations: Some(vec![Toleration {
            key: Some("CriticalAddonsOnly".to_string()),
            operator: Some("Exists".to_string()),
            ..Toleration::default()
        }]),
        node_selector: Some(BTreeMap::from([("kubernetes.io/os".to_string(), "linux".to_string())])),
        affinity: Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_expressions: Some(vec![LabelSelectorRequirement {
                            key: "k8s-app".to_string(),
                            operator: "In".to_string(),
                            values: Some(strings(&["kube-dns"])),
                        }]),
                        ..LabelSelector::default()
                    }),
                    topology_key: "kubernetes.io/hostname".to_string(),
                    ..PodAffinityTerm::default()
                }]),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        }),
        containers: vec![container(image)],
        // The node's resolver configuration (the kubelet's resolvConf), not the cluster's own DNS.
        dns_policy: Some("Default".to_string()),
        // Not in master's template: from coredns/deployment commit 000c366 ("add
        // net.ipv4.ip_unprivileged_port_start sysctl(4.11+)"), of a pull request never merged. It lets CoreDNS
        // bind :53 unprivileged; master's way is the container's NET_BIND_SERVICE, which is kept too.
        security_context: Some(PodSecurityContext {
            sysctls: Some(vec![Sysctl {
                name: "net.ipv4.ip_unprivileged_port_start".to_string(),
                value: "53".to_string(),
            }]),
            ..PodSecurityContext::default()
        }),
        volumes: Some(vec![Volume {
            name: "config-volume".to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: NAME.to_string(),
                items: Some(vec![KeyToPath {
                    key: "Corefile".to_string(),
                    path: "Corefile".to_string(),
                    ..KeyToPath::default()
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    };
    Deployment {
        metadata: namespaced(NAME, &labels, &[]),
        spec: Some(DeploymentSpec {
            // Upstream leaves replicas unset (1), for DNS autoscaling to tune.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(1)),
                    ..RollingUpdateDeployment::default()
                }),
            }),
            selector: LabelSelector { match_labels: Some(pod_labels()), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels()), ..ObjectMeta::default() }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// CoreDNS for `spec`, running `image` (the pinned reference by digest, `repository:tag@sha256:...`).
pub fn coredns(spec: &ClusterSpec, image: &str) -> CoreDns {
    let rbac_defaults = [("kubernetes.io/bootstrapping", "rbac-defaults")];
    let service_port = |name: &str, port: i32, protocol: &str| ServicePort {
        name: Some(name.to_string()),
        port,
        protocol: Some(protocol.to_string()),
        ..ServicePort::default()
    };
    CoreDns {
        service_account: ServiceAccount { metadata: namespaced(NAME, &[], &[]), ..ServiceAccount::default() },
        cluster_role: ClusterRole {
            metadata: meta(CLUSTER_ROLE, &rbac_defaults, &[]),
            rules: Some(vec![
                PolicyRule {
                    api_groups: Some(strings(&[""])),
                    resources: Some(strings(&["endpoints", "services", "pods", "namespaces"])),
                    verbs: strings(&["list", "watch"]),
                    ..PolicyRule::default()
                },
                PolicyRule {
                    api_groups: Some(strings(&["discovery.k8s.io"])),
                    resources: Some(strings(&["endpointslices"])),
                    verbs: strings(&["list", "watch"]),
                    ..PolicyRule::default()
                },
            ]),
            ..ClusterRole::default()
        },
        cluster_role_binding: ClusterRoleBinding {
            metadata: meta(CLUSTER_ROLE, &rbac_defaults, &[("rbac.authorization.kubernetes.io/autoupdate", "true")]),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_string(),
                kind: "ClusterRole".to_string(),
                name: CLUSTER_ROLE.to_string(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_string(),
                name: NAME.to_string(),
                namespace: Some(NAMESPACE.to_string()),
                ..Subject::default()
            }]),
        },
        config_map: ConfigMap {
            metadata: namespaced(NAME, &[], &[]),
            data: Some(BTreeMap::from([("Corefile".to_string(), corefile(spec))])),
            ..ConfigMap::default()
        },
        deployment: deployment(image),
        service: Service {
            metadata: namespaced(
                SERVICE_NAME,
                &[
                    ("k8s-app", "kube-dns"),
                    ("kubernetes.io/cluster-service", "true"),
                    ("kubernetes.io/name", "CoreDNS"),
                    ("app.kubernetes.io/name", "coredns"),
                ],
                &[("prometheus.io/port", "9153"), ("prometheus.io/scrape", "true")],
            ),
            spec: Some(ServiceSpec {
                selector: Some(pod_labels()),
                cluster_ip: Some(spec.network.cluster_dns.to_string()),
                ports: Some(vec![
                    service_port("dns", 53, "UDP"),
                    service_port("dns-tcp", 53, "TCP"),
                    service_port("metrics", 9153, "TCP"),
                ]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::Manifest;

    fn pinned_image() -> String {
        let a = Manifest::pinned().get("coredns").unwrap().clone();
        format!("{}@{}", a.locator(), a.digest.as_deref().unwrap())
    }

    /// The plugin names of a Corefile's server block, in order.
    fn plugins(corefile: &str) -> Vec<String> {
        corefile
            .lines()
            .filter(|l| l.starts_with("    ") && !l.starts_with("     ") && !l.trim().starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| *w != "}")
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_service_is_at_the_cluster_dns_address_on_port_53_udp_and_tcp() {
        let spec = ClusterSpec::default();
        let c = coredns(&spec, &pinned_image());
        let svc = c.service.spec.as_ref().unwrap();
        assert_eq!(svc.cluster_ip.as_deref(), Some("10.32.0.10"));
        assert_eq!(svc.cluster_ip, Some(spec.network.cluster_dns.to_string()));
        let ports: Vec<(i32, &str)> =
            svc.ports.as_ref().unwrap().iter().map(|p| (p.port, p.protocol.as_deref().unwrap())).collect();
        assert_eq!(ports, [(53, "UDP"), (53, "TCP"), (9153, "TCP")]);
        assert_eq!(c.service.metadata.name.as_deref(), Some("kube-dns"));
        assert_eq!(c.service.metadata.namespace.as_deref(), Some("kube-system"));
        let template = &c.deployment.spec.as_ref().unwrap().template;
        assert_eq!(svc.selector, template.metadata.as_ref().unwrap().labels, "the Service selects the pods");
    }

    /// coredns/deployment@master:kubernetes/coredns.yaml.sed, the container's securityContext, and the lines
    /// commit 000c366 (an unmerged pull request) adds to the pod's.
    const MASTER_CONTAINER_SECURITY: &str =
        "        securityContext:\n          allowPrivilegeEscalation: false\n          \
capabilities:\n            add:\n            - NET_BIND_SERVICE\n            drop:\n            - all\n          \
readOnlyRootFilesystem: true\n";
    const PR_000C366_POD_SECURITY: &str =
        "      securityContext:\n        sysctls:\n        - name: net.ipv4.ip_unprivileged_port_start\n          value: \"53\"\n";

    #[test]
    fn the_security_contexts_are_masters_and_the_one_sysctl_is_the_pull_requests() {
        let c = coredns(&ClusterSpec::default(), &pinned_image());
        let pod = c.deployment.spec.unwrap().template.spec.unwrap();
        let sc = pod.containers[0].security_context.clone().unwrap();
        let caps = sc.capabilities.unwrap();
        let items =
            |v: Option<Vec<String>>| v.unwrap().iter().map(|c| format!("            - {c}\n")).collect::<String>();
        let container = format!(
            "        securityContext:\n          allowPrivilegeEscalation: {}\n          capabilities:\n            \
             add:\n{}            drop:\n{}          readOnlyRootFilesystem: {}\n",
            sc.allow_privilege_escalation.unwrap(),
            items(caps.add),
            items(caps.drop),
            sc.read_only_root_filesystem.unwrap()
        );
        assert_eq!(container, MASTER_CONTAINER_SECURITY);
        let sysctls: String = pod
            .security_context
            .unwrap()
            .sysctls
            .unwrap()
            .iter()
            .map(|s| format!("        - name: {}\n          value: \"{}\"\n", s.name, s.value))
            .collect();
        assert_eq!(format!("      securityContext:\n        sysctls:\n{sysctls}"), PR_000C366_POD_SECURITY);
    }

    #[test]
    fn the_deployment_runs_the_pinned_image_by_digest_with_the_nodes_resolver() {
        let image = pinned_image();
        assert!(image.starts_with("registry.k8s.io/coredns/coredns:v1.12.1@sha256:"), "{image}");
        let c = coredns(&ClusterSpec::default(), &image);
        let d = c.deployment.spec.as_ref().unwrap();
        assert_eq!(d.selector.match_labels, d.template.metadata.as_ref().unwrap().labels);
        let pod = d.template.spec.as_ref().unwrap();
        assert_eq!(pod.containers[0].image.as_deref(), Some(image.as_str()));
        assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
        assert_eq!(pod.service_account_name.as_deref(), Some("coredns"));
        let volume = pod.volumes.as_ref().unwrap()[0].config_map.as_ref().unwrap();
        assert_eq!(volume.name, c.config_map.metadata.name.clone().unwrap());
        assert!(c.config_map.data.as_ref().unwrap().contains_key("Corefile"));
    }

    /// coredns/deployment@000c366e86407ad55a502d31e9134a616aad6d3f:kubernetes/coredns.yaml.sed, the ClusterRole's
    /// rules (lines 13-30): what the kubernetes plugin lists and watches, in every namespace.
    const UPSTREAM_RULES: &str = "rules:
  - apiGroups:
    - \"\"
    resources:
    - endpoints
    - services
    - pods
    - namespaces
    verbs:
    - list
    - watch
  - apiGroups:
    - discovery.k8s.io
    resources:
    - endpointslices
    verbs:
    - list
    - watch
";

    /// `rules`, written as the upstream manifest writes them.
    fn rules_yaml(rules: &[PolicyRule]) -> String {
        let list = |v: &[String]| -> String {
            v.iter().map(|i| format!("    - {}\n", if i.is_empty() { "\"\"" } else { i })).collect()
        };
        let mut out = String::from("rules:\n");
        for r in rules {
            out.push_str(&format!("  - apiGroups:\n{}", list(r.api_groups.as_deref().unwrap_or_default())));
            out.push_str(&format!("    resources:\n{}", list(r.resources.as_deref().unwrap_or_default())));
            out.push_str(&format!("    verbs:\n{}", list(&r.verbs)));
            assert!(r.resource_names.is_none() && r.non_resource_urls.is_none(), "{r:?}");
        }
        out
    }

    #[test]
    fn rbac_lets_the_service_account_list_and_watch_what_upstream_grants_in_every_namespace() {
        let c = coredns(&ClusterSpec::default(), &pinned_image());
        assert_eq!(rules_yaml(c.cluster_role.rules.as_deref().unwrap()), UPSTREAM_RULES);
        // A ClusterRole bound by a ClusterRoleBinding holds in every namespace (a RoleBinding would confine it
        // to one): services and endpoint slices are read wherever they are.
        let b = &c.cluster_role_binding;
        assert_eq!(
            (b.role_ref.kind.as_str(), b.role_ref.api_group.as_str()),
            ("ClusterRole", "rbac.authorization.k8s.io")
        );
        assert_eq!(b.role_ref.name, c.cluster_role.metadata.name.clone().unwrap());
        assert_eq!(b.metadata.name, c.cluster_role.metadata.name);
        let subject = &b.subjects.as_ref().unwrap()[0];
        assert_eq!((subject.kind.as_str(), subject.name.as_str()), ("ServiceAccount", "coredns"));
        assert_eq!(subject.namespace, c.service_account.metadata.namespace);
        assert_eq!(Some(subject.name.clone()), c.service_account.metadata.name);
        let pod = c.deployment.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.service_account_name, c.service_account.metadata.name, "the pods run as the bound account");
    }

    #[test]
    fn the_corefile_forwards_only_with_egress_and_never_to_the_stub_resolver() {
        let mut spec = ClusterSpec::default();
        assert!(!spec.egress, "tests run without egress");
        let closed = corefile(&spec);
        assert_eq!(
            plugins(&closed),
            ["errors", "health", "ready", "kubernetes", "prometheus", "cache", "loop", "reload", "loadbalance"]
        );
        assert!(closed.contains("kubernetes cluster.local in-addr.arpa ip6.arpa {"), "{closed}");
        assert!(closed.contains("# egress = false") && closed.contains("cluster names only"), "{closed}");

        spec.egress = true;
        let open = corefile(&spec);
        assert_eq!(
            plugins(&open),
            [
                "errors",
                "health",
                "ready",
                "kubernetes",
                "prometheus",
                "forward",
                "cache",
                "loop",
                "reload",
                "loadbalance"
            ]
        );
        assert!(open.contains("forward . /etc/resolv.conf {"), "{open}");
        for corefile in [&closed, &open] {
            assert!(!corefile.contains("127.0.0.53"), "never the stub:\n{corefile}");
            assert_eq!(corefile.matches('{').count(), corefile.matches('}').count(), "{corefile}");
        }
    }
}
