//! What the scenarios stand on, below the tier that needs upstream artifacts, on real nodes here:
//! - dns-node-names: with no node names in /etc/hosts, the control plane's stub resolver (systemd-resolved at
//!   127.0.0.53, which Go programs such as kube-apiserver ask directly) gives no address for a worker's
//!   single-label name; with the names written in, it does.
//! - cold-image-wait: the registry mirror on control-plane-1 (the node image's docker-registry, filled from
//!   the host through an SSH forward), behind its rate limit, serves a worker's containerd through
//!   `hosts.toml`, a multi-arch image by its index digest, and the bytes went through the shaper.

use std::time::Instant;

use kthw::bootstrap::cilium_install::CLUSTER_NIC;
use kthw::bootstrap::configs::REGISTRY_HOSTS_DIR;
use kthw::bootstrap::Layout;
use kthw::cluster::Cluster;
use kthw::ssh::Session;
use kthw_scenarios::cold_image::{serve_mirror, use_mirror};
use kthw_tests::oci_layout::multi_arch_archive;
use kthw_tests::succeed;

/// The stub's answer for `name`: busybox's nslookup asks 127.0.0.53 over DNS, as Go's resolver does.
async fn ask_stub(cp: &Session, name: &str) -> (bool, String) {
    let out =
        cp.exec(&format!("busybox nslookup {name} 127.0.0.53"), std::time::Duration::from_secs(30)).await.unwrap();
    let text = format!("{}{}", out.stdout_lossy(), out.stderr_lossy());
    let answered = out.success() && text.lines().skip_while(|l| !l.contains("Name:")).any(|l| l.contains("Address"));
    (answered, text)
}

pub async fn single_label_node_names_resolve_only_from_etc_hosts(cluster: &Cluster, cp: &Session) {
    let worker = cluster.spec().workers().next().expect("a worker").clone();
    let llmnr = succeed(cp, "resolvectl status 2>&1 | grep -m1 -i llmnr || true").await;
    eprintln!("control-plane-1's resolver: {llmnr}");

    succeed(cp, "cp /etc/hosts /etc/hosts.kthw-test && printf '127.0.0.1\\tlocalhost\\n' > /etc/hosts").await;
    let (answered, said) = ask_stub(cp, &worker.name).await;
    eprintln!("without node names, the stub on {worker} says:\n{said}", worker = worker.name);
    assert!(
        !answered,
        "127.0.0.53 resolved {} with no /etc/hosts entry: the dns-node-names premise fails\n{said}",
        worker.name
    );
    let getent = cp.exec(&format!("getent hosts {}", worker.name), std::time::Duration::from_secs(30)).await.unwrap();
    assert!(!getent.success(), "getent resolved it: {}", getent.stdout_lossy());

    let hosts = kthw::identity::hosts_file(cluster.spec(), "control-plane-1");
    succeed(cp, &format!("printf '%s' {} > /etc/hosts", kthw::ssh::shell_quote(&hosts))).await;
    let (answered, said) = ask_stub(cp, &worker.name).await;
    assert!(answered && said.contains(&worker.address.to_string()), "with /etc/hosts the stub answers:\n{said}");
    succeed(cp, "mv /etc/hosts.kthw-test /etc/hosts").await;
}

pub async fn the_cold_image_mirror_serves_workers_through_its_rate_limit(
    cluster: &Cluster,
    cp: &Session,
    worker: &Session,
) {
    let dir = tempfile::tempdir().unwrap();
    let (archive, index) = multi_arch_archive(dir.path(), "quay.io/kthw-test/busybox:1");
    let rate = 8;
    let mirror = serve_mirror(cluster, &[(archive, "quay.io/kthw-test/busybox:1".to_string())], rate)
        .await
        .unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    assert_eq!(mirror.registries, ["quay.io"]);
    use_mirror(cluster, &mirror.registries).await.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));

    // Pulled as the kubelet asks for a chart's image: by its index digest, through the hosts directory.
    let digested = format!("quay.io/kthw-test/busybox@{index}");
    let ctr = Layout::default().ctr();
    let started = Instant::now();
    succeed(worker, &format!("{ctr} -n k8s.io images pull --hosts-dir {REGISTRY_HOSTS_DIR} {digested}")).await;
    let took = started.elapsed();
    let ran =
        succeed(worker, &format!("{ctr} -n k8s.io run --rm {digested} kthw-mirror /bin/busybox echo from-the-mirror"))
            .await;
    assert_eq!(ran, "from-the-mirror");

    let stats = succeed(cp, &format!("tc -s qdisc show dev {CLUSTER_NIC}")).await;
    let sent: u64 = stats
        .split_whitespace()
        .skip_while(|w| *w != "Sent")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Sent counter in:\n{stats}"));
    let layer = std::fs::metadata("/bin/busybox").unwrap().len();
    eprintln!(
        "a {:.1} MiB pull through the {rate} Mbit/s mirror took {:.1} s; the shaper passed {:.1} MiB",
        layer as f64 / 1048576.0,
        took.as_secs_f64(),
        sent as f64 / 1048576.0
    );
    assert!(stats.contains(&format!("rate {rate}Mbit")), "{stats}");
    assert!(
        sent >= layer / 2,
        "the image's bytes did not go through the tbf qdisc (the layer is gzip-free, {layer} bytes):\n{stats}"
    );
    succeed(cp, &format!("tc qdisc del dev {CLUSTER_NIC} root && systemctl stop docker-registry")).await;
}
