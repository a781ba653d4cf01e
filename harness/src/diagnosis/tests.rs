use super::pods::STATUS_MARK;
use super::*;

// The seed's own words (shared/seed/cilium-bootstrap.md).
const SEED_DNS: &str = "dial tcp: lookup worker-node-2 on 127.0.0.53:53: server misbehaving";
// The seed's own words too (shared/seed/cilium-bootstrap.md), wrapped as the seed shows them.
const SEED_RBAC: &str = "User \"system:kube-controller-manager\" cannot get resource \"clusterroles\"\n\
    in API group \"rbac.authorization.k8s.io\" at the cluster scope";

/// kubectl exec through an apiserver that cannot resolve a node name: kubernetes/kubernetes issue #39026,
/// comment by jamstar, 2017-01-13 (https://github.com/kubernetes/kubernetes/issues/39026). 10.0.2.3 is
/// QEMU user networking's DNS, as on our management NIC.
const KUBECTL_EXEC_LOOKUP: &str =
    "Error from server: error dialing backend: dial tcp: lookup node-2 on 10.0.2.3:53: server misbehaving";

/// `cilium status --wait` timing out with agents it cannot reach: cilium/cilium issue #16097, description
/// (https://github.com/cilium/cilium/issues/16097), up to the Warnings row.
const STATUS_WAIT_AGENTS_UNREACHABLE: &str = r"Run cilium status --wait
Error: Unable to determine status:  timeout while waiting for status to become successful: context deadline exceeded
/¯¯\
 /¯¯\__/¯¯\    Cilium:         2 errors
 \__/¯¯\__/    Operator:       1 errors
 /¯¯\__/¯¯\    Hubble:         1 warnings
 \__/¯¯\__/    ClusterMesh:    1 warnings
\__/

DaemonSet         cilium                   Desired: 2, Ready: 2/2, Available: 2/2
Containers:       cilium                   Running: 2
Image versions    cilium                   quay.io/cilium/cilium-ci:08b0f90fc2de5ff22d648a7478ace9bb2788ad7e: 2
Errors:           cilium                   cilium-4j8vt             unable to retrieve cilium status: error dialing backend: dial tcp 10.240.0.35:10250: i/o timeout
              cilium                   cilium-2zptk             unable to retrieve cilium status: error dialing backend: dial tcp 10.240.0.4:10250: i/o timeout
              cilium-operator          cilium-operator          context deadline exceeded";

/// `kubectl describe pod` events while images are pulled: cilium/cilium issue #6778, comment by
/// joestringer, 2019-03-27 (https://github.com/cilium/cilium/issues/6778), pods_status.txt; its first
/// twelve event rows, which end while the last image is still being pulled.
const DESCRIBE_EVENTS_PULLING: &str = r#"  Normal  Scheduled  5m40s  default-scheduler  Successfully assigned default/ratings-v1-69998f89d6-nr6bq to k8s2
  Normal  Pulled     5m37s  kubelet, k8s2      Container image "busybox:1.28.4" already present on machine
  Normal  Created    5m37s  kubelet, k8s2      Created container
  Normal  Started    5m37s  kubelet, k8s2      Started container
  Normal  Pulling    5m36s  kubelet, k8s2      pulling image "docker.io/istio/proxy_init:1.0.0"
  Normal  Pulled     5m30s  kubelet, k8s2      Successfully pulled image "docker.io/istio/proxy_init:1.0.0"
  Normal  Created    5m30s  kubelet, k8s2      Created container
  Normal  Started    5m30s  kubelet, k8s2      Started container
  Normal  Pulled     5m29s  kubelet, k8s2      Container image "docker.io/istio/examples-bookinfo-ratings-v1:1.6.0" already present on machine
  Normal  Created    5m28s  kubelet, k8s2      Created container
  Normal  Started    5m28s  kubelet, k8s2      Started container
  Normal  Pulling    5m28s  kubelet, k8s2      pulling image "docker.io/cilium/istio_proxy_debug:1.0.0""#;

