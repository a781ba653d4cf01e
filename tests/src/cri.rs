//! A CRI client: what the kubelet says to containerd, said by the host through the node's CRI socket.
//!
//! No Rust gRPC stack (the `k8s-cri` crate needs tonic, prost-build and protoc at build time, minutes on CI's two
//! cores): Debian's python3 with python3-grpcio and python3-protobuf runs `cri.py`, and protoc generates its message
//! classes at test time from the CRI's own api.proto, as Debian ships it in golang-github-kubernetes-cri-api-dev.
//! Debian trixie's is 0.32.3 (k8s.io/cri-api v0.32.3, Kubernetes 1.32.3: the seed set's minor; bookworm has none,
//! sid also has golang-k8s-cri-api-dev 0.36.4). `runtime.v1` is the only CRI version containerd 1.7 and 2.x
//! serve, and fields only ever get added to it, so one api.proto speaks to both majors. The host reaches the socket
//! through an SSH forward to 127.0.0.1 ([`Session::forward_local_unix`]), never the node's address.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kthw::ssh::{Session, Tunnel};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Mutex;

use crate::succeed;

/// Debian's python3, which python3-grpcio and python3-protobuf are built for (a pyenv's python3 earlier on PATH
/// has neither).
const PYTHON: &str = "/usr/bin/python3";
/// Where golang-github-kubernetes-cri-api-dev puts the CRI v1 api.proto.
const API_PROTO: &str = "usr/share/gocode/src/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto";
/// The Debian suite and package the api.proto comes from (module comment).
pub const API_SUITE: &str = "trixie";
pub const API_PACKAGE: &str = "golang-github-kubernetes-cri-api-dev";

/// A running CRI client, connected to one node's containerd.
pub struct Cri {
    node: String,
    io: Mutex<(ChildStdin, Lines<BufReader<ChildStdout>>)>,
    _child: Child,
    _tunnel: Tunnel,
    _dir: tempfile::TempDir,
}

