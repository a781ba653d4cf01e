//! The kubelet's half of a pod, through CRI on containerd's socket, on the containerd the runtimes test just
//! started under its set's rendered config: each kind of image found preloaded by the name a pod spec gives it,
//! a sandbox from the config's sandbox image on the host network and one through a CNI config of Debian's plugins,
//! a container of an image built here run in each, its output and exit status read back, then all of it removed.
//! Requests are api.proto's messages (k8s.io/cri-api v0.32.3, tests/src/cri.rs), filled as the kubelet fills them
//! (pkg/kubelet/kuberuntime kuberuntime_sandbox.go generatePodSandboxConfig, kuberuntime_container.go
//! generateContainerConfig), less what these pods do not use.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kthw::accel::Accel;
use kthw::oci::{self, ImageRef};
use kthw::ssh::Session;
use kthw_tests::cri::{log_directory, Cri};
use kthw_tests::oci_layout::{layer, Format, OciLayout};
use kthw_tests::succeed;
use serde_json::{json, Value};

/// containerd's CRI socket: the default `[grpc] address` of both majors (containerd docs/man/containerd-config.toml.5),
/// which the rendered config leaves as it is.
pub const SOCKET: &str = "/run/containerd/containerd.sock";
/// The subnet the CNI config below hands pod addresses from: inside the spec's pod pool (10.200.0.0/16), above
/// the /24s Cilium's operator would carve for two workers.
const POD_SUBNET: &str = "10.200.99.0/24";
/// Debian's containernetworking-plugins (in the node image: bookworm's 1.1.1) install to /usr/lib/cni.
const DEBIAN_CNI: &str = "/usr/lib/cni";

/// A bridge network in the rendered config's CNI directories (`[plugins."io.containerd.grpc.v1.cri".cni]` bin_dir
/// /opt/cni/bin, conf_dir /etc/cni/net.d, as the workers phase renders them), standing where Cilium's config goes
/// on a cluster: Debian's bridge, host-local and loopback plugins (containerd's CRI sets up each pod's lo with
/// `loopback` from bin_dir itself, go-cni WithLoNetwork). Written before containerd starts, so its CRI plugin
/// finds a network at once. cniVersion 0.4.0: what plugins 1.1.1 and containerd 1.7's libcni both speak.
pub async fn cni_config(worker: &Session) {
    let conflist = json!({
        "cniVersion": "0.4.0", "name": "kthw-cri",
        "plugins": [{
            "type": "bridge", "bridge": "kthw-cri0", "isGateway": true, "ipMasq": false,
            "ipam": { "type": "host-local", "ranges": [[{ "subnet": POD_SUBNET }]], "routes": [{ "dst": "0.0.0.0/0" }] },
        }],
    });
    succeed(
        worker,
        // The node image links Debian's plugins into /opt/cni/bin already (images/debian/customize.sh); this
        // asserts they are there, resolving to Debian's.
        &format!(
            "for p in bridge host-local loopback; do test \"$(readlink -f /opt/cni/bin/$p)\" = {DEBIAN_CNI}/$p || \
             {{ echo \"/opt/cni/bin/$p is not Debian's\" >&2; exit 1; }}; done; mkdir -p /etc/cni/net.d"
        ),
    )
    .await;
    worker.upload_bytes(conflist.to_string().as_bytes(), "/etc/cni/net.d/10-kthw-cri.conflist", 0o644).await.unwrap();
}

/// `archive` copied to the worker and imported as the workers phase imports images, from scratch (names an earlier
/// major imported are removed first, so each major's import is what is checked).
pub async fn preload(worker: &Session, ctr: &str, archive: &Path) -> ImageRef {
    let images = oci::read_archive(archive).unwrap();
    let remote = format!("/var/lib/kthw/images/{}", archive.file_name().unwrap().to_str().unwrap());
    worker.upload(archive, &remote, 0o644).await.unwrap();
    succeed(worker, &format!("{ctr} -n k8s.io images rm {} >/dev/null 2>&1 || true", images[0].names().join(" ")))
        .await;
    oci::import(worker, ctr, Path::new(&remote), &images).await.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    images.into_iter().next().unwrap()
}

