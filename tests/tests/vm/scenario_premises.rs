//! What the scenarios stand on, below the tier that needs upstream artifacts, on real nodes here:
//! - dns-node-names: with no node names in /etc/hosts, the control plane's stub resolver (systemd-resolved at
//!   127.0.0.53, which Go programs such as kube-apiserver ask directly) gives no address for a worker's
//!   single-label name, and refuses in a way Go reports as "server misbehaving"; with the names written into
//!   /etc/hosts, they resolve from the file (as Go's resolver reads it first). (With Debian's default LLMNR it answered anyway: the image turns LLMNR off, as the seed's
//!   Ubuntu nodes had it.)
//! - cold-image-wait: the registry mirror on control-plane-1 (the node image's docker-registry, filled from
//!   the host through an SSH forward), behind its rate limit, serves a worker's containerd through
//!   `hosts.toml`, a multi-arch image by its index digest, and the bytes went through the shaper.

use std::time::{Duration, Instant};

use kthw::bootstrap::cilium_install::CLUSTER_NIC;
use kthw::bootstrap::configs::REGISTRY_HOSTS_DIR;
use kthw::bootstrap::Layout;
use kthw::cluster::Cluster;
use kthw::ssh::Session;
use kthw_scenarios::cold_image::{serve_mirror, use_mirror};
use kthw_tests::oci_layout::multi_arch_archive;
use kthw_tests::succeed;

/// What the stub says about `name` when asked over DNS, as Go's resolver asks (busybox's nslookup sends the
/// A and AAAA queries to 127.0.0.53): the addresses it answered, and the response codes of its refusals.
async fn ask_stub(cp: &Session, name: &str) -> (Vec<String>, Vec<String>, String) {
    let out = cp.exec(&format!("busybox nslookup {name} 127.0.0.53"), Duration::from_secs(30)).await.unwrap();
    let text = format!("{}{}", out.stdout_lossy(), out.stderr_lossy());
    let addresses = text
        .lines()
        .skip_while(|l| !l.starts_with("Name:"))
        .filter_map(|l| l.strip_prefix("Address:").map(|a| a.trim().to_string()))
        .collect();
    let codes = text
        .lines()
        .filter_map(|l| l.rsplit_once(": ").filter(|_| l.contains("can't find")).map(|(_, c)| c.to_string()))
        .collect();
    (addresses, codes, text)
}

pub async fn single_label_node_names_resolve_only_from_etc_hosts(cluster: &Cluster, cp: &Session) {
    let worker = cluster.spec().workers().next().expect("a worker").clone();
    let protocols = succeed(cp, "resolvectl status | grep -m1 Protocols").await;
    assert!(protocols.contains("-LLMNR") && protocols.contains("-mDNS"), "no multicast name resolution: {protocols}");

    succeed(cp, "cp /etc/hosts /etc/hosts.kthw-test && printf '127.0.0.1\\tlocalhost\\n' > /etc/hosts").await;
    let (addresses, codes, said) = ask_stub(cp, &worker.name).await;
    eprintln!("without node names, the stub on control-plane-1 says of {}: {codes:?}\n{said}", worker.name);
    assert!(addresses.is_empty(), "127.0.0.53 resolved {} with no /etc/hosts entry:\n{said}", worker.name);
    // Go's resolver (net/dnsclient_unix.go, checkHeader) calls every response code but success and NXDOMAIN
    // "server misbehaving": the seed's message. NXDOMAIN would read "no such host".
    assert!(
        !codes.is_empty() && codes.iter().all(|c| c == "SERVFAIL" || c == "REFUSED"),
        "the stub's refusal is not what Go reports as server misbehaving: {codes:?}\n{said}"
    );
    let getent = cp.exec(&format!("getent hosts {}", worker.name), Duration::from_secs(30)).await.unwrap();
    assert!(!getent.success(), "getent resolved it: {}", getent.stdout_lossy());

    // With the names written in, they resolve from the file: glibc's `files` source, and Go's resolver, which
    // reads /etc/hosts itself before it asks any server (net/conf.go, hostLookupFilesDNS). The stub itself
    // still refuses single-label names over DNS (seen here: REFUSED with the entry present), which is why
    // the fix is the file and not the resolver.
    let hosts = kthw::identity::hosts_file(cluster.spec(), "control-plane-1");
    succeed(cp, &format!("printf '%s' {} > /etc/hosts", kthw::ssh::shell_quote(&hosts))).await;
    let found = succeed(cp, &format!("getent hosts {}", worker.name)).await;
    assert_eq!(found.split_whitespace().next(), Some(worker.address.to_string().as_str()), "{found}");
    let (_, codes, _) = ask_stub(cp, &worker.name).await;
    eprintln!("with /etc/hosts, getent finds {found:?}; the stub over DNS says {codes:?}");
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