/// A Cilium agent's init container that never started (no image ID yet), from a sysdump's pod status:
/// cilium/cilium issue #31385, description (https://github.com/cilium/cilium/issues/31385).
const INIT_CONTAINER_NO_IMAGE: &str = r#"     initContainerStatuses:
 - image: quay.io/cilium/cilium-ci:cacb323c18515702b9a21e025f64c3016cd783ed
   imageID: ""
   lastState: {}
   name: config
   ready: false
   restartCount: 0
   state:
     waiting:
       reason: PodInitializing"#;

/// `kubectl apply` as a node identity, wrapped by the terminal: kubernetes/kubernetes issue #104176,
/// description (https://github.com/kubernetes/kubernetes/issues/104176), with the reporter's bold marks.
const APPLY_FORBIDDEN_WRAPPED: &str = r#"Error from server (Forbidden): error when retrieving current configuration of:
Resource: "rbac.authorization.k8s.io/v1, Resource=clusterroles", GroupVersionKind: "rbac.authorization.k8s.io/v1, Kind=ClusterRole"
Name: "cloud-console-reader", Namespace: ""
from server for: "cloud-console-reader.yaml": clusterroles.rbac.authorization.k8s.io "**cloud-console-reader" is forbidden: User 
"system:node:anth-admin-host1" cannot get resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope**"#;

/// The apiserver's Forbidden body, exactly as its responsewriters write it: kubernetes/kubernetes
/// staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors_test.go, TestForbidden's
/// expected bodies, at commit 083e3f3e0db4c37bf3fb4e6715a9d8d035cab428.
const STATUS_FORBIDDEN_GROUP: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pod.v2 is forbidden: User \"NAME\" cannot get resource \"pod/quota\" in API group \"v2\" in the namespace \"test\"","reason":"Forbidden","details":{"group":"v2","kind":"pod"},"code":403}"#;
const STATUS_FORBIDDEN_CORE: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pod is forbidden: User \"NAME\" cannot get resource \"pod\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"kind":"pod"},"code":403}"#;

/// Cilium pods crash-looping: kubernetes-sigs/cluster-api issue #8984, comment by debjitk, 2023-07-11
/// (https://github.com/kubernetes-sigs/cluster-api/issues/8984), its first five rows.
const GET_PODS_CRASHLOOP: &str = r"pod/cilium-bpgwl                                                          0/1     Init:CrashLoopBackOff   4 (41s ago)   7m41s
pod/cilium-mqdzd                                                          0/1     Init:CrashLoopBackOff   4 (76s ago)   8m7s
pod/cilium-operator-d5f57588-gfdcv                                        1/1     Running                 5 (96s ago)   8m43s
pod/cilium-operator-d5f57588-jd76q                                        0/1     CrashLoopBackOff        4 (76s ago)   8m24s
pod/cilium-q2824                                                          0/1     Init:CrashLoopBackOff   4 (55s ago)   7m54s";

/// `cilium status` with no reachable apiserver (no kubeconfig: client-go's localhost:8080): easzlab/kubeasz
/// issue #1422, description (https://github.com/easzlab/kubeasz/issues/1422), two Errors rows.
const STATUS_APISERVER_REFUSED: &str = r#"Errors:                cilium-operator          cilium-operator          Get "http://localhost:8080/apis/apps/v1/namespaces/kube-system/deployments/cilium-operator": dial tcp 127.0.0.1:8080: connect: connection refused
                   cilium                   cilium                   Get "http://localhost:8080/apis/apps/v1/namespaces/kube-system/daemonsets/cilium": dial tcp 127.0.0.1:8080: connect: connection refused"#;

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
    assert_eq!(
        diagnose(KUBECTL_EXEC_LOOKUP),
        [Finding::NodeNameUnresolvable {
            name: "node-2".into(),
            resolver: "10.0.2.3:53".into(),
            reason: "server misbehaving".into()
        }]
    );
}