/// The kinds of image a registry serves (as the images test pushes them), each holding the host's static busybox,
/// as archives under `dir`: an OCI index with an attestation manifest, a Docker v2 manifest list, a single Docker
/// v2 manifest. The fourth kind, a single OCI manifest, is the sandbox image.
fn busybox_archives(dir: &Path) -> Vec<PathBuf> {
    type Build<'a> = &'a dyn Fn(&OciLayout) -> Value;
    let busybox = layer(dir, &[("bin/busybox", Path::new("/bin/busybox"))]);
    let kinds: [(&str, Build); 3] = [
        ("kthw.test/busybox-oci-index:1", &|l| {
            let amd64 = l.image_as(Format::Oci, "amd64", &busybox);
            let attestation = l.attestation(&amd64);
            l.index_as(Format::Oci, &[amd64, attestation])
        }),
        ("kthw.test/busybox-docker-list:1", &|l| {
            l.index_as(Format::Docker, &[l.image_as(Format::Docker, "amd64", &busybox)])
        }),
        ("kthw.test/busybox-docker-manifest:1", &|l| l.image_as(Format::Docker, "amd64", &busybox)),
    ];
    kinds
        .iter()
        .map(|(name, build)| {
            let slug = name.replace(['/', ':'], "-");
            let layout = OciLayout::new(dir.join(format!("layout-{slug}")));
            let archive = dir.join(format!("{slug}.oci.tar"));
            layout.archive(build(&layout), name, &archive);
            archive
        })
        .collect()
}