/// The CRI api.proto of `deb` as protoc for Python takes it: the same file less its gogoproto import and file
/// options, which only steer Go code generation (gogo/protobuf gogoproto/gogo.proto: "extensions for the Go
/// generator") and would need gogo's own .proto beside it.
pub fn python_api_proto(proto: &str) -> String {
    proto
        .lines()
        .filter(|l| !l.starts_with("import \"github.com/gogo/") && !l.starts_with("option (gogoproto."))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// What the host lacks to run the client, or Ok.
fn host_has_client() -> Result<(), String> {
    let python = Command::new(PYTHON).args(["-c", "import grpc, google.protobuf"]).output();
    if !python.is_ok_and(|o| o.status.success()) {
        return Err(format!(
            "{PYTHON} cannot import grpc and google.protobuf (apt-get install python3-grpcio python3-protobuf)"
        ));
    }
    kthw::testing::on_path("protoc", "the CRI client's message classes (protobuf-compiler)")
}

impl Cri {
    /// A client of the CRI at `socket` on `node`, message classes generated from `api_deb`; None (the test skips,
    /// saying why; a failure under CI) where the host lacks Python's gRPC or protoc.
    pub async fn connect(node: &Session, socket: &str, api_deb: &Path) -> Option<Cri> {
        kthw::testing::needs(host_has_client().map_err(|why| format!("a CRI client on the host: {why}")))?;
        let dir = tempfile::tempdir().unwrap();
        let unpacked = dir.path().join("deb");
        let out = Command::new("dpkg-deb").arg("-x").arg(api_deb).arg(&unpacked).output().unwrap();
        assert!(out.status.success(), "dpkg-deb -x {}: {}", api_deb.display(), String::from_utf8_lossy(&out.stderr));
        let proto = std::fs::read_to_string(unpacked.join(API_PROTO)).unwrap();
        std::fs::write(dir.path().join("api.proto"), python_api_proto(&proto)).unwrap();
        let out = Command::new("protoc")
            .arg("-I")
            .arg(dir.path())
            .arg("--python_out")
            .arg(dir.path())
            .arg(dir.path().join("api.proto"))
            .output()
            .unwrap();
        assert!(out.status.success(), "protoc --python_out: {}", String::from_utf8_lossy(&out.stderr));
        let script = dir.path().join("cri.py");
        std::fs::write(&script, include_str!("cri.py")).unwrap();

        let tunnel = node.forward_local_unix(socket).await.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
        let mut child = tokio::process::Command::new(PYTHON)
            .arg(&script)
            .arg(tunnel.local.to_string())
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Some(Cri {
            node: node.node().to_string(),
            io: Mutex::new((stdin, lines)),
            _child: child,
            _tunnel: tunnel,
            _dir: dir,
        })
    }

    /// `method` of RuntimeService or ImageService with `request` (api.proto's message as JSON, field names as in the
    /// proto); the response, or the gRPC status code and message.
    pub async fn call(&self, method: &str, request: Value, deadline: Duration) -> Result<Value, String> {
        let mut io = self.io.lock().await;
        let ask = json!({ "method": method, "request": request, "timeout_s": deadline.as_secs_f64() });
        io.0.write_all(format!("{ask}\n").as_bytes()).await.unwrap();
        let line = io.1.next_line().await.unwrap().unwrap_or_else(|| panic!("the CRI client ended during {method}"));
        let answer: Value = serde_json::from_str(&line).unwrap();
        match answer.get("ok") {
            Some(ok) => Ok(ok.clone()),
            None => Err(format!("{method} on {}: {}", self.node, answer["error"].as_str().unwrap_or(&line))),
        }
    }

    /// [`Cri::call`] that must succeed.
    pub async fn ok(&self, method: &str, request: Value, deadline: Duration) -> Value {
        self.call(method, request, deadline).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// The image `reference` names, as the kubelet finds it before deciding to pull (`ImageStatus`; with
    /// `imagePullPolicy: IfNotPresent`, an image found is not pulled): its `Image` message. Err names the reference
    /// and every name containerd holds in the k8s.io namespace (`ctr images ls -q`), for the reader to see why
    /// (a name by tag only, the digest of a single platform's manifest instead of the index's).
    pub async fn preloaded(&self, node: &Session, ctr: &str, reference: &str) -> Result<Value, String> {
        let status =
            self.call("ImageStatus", json!({ "image": { "image": reference } }), Duration::from_secs(30)).await?;
        // api.proto ImageStatusResponse: "Status of the image", unset when the runtime does not have it.
        match status.get("image") {
            Some(image) => Ok(image.clone()),
            None => {
                let held = succeed(node, &format!("{ctr} -n k8s.io images ls -q")).await;
                Err(format!(
                    "{reference} is not preloaded the way the kubelet asks for it: ImageStatus on {} finds no image, \
                     so the kubelet would pull it; containerd holds:\n{held}",
                    self.node
                ))
            }
        }
    }
}

/// Where a sandbox's log directory is for a pod named `name` (the kubelet's /var/log/pods/NS_NAME_UID).
pub fn log_directory(name: &str) -> PathBuf {
    PathBuf::from(format!("/var/log/pods/default_{name}_{name}-uid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_go_generators_lines_leave_the_proto() {
        // The head of kubernetes/cri-api@v0.32.3:pkg/apis/runtime/v1/api.proto (Debian trixie's
        // golang-github-kubernetes-cri-api-dev 0.32.3-1), its licence header and three of its gogoproto options cut.
        let head = "syntax = \"proto3\";\n\npackage runtime.v1;\noption go_package = \"k8s.io/cri-api/pkg/apis/runtime/v1\";\n\n\
                    import \"github.com/gogo/protobuf/gogoproto/gogo.proto\";\n\noption (gogoproto.goproto_stringer_all) = false;\n\
                    option (gogoproto.unmarshaler_all) = true;\n\nservice RuntimeService {\n";
        assert_eq!(
            python_api_proto(head),
            "syntax = \"proto3\";\n\npackage runtime.v1;\noption go_package = \"k8s.io/cri-api/pkg/apis/runtime/v1\";\n\n\n\nservice RuntimeService {\n"
        );
    }
}