#[test]
fn a_status_wait_timeout_names_the_agents_it_could_not_ask() {
    let f = diagnose(STATUS_WAIT_AGENTS_UNREACHABLE);
    let agents: Vec<&Finding> = f.iter().filter(|f| matches!(f, Finding::AgentStatusUnavailable { .. })).collect();
    assert_eq!(
        agents[0],
        &Finding::AgentStatusUnavailable {
            pod: "cilium-4j8vt".into(),
            detail: "error dialing backend: dial tcp 10.240.0.35:10250: i/o timeout".into()
        }
    );
    assert_eq!(agents.len(), 2);
    assert!(!f.iter().any(|f| matches!(f, Finding::ApiserverUnreachable { .. })), "10250 is a kubelet: {f:?}");
    assert_eq!(
        wait_timeout_cause(&f),
        WaitTimeoutCause::AgentStatusUnavailable(vec!["cilium-4j8vt".into(), "cilium-2zptk".into()])
    );
}

#[test]
fn a_per_agent_lookup_failure_is_blamed_on_node_names() {
    // The seed's error as a row of `cilium status`'s Errors table carries it.
    let row = format!("Errors:   cilium   cilium-abcde   unable to retrieve cilium status: {SEED_DNS}");
    let f = diagnose(&row);
    assert!(f.contains(&Finding::AgentStatusUnavailable { pod: "cilium-abcde".into(), detail: SEED_DNS.into() }));
    assert_eq!(wait_timeout_cause(&f), WaitTimeoutCause::UnresolvableNodeNames(vec!["worker-node-2".into()]));
}

#[test]
fn the_seeds_rbac_error_names_the_identity_resource_and_the_kubeconfig_to_use() {
    let expected = Finding::Forbidden {
        user: "system:kube-controller-manager".into(),
        verb: "get".into(),
        resource: "clusterroles".into(),
        api_group: "rbac.authorization.k8s.io".into(),
    };
    assert_eq!(diagnose(&SEED_RBAC.replace('\n', " ")), std::slice::from_ref(&expected));
    assert_eq!(diagnose(SEED_RBAC), std::slice::from_ref(&expected), "wrapped over two lines, as in the seed");
    let text = expected.to_string();
    assert!(text.contains("admin-internal") && text.contains("/root/.kube/config"), "{text}");
    assert_eq!(
        wait_timeout_cause(&[expected]),
        WaitTimeoutCause::Forbidden { user: "system:kube-controller-manager".into() }
    );
}

#[test]
fn a_forbidden_wrapped_after_user_is_read_across_the_line_break() {
    assert_eq!(
        diagnose(APPLY_FORBIDDEN_WRAPPED),
        [Finding::Forbidden {
            user: "system:node:anth-admin-host1".into(),
            verb: "get".into(),
            resource: "clusterroles".into(),
            api_group: "rbac.authorization.k8s.io".into()
        }]
    );
}

#[test]
fn the_apiservers_forbidden_status_is_read_with_its_group() {
    assert_eq!(
        diagnose(STATUS_FORBIDDEN_GROUP),
        [Finding::Forbidden {
            user: "NAME".into(),
            verb: "get".into(),
            resource: "pod/quota".into(),
            api_group: "v2".into()
        }]
    );
    assert_eq!(
        diagnose(STATUS_FORBIDDEN_CORE),
        [Finding::Forbidden {
            user: "NAME".into(),
            verb: "get".into(),
            resource: "pod".into(),
            api_group: "core".into()
        }]
    );
    // As a client prints it after a prefix, as kube's and client-go's errors do.
    assert_eq!(diagnose(&format!("HTTP response body: {STATUS_FORBIDDEN_CORE}")).len(), 1);
}

#[test]
fn a_pull_still_running_names_image_node_and_how_long_and_finished_pulls_are_not_blamed() {
    let f = diagnose(DESCRIBE_EVENTS_PULLING);
    assert_eq!(
        f,
        [Finding::ImageNotPulled {
            image: Some("docker.io/cilium/istio_proxy_debug:1.0.0".into()),
            node: Some("k8s2".into()),
            since: Some("5m28s".into()),
            state: "Pulling".into()
        }]
    );
    let text = f[0].to_string();
    assert!(text.contains("k8s2") && text.contains("5m28s") && text.contains("istio_proxy_debug"), "{text}");
    assert!(f[0].pull_in_flight());
    assert_eq!(
        wait_timeout_cause(&f),
        WaitTimeoutCause::ColdImages(vec!["docker.io/cilium/istio_proxy_debug:1.0.0".into()])
    );
}