/// The whole pod path on `worker`'s running containerd; `pause` is the sandbox image the config names, already
/// imported. `major` is for messages.
pub async fn kubelets_half_of_a_pod(
    worker: &Session,
    ctr: &str,
    pause: &ImageRef,
    api_deb: &Path,
    major: &str,
    accel: Accel,
) {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut images = vec![pause.clone()];
    for archive in busybox_archives(dir.path()) {
        images.push(preload(worker, ctr, &archive).await);
    }
    let Some(cri) = Cri::connect(worker, SOCKET, api_deb).await else { return };
    let call = Duration::from_secs(30);
    let version = cri.ok("Version", json!({}), call).await;
    assert_eq!(version["runtime_api_version"], "v1", "{version}");
    assert!(version["runtime_version"].as_str().is_some_and(|v| v.starts_with(major)), "{version}");

    // Every image by `repository:tag@sha256:<digest>`, the name a pod spec (Cilium's chart) gives it.
    let mut ids = Vec::new();
    for image in &images {
        let by_pod_spec = format!("{}@{}", image.reference, image.digest);
        let found =
            cri.preloaded(worker, ctr, &by_pod_spec).await.unwrap_or_else(|e| panic!("containerd {major}x: {e}"));
        ids.push(found["id"].as_str().unwrap().to_string());
    }
    // The defect the helper exists for: the digest of one platform's manifest instead of the index's misses, and
    // says so with the names containerd holds.
    let index = &images[1];
    let layout = OciLayout::new(dir.path().join("layout-kthw.test-busybox-oci-index-1"));
    let platform = serde_json::from_slice::<Value>(&layout.read(&index.digest)).unwrap()["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong = format!("{}@{platform}", index.reference);
    let e = cri.preloaded(worker, ctr, &wrong).await.expect_err("a platform manifest's digest is not the index's");
    assert!(e.contains(&wrong) && e.contains(&index.digested()), "{e}");

    // A sandbox on the node's network, and one through the CNI config, each running a container.
    let host = run_pod(&cri, worker, "kthw-hostnet", true, &ids[1], "echo kthw-cri-says-hello; exit 3", accel).await;
    assert_eq!(host.exit_code, 3, "{host:?}");
    assert!(host.log.lines().any(|l| l.ends_with(" stdout F kthw-cri-says-hello")), "{host:?}");
    let pod = run_pod(&cri, worker, "kthw-cni", false, &ids[2], "/bin/busybox ip -o -4 addr show eth0", accel).await;
    let ip = pod.ip.clone().expect("a pod on the CNI network has an address");
    assert!(ip.starts_with("10.200.99."), "host-local hands out {POD_SUBNET}: {pod:?}");
    assert!(
        pod.exit_code == 0 && pod.log.contains(&format!("inet {ip}/24")),
        "the container sees its address: {pod:?}"
    );

    for p in [&host, &pod] {
        cri.ok("RemoveContainer", json!({ "container_id": p.container }), call).await;
        cri.ok("StopPodSandbox", json!({ "pod_sandbox_id": p.sandbox }), call).await;
        cri.ok("RemovePodSandbox", json!({ "pod_sandbox_id": p.sandbox }), call).await;
    }
    let sandboxes = cri.ok("ListPodSandbox", json!({}), call).await;
    let containers = cri.ok("ListContainers", json!({}), call).await;
    assert!(
        sandboxes["items"].as_array().is_some_and(Vec::is_empty)
            && containers["containers"].as_array().is_some_and(Vec::is_empty),
        "left: {sandboxes} {containers}"
    );
    eprintln!(
        "containerd {major}x through CRI ({}): {} images found by digest, pods on the host and at {ip}, removed, in {:.1?}",
        version["runtime_version"].as_str().unwrap(),
        images.len(),
        started.elapsed()
    );
}

/// What one pod left to read back.
#[derive(Debug)]
struct Pod {
    sandbox: String,
    container: String,
    ip: Option<String>,
    exit_code: i64,
    log: String,
}

/// RunPodSandbox `name` (on the node's network or through CNI), then CreateContainer/StartContainer of `image`
/// (an image id, as the kubelet passes the one ImageStatus gave) running `script` under busybox sh, until it exits.
async fn run_pod(
    cri: &Cri,
    worker: &Session,
    name: &str,
    host_network: bool,
    image: &str,
    script: &str,
    accel: Accel,
) -> Pod {
    let call = accel.scale(Duration::from_secs(60));
    let logs = log_directory(name).display().to_string();
    // The kubelet makes the pod's log directory before RunPodSandbox (kuberuntime_sandbox.go createPodSandbox).
    succeed(worker, &format!("mkdir -p {logs}")).await;
    // NamespaceMode NODE is hostNetwork: true (api.proto NamespaceOption.network); POD, the default, goes through CNI.
    // The cgroup parent is a systemd slice, as the rendered config's SystemdCgroup = true wants (containerd
    // getCgroupsPath: a parent ending in .slice makes "slice:cri-containerd:id").
    let network = if host_network { "NODE" } else { "POD" };
    let mut sandbox_config = json!({
        "metadata": { "name": name, "uid": format!("{name}-uid"), "namespace": "default", "attempt": 0 },
        "log_directory": logs,
        "linux": { "cgroup_parent": "kthw.slice", "security_context": { "namespace_options": { "network": network } } },
    });
    // The kubelet names a pod's host only when it has a network of its own (kubernetes v1.32
    // pkg/kubelet/kuberuntime/kuberuntime_sandbox.go generatePodSandboxConfig: `if !IsHostNetworkPod(pod)`):
    // containerd sets whatever hostname it is given (sandbox_run_linux.go oci.WithHostname) and, on the node's
    // network, shares the node's UTS namespace, where runc refuses to set one ("unable to set hostname without
    // a private UTS namespace", the first run's failure).
    if !host_network {
        sandbox_config["hostname"] = json!(name);
    }
    let sandbox = cri.ok("RunPodSandbox", json!({ "config": sandbox_config }), call).await["pod_sandbox_id"]
        .as_str()
        .unwrap()
        .to_string();
    let status = cri.ok("PodSandboxStatus", json!({ "pod_sandbox_id": sandbox }), call).await;
    assert_eq!(status["status"]["state"], "SANDBOX_READY", "{status}");
    let ip = status["status"]["network"]["ip"].as_str().filter(|ip| !ip.is_empty()).map(str::to_string);
    let config = json!({
        "metadata": { "name": "busybox", "attempt": 0 }, "image": { "image": image },
        "command": ["/bin/busybox", "sh", "-c", script], "log_path": "busybox/0.log",
    });
    succeed(worker, &format!("mkdir -p {logs}/busybox")).await;
    let create = json!({ "pod_sandbox_id": sandbox, "config": config, "sandbox_config": sandbox_config });
    let container = cri.ok("CreateContainer", create, call).await["container_id"].as_str().unwrap().to_string();
    cri.ok("StartContainer", json!({ "container_id": container }), call).await;
    let deadline = Instant::now() + call;
    let status = loop {
        let status = cri.ok("ContainerStatus", json!({ "container_id": container }), call).await;
        if status["status"]["state"] == "CONTAINER_EXITED" {
            break status;
        }
        assert!(Instant::now() < deadline, "{name}'s container did not exit within {call:?}: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let exit_code = status["status"]["exit_code"].as_i64().unwrap_or_else(|| panic!("no exit code: {status}"));
    let log_path = status["status"]["log_path"].as_str().unwrap();
    let log = succeed(worker, &format!("cat {log_path}")).await;
    Pod { sandbox, container, ip, exit_code, log }
}
