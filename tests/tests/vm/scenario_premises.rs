//! What the scenarios stand on, below the tier that needs upstream artifacts, on real nodes here:
//! - dns-node-names: with no node names in /etc/hosts, the control plane's stub resolver (systemd-resolved at
//!   127.0.0.53, which Go programs such as kube-apiserver ask directly) gives no address for a worker's
//!   single-label name, and refuses in a way Go reports as "server misbehaving"; with the names written into
//!   /etc/hosts, they resolve from the file (as Go's resolver reads it first). (With Debian's default LLMNR it answered anyway: the image turns LLMNR off, as the seed's
//!   Ubuntu nodes had it.)

use std::time::Duration;

use kthw::cluster::Cluster;
use kthw::ssh::Session;
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