/// `kubectl get pods` rows while pulls fail: the STATUS column carries the kubelet's waiting reason
/// (`ErrImagePull`, then `ImagePullBackOff`: kubernetes/kubernetes v1.32.4 pkg/kubelet/images/types.go;
/// `Init:` for an init container, kubectl's printer), here as the reviewer's mirror-without-the-digest case:
/// written by hand to exercise the failing-pull classifier in those columns.
const GET_PODS_PULL_FAILING: &str = "cilium-4xk2p                       0/1     Init:ErrImagePull       0          41s
cilium-operator-5d8b8c6f4-qh2lw    0/1     ImagePullBackOff        0          41s
cilium-envoy-7hx9d                 0/1     ContainerCreating       0          41s";

/// The kubelet's BackOff event, as `kubectl describe pod` prints it: its message is
/// `Back-off pulling image %q` (pkg/kubelet/images/image_manager.go).
const DESCRIBE_EVENT_BACK_OFF: &str =
    r#"  Normal   BackOff    12s (x3 over 40s)  kubelet  Back-off pulling image "quay.io/cilium/cilium:v1.17.4""#;

#[test]
fn a_failing_pull_is_a_failure_not_a_slow_pull_and_outranks_pulls_in_flight() {
    let f = diagnose(GET_PODS_PULL_FAILING);
    assert!(
        matches!(&f[0], Finding::ImagePullFailed { reason, message, .. }
        if reason == "ErrImagePull" && message == "pod cilium-4xk2p"),
        "{f:?}"
    );
    assert!(matches!(&f[1], Finding::ImagePullFailed { reason, .. } if reason == "ImagePullBackOff"), "{f:?}");
    assert_eq!(f[2], Finding::ContainerCreating { pod: Some("cilium-envoy-7hx9d".into()) });
    assert!(!f.iter().any(Finding::pull_in_flight), "{f:?}");
    assert!(matches!(wait_timeout_cause(&f), WaitTimeoutCause::ImagePullFailed(_)));

    let back_off = diagnose(DESCRIBE_EVENT_BACK_OFF);
    assert_eq!(
        back_off,
        [Finding::ImagePullFailed {
            image: Some("quay.io/cilium/cilium:v1.17.4".into()),
            node: None,
            reason: "ImagePullBackOff".into(),
            message: DESCRIBE_EVENT_BACK_OFF.trim().into()
        }],
        "a back-off is not a pull in flight"
    );

    // One failed pull among pulls in flight: the verdict is the failure.
    let mixed = diagnose(&format!("{DESCRIBE_EVENTS_PULLING}\n{DESCRIBE_EVENT_BACK_OFF}"));
    assert!(mixed.iter().any(Finding::pull_in_flight));
    assert_eq!(
        wait_timeout_cause(&mixed),
        WaitTimeoutCause::ImagePullFailed(vec!["quay.io/cilium/cilium:v1.17.4".into()])
    );
    assert!(wait_timeout_cause(&mixed).to_string().contains("waiting longer will not help"));
}

#[test]
fn container_creating_alone_is_not_called_a_pull() {
    let f = diagnose("coredns-6d4b75cb6d-abcde   0/1     ContainerCreating   0          5m");
    assert_eq!(f, [Finding::ContainerCreating { pod: Some("coredns-6d4b75cb6d-abcde".into()) }]);
    assert_eq!(wait_timeout_cause(&f), WaitTimeoutCause::Unknown);
    assert!(f[0].to_string().contains("CNI"), "{}", f[0]);
}

#[test]
fn a_container_status_waiting_on_a_failed_pull_is_a_failure() {
    let status = "     - image: quay.io/cilium/cilium:v1.17.4\n       imageID: \"\"\n       reason: ErrImagePull";
    let f = diagnose(status);
    assert!(
        matches!(&f[0], Finding::ImagePullFailed { image: Some(i), reason, .. }
        if i == "quay.io/cilium/cilium:v1.17.4" && reason == "ErrImagePull"),
        "{f:?}"
    );
    assert!(matches!(wait_timeout_cause(&f), WaitTimeoutCause::ImagePullFailed(_)));
}

#[test]
fn a_container_without_an_image_id_is_waiting_for_its_image() {
    assert_eq!(
        diagnose(INIT_CONTAINER_NO_IMAGE),
        [Finding::ImageNotPulled {
            image: Some("quay.io/cilium/cilium-ci:cacb323c18515702b9a21e025f64c3016cd783ed".into()),
            node: None,
            since: None,
            state: "no image ID".into()
        }]
    );
}

#[test]
fn crash_loops_name_the_pods_and_carry_their_last_lines() {
    let mut f = diagnose(GET_PODS_CRASHLOOP);
    let pods: Vec<&str> = f
        .iter()
        .filter_map(|f| match f {
            Finding::CrashLoop { pod, .. } => Some(pod.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(pods, ["cilium-bpgwl", "cilium-mqdzd", "cilium-operator-d5f57588-jd76q", "cilium-q2824"]);
    assert_eq!(
        f[0],
        Finding::CrashLoop {
            pod: "cilium-bpgwl".into(),
            state: "Init:CrashLoopBackOff".into(),
            restarts: "4".into(),
            last_lines: vec![]
        }
    );
    attach_last_lines(&mut f, "cilium-operator-d5f57588-jd76q", "first\nsecond\n\nthird\n", 2);
    let op = f.iter().find(|x| matches!(x, Finding::CrashLoop { pod, .. } if pod.starts_with("cilium-operator")));
    assert!(op.unwrap().to_string().ends_with("last lines:\n  second\n  third"), "{}", op.unwrap());
    assert!(matches!(wait_timeout_cause(&f), WaitTimeoutCause::CrashLoop(p) if p.len() == 4));
}

/// `cilium status` with a crash-looping agent, built from cilium-cli's own format strings (v0.18.4 and
/// v0.19.7 status/k8s.go: `fmt.Errorf("container %s %s: %s", defaults.AgentContainerName, desc, lastLog)`
/// with desc `is in CrashLoopBackOff` + `, exited with code %d`; status/status.go: `unable to retrieve
/// cilium status: %w`, printed as `%s\t%s\t%s\t%s` under `Errors:`; Status: the canceled wait's error).
fn status_agent_crashing() -> String {
    let row = |header: &str, pod: &str, err: &str| format!("{header}\tcilium\t{pod}\t{STATUS_MARK}{err}");
    [
        "Error: Unable to determine status:  wait canceled, cilium agent container has crashed or was terminated: context canceled".to_string(),
        row("Errors:", "cilium-7x2kq", "container cilium-agent is in CrashLoopBackOff, exited with code 1: level=fatal msg=\"failed to start\""),
        row("", "cilium-zz9rt", "container cilium-agent is in CrashLoopBackOff: try 'kubectl -n kube-system logs -c cilium-agent cilium-zz9rt'"),
        row("", "cilium-b4d5s", "container cilium-agent is not running: try 'kubectl -n kube-system logs -c cilium-agent cilium-b4d5s'"),
    ]
    .join("\n")
}

#[test]
fn a_crash_looping_agent_in_cilium_status_is_a_crash_loop() {
    let f = diagnose(&status_agent_crashing());
    assert!(
        f.contains(&Finding::CrashLoop {
            pod: "cilium-7x2kq".into(),
            state: "CrashLoopBackOff, exited with code 1".into(),
            restarts: String::new(),
            last_lines: vec!["level=fatal msg=\"failed to start\"".into()],
        }),
        "{f:?}"
    );
    assert!(
        f.contains(&Finding::CrashLoop {
            pod: "cilium-zz9rt".into(),
            state: "CrashLoopBackOff".into(),
            restarts: String::new(),
            last_lines: vec![],
        }),
        "{f:?}"
    );
    assert!(f.iter().any(|f| matches!(f, Finding::CrashLoop { pod, .. } if pod == "a cilium agent")), "{f:?}");
    assert!(f.iter().any(|f| matches!(f, Finding::AgentStatusUnavailable { pod, .. } if pod == "cilium-b4d5s")));
    assert!(!f.iter().any(|f| matches!(f, Finding::CrashLoop { pod, .. } if pod == "Errors:" || pod == "cilium")));
    let WaitTimeoutCause::CrashLoop(pods) = wait_timeout_cause(&f) else { panic!("{f:?}") };
    assert!(pods.contains(&"cilium-7x2kq".to_string()), "{pods:?}");
    let text = f.iter().find(|x| matches!(x, Finding::CrashLoop { pod, .. } if pod == "cilium-7x2kq")).unwrap();
    assert!(text.to_string().contains("exited with code 1") && !text.to_string().contains("restarts"), "{text}");
}

#[test]
fn an_unreachable_apiserver_is_named_and_explains_everything_else() {
    let f = diagnose(STATUS_APISERVER_REFUSED);
    assert_eq!(
        f,
        [Finding::ApiserverUnreachable {
            endpoint: "http://localhost:8080".into(),
            reason: "dial tcp 127.0.0.1:8080: connect: connection refused".into()
        }]
    );
    let mut all = diagnose(&format!("{STATUS_APISERVER_REFUSED}\n{SEED_DNS}\n{DESCRIBE_EVENTS_PULLING}"));
    assert_eq!(wait_timeout_cause(&all), WaitTimeoutCause::ApiserverUnreachable("http://localhost:8080".into()));
    all.retain(|f| !matches!(f, Finding::ApiserverUnreachable { .. }));
    assert_eq!(wait_timeout_cause(&all), WaitTimeoutCause::UnresolvableNodeNames(vec!["worker-node-2".into()]));
}

#[test]
fn service_name_lookups_are_not_node_names_and_calm_text_says_nothing() {
    assert!(diagnose("dial tcp: lookup kubernetes.default.svc on 10.32.0.10:53: no such host").is_empty());
    assert_eq!(wait_timeout_cause(&diagnose("all fine")), WaitTimeoutCause::Unknown);
}

/// cilium-cli v0.19.7, vendor/github.com/cilium/cilium/cilium-cli/, transcribed: defaults/defaults.go in
/// `ConnectivityCheckOptionalImagesTest`, cli/connectivity.go's flag, and connectivity/check/deployment.go's
/// `l7lbDeployment` in `deploy`, at the function's top level (no feature or flag guards it).
const V0_19_7_ECHO_DEFAULT: &str =
    r#""ConnectivityTestEchoImage": "gcr.io/k8s-staging-gateway-api/echo-advanced:v20251204-v1.4.1","#;
const V0_19_7_ECHO_FLAG: &str = r#"cmd.Flags().StringVar(&params.EchoImage, "echo-image", defaults.ConnectivityCheckOptionalImagesTest["ConnectivityTestEchoImage"], "Image path to use for echo server")"#;
/// cilium/cilium-cli@v0.19.7:vendor/github.com/cilium/cilium/cilium-cli/connectivity/check/deployment.go, in `deploy`.
const V0_19_7_L7LB: &str = "\t\tl7lbDeployment := newDeploymentWithDNSTestServer(deploymentParameters{\n\t\t\t\
                            Name:  loadbalancerL7DeploymentName,\n\t\t\tKind:  kindL7LBName,\n\t\t\t\
                            Image: ct.params.EchoImage,";

#[test]
fn the_connectivity_echo_image_is_named_as_unpinned_not_as_a_mirror_fault() {
    let [u] = UNPINNED else { panic!("one unpinned image") };
    assert!(V0_19_7_ECHO_DEFAULT.contains(&format!("\"{}\"", u.image)));
    assert!(V0_19_7_ECHO_FLAG.contains("\"echo-image\"") && V0_19_7_L7LB.contains("Image: ct.params.EchoImage"));
    assert!(!u.image.contains("@sha256:"), "no digest is invented");

    let back_off = format!(r#"  Normal   BackOff    12s (x3 over 40s)  kubelet  Back-off pulling image "{}""#, u.image);
    let row = "l7-lb-6c7b8d9f4-x2x9q              0/1     ImagePullBackOff   0          2m";
    let pulling = format!(r#"  Normal   Pulling    2m    kubelet  Pulling image "{}""#, u.image);
    for text in [back_off.as_str(), row, pulling.as_str()] {
        let said = explain(&diagnose(text));
        assert!(
            said.contains("not pinned by kthw")
                && said.contains("cannot be pulled without egress")
                && said.contains("l7-lb"),
            "{text}: {said}"
        );
        assert!(!said.contains("check that the mirror"), "{said}");
        assert!(said.contains("without failing the suite") && said.contains("loadBalancer.l7.backend=envoy"), "{said}");
    }
    // Any other failed pull keeps the mirror advice.
    assert!(explain(&diagnose(DESCRIBE_EVENT_BACK_OFF)).contains("check that the mirror"));
}

/// `kubectl describe pod` events of a warm init container and a cold agent container, in each version set's
/// words: kubernetes/kubernetes@v1.32.4:pkg/kubelet/images/image_manager.go (`Container image %q already present
/// on machine`, `Pulling image %q`, `Successfully pulled image %q in %v (%v including waiting). Image size: %v
/// bytes.`) and staging/src/k8s.io/kubectl/pkg/describe/describe.go (DescribeEvents: Type, Reason, Age, From,
/// Message); at v1.35.0 the first message gains ` and can be accessed by the pod` (KubeletEnsureSecretPulledImages,
/// beta and on by default in pkg/features/kube_features.go) and describe puts the event's
/// `involvedObject.fieldPath` before each message (kubernetes/kubernetes pull 133627). Written by hand to
/// exercise the pull bookkeeping in both forms.
const EVENTS_1_32: &str = r#"  Normal  Pulled     60s   kubelet  Container image "quay.io/cilium/cilium:v1.17.4" already present on machine
  Normal  Pulling    59s   kubelet  Pulling image "quay.io/cilium/cilium-envoy:v1.32.6"
  Normal  Pulling    58s   kubelet  Pulling image "quay.io/cilium/operator-generic:v1.17.4"
  Normal  Pulled     20s   kubelet  Successfully pulled image "quay.io/cilium/operator-generic:v1.17.4" in 38.1s (38.1s including waiting). Image size: 31457280 bytes."#;

#[test]
fn both_present_wordings_and_the_1_35_describe_form_are_read_alike() {
    let events_1_35 = EVENTS_1_32
        .replace("already present on machine", "already present on machine and can be accessed by the pod")
        .replace("v1.17.4", "v1.19.5")
        .replace("kubelet  Container", "kubelet  spec.initContainers{config}: Container")
        .replace("kubelet  Pulling", "kubelet  spec.containers{cilium-envoy}: Pulling")
        .replace("kubelet  Successfully", "kubelet  spec.containers{cilium-operator}: Successfully");
    for (text, version) in [(EVENTS_1_32.to_string(), "1.32"), (events_1_35, "1.35")] {
        let f = diagnose(&text);
        let in_flight: Vec<&Finding> = f.iter().filter(|f| f.pull_in_flight()).collect();
        assert!(
            matches!(in_flight[..], [Finding::ImageNotPulled { image: Some(i), since: Some(s), .. }]
                if i == "quay.io/cilium/cilium-envoy:v1.32.6" && s == "59s"),
            "{version}: only the envoy pull is in flight: {f:?}"
        );
        assert_eq!(f.len(), 1, "{version}: {f:?}");
    }
    let present = |m: &str| image_present(m).map(str::to_string);
    assert_eq!(present(r#"Container image "a:1" already present on machine"#).as_deref(), Some("a:1"));
    assert_eq!(
        present(r#"Container image "a:1" already present on machine and can be accessed by the pod"#).as_deref(),
        Some("a:1")
    );
    assert_eq!(present(r#"Container image "a:1" is not present with pull policy of Never"#), None);
    assert_eq!(present(r#"spec.containers{x}: Container image "a:1" already present on machine"#), None);
}

#[test]
fn a_kubelet_refusing_the_apiserver_is_not_fixed_by_another_kubeconfig() {
    let f = diagnose("error: unable to upgrade connection: Forbidden (user=kubernetes, verb=create, resource=nodes, subresource=proxy)");
    assert_eq!(
        f,
        [Finding::Forbidden {
            user: "kubernetes".into(),
            verb: "create".into(),
            resource: "nodes/proxy".into(),
            api_group: KUBELET_API.into()
        }]
    );
    assert!(f[0].to_string().contains("kubelet-client") && !f[0].to_string().contains("admin-internal"), "{}", f[0]);
    assert_eq!(wait_timeout_cause(&f), WaitTimeoutCause::KubeletRefused { user: "kubernetes".into() });
}
