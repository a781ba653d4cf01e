//! A stand-in for the publishers kthw resolves versions from, on 127.0.0.1 (for tests: the real ones are
//! unreachable here, and a test must not depend on them). It serves a directory laid out as upstream's URLs
//! are, the layout a mirror serves ([`crate::artifacts::Mirror::file_url`]: dl.k8s.io's `v1.33.5/...`,
//! GitHub's `<owner>/<repo>/releases/download/...`, helm.cilium.io's `index.yaml` and chart archives), with
//! checksum files this stand-in computes itself in each publisher's form; and, as a registry stand-in, the
//! distribution API's `GET /v2/<name>/manifests/<tag>` for manifests put there. Nothing else is answered:
//! every other path is a 404, as upstream answers for a release that does not exist.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256, Sha512};

use crate::spec::Versions;

/// The stand-in server; it stops when dropped.
pub struct StandIn {
    pub port: u16,
    root: PathBuf,
    stop: Arc<AtomicBool>,
}

impl StandIn {
    /// Serves `root` on a free 127.0.0.1 port.
    pub fn start(root: &Path) -> std::io::Result<StandIn> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, halt) = (root.to_path_buf(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(s) = stream {
                    let dir = dir.clone();
                    std::thread::spawn(move || serve(s, &dir));
                }
            }
        });
        Ok(StandIn { port, root: root.to_path_buf(), stop })
    }

    /// `http://127.0.0.1:<port>`: the mirror URL and registry host to resolve through.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Puts `bytes` where upstream serves `upstream_url` (its path under this server).
    pub fn put(&self, upstream_url: &str, bytes: &[u8]) {
        let after = upstream_url.split_once("://").map_or(upstream_url, |(_, r)| r);
        let path = after.find('/').map_or("", |i| &after[i + 1..]);
        let file = self.root.join(path);
        std::fs::create_dir_all(file.parent().expect("a path under the root")).expect("stand-in directory");
        std::fs::write(file, bytes).expect("stand-in file");
    }

    /// Puts a manifest where the registry stand-in serves `repository:tag`; returns its digest.
    pub fn put_manifest(&self, repository: &str, tag: &str, manifest: &[u8]) -> String {
        self.put(&format!("http://registry/v2/{repository}/manifests/{tag}"), manifest);
        format!("sha256:{}", hex::encode(Sha256::digest(manifest)))
    }

    /// Publishes every release file of `v` as its publisher lays it out, each with the checksum file its
    /// publisher puts beside it in that publisher's form, computed here over stand-in bytes; Cilium's chart
    /// (`values` as its values.yaml) with the Helm repository index naming its digest. Returns the sums of
    /// the linux/amd64 files (the neighbours a shared sums file also lists are left out), by upstream URL.
    pub fn publish(&self, v: &Versions, values: &str) -> Vec<(String, String)> {
        let mut sums = Vec::new();
        let gh =
            |repo: &str, tag: &str, asset: &str| format!("https://github.com/{repo}/releases/download/v{tag}/{asset}");
        let mut file = |url: String, sums_url: String, bare_sha512: bool| {
            let body = format!("stand-in bytes of {url}\n").into_bytes();
            let name = url.rsplit('/').next().expect("a file name").to_string();
            let (sum, text) = if bare_sha512 {
                let hex = hex::encode(Sha512::digest(&body));
                (format!("sha512:{hex}"), hex)
            } else {
                let hex = hex::encode(Sha256::digest(&body));
                (format!("sha256:{hex}"), format!("{hex}  {name}\n"))
            };
            self.put(&url, &body);
            // A sums file for several files (etcd's SHA256SUMS, runc's runc.sha256sum) lists its neighbours too.
            let existing = std::fs::read_to_string(self.root.join(url_path(&sums_url))).unwrap_or_default();
            self.put(&sums_url, format!("{existing}{text}").as_bytes());
            if !url.contains("arm64") {
                sums.push((url, sum));
            }
        };
        for tarball in ["kubernetes-server-linux-amd64.tar.gz", "kubernetes-node-linux-amd64.tar.gz"] {
            let url = format!("https://dl.k8s.io/v{}/{tarball}", v.kubernetes);
            file(url.clone(), format!("{url}.sha512"), true);
        }
        let etcd = |a: &str| gh("etcd-io/etcd", &v.etcd, a);
        file(etcd(&format!("etcd-v{}-linux-arm64.tar.gz", v.etcd)), etcd("SHA256SUMS"), false);
        file(etcd(&format!("etcd-v{}-linux-amd64.tar.gz", v.etcd)), etcd("SHA256SUMS"), false);
        let cli = gh("cilium/cilium-cli", &v.cilium_cli, "cilium-linux-amd64.tar.gz");
        file(cli.clone(), format!("{cli}.sha256sum"), false);
        let containerd =
            gh("containerd/containerd", &v.containerd, &format!("containerd-{}-linux-amd64.tar.gz", v.containerd));
        file(containerd.clone(), format!("{containerd}.sha256sum"), false);
        let runc = |a: &str| gh("opencontainers/runc", &v.runc, a);
        file(runc("runc.arm64"), runc("runc.sha256sum"), false);
        file(runc("runc.amd64"), runc("runc.sha256sum"), false);
        let cni = gh(
            "containernetworking/plugins",
            &v.cni_plugins,
            &format!("cni-plugins-linux-amd64-v{}.tgz", v.cni_plugins),
        );
        file(cni.clone(), format!("{cni}.sha256"), false);
        let chart = chart_archive(values);
        let digest = hex::encode(Sha256::digest(&chart));
        self.put(&format!("https://helm.cilium.io/cilium-{}.tgz", v.cilium), &chart);
        self.put(
            "https://helm.cilium.io/index.yaml",
            format!(
                "apiVersion: v1\nentries:\n  cilium:\n  - name: cilium\n    version: {}\n    digest: {digest}\n    \
                 urls:\n    - cilium-{}.tgz\n",
                v.cilium, v.cilium
            )
            .as_bytes(),
        );
        sums.push((format!("https://helm.cilium.io/cilium-{}.tgz", v.cilium), format!("sha256:{digest}")));
        sums
    }
}

fn url_path(url: &str) -> &str {
    let after = url.split_once("://").map_or(url, |(_, r)| r);
    after.find('/').map_or("", |i| &after[i + 1..])
}

/// A chart archive as Helm packages one: a gzipped tar whose top directory is the chart's name.
pub fn chart_archive(values: &str) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, text) in [("cilium/Chart.yaml", "apiVersion: v2\nname: cilium\n"), ("cilium/values.yaml", values)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, text.as_bytes()).expect("chart entry");
    }
    tar.into_inner().expect("chart tar").finish().expect("chart gzip")
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut stream: TcpStream, root: &Path) {
    let mut reader = BufReader::new(stream.try_clone().expect("a stream clone"));
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap_or("/");
    let file = root.join(path.trim_start_matches('/'));
    let inside = !path.split('/').any(|c| c == "..");
    let response = match std::fs::read(&file) {
        Ok(body) if inside && file.is_file() => {
            let mut headers = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
            if path.starts_with("/v2/") {
                let media = crate::oci::media_type(&body).unwrap_or_default();
                let digest = hex::encode(Sha256::digest(&body));
                headers.push_str(&format!("Content-Type: {media}\r\nDocker-Content-Digest: sha256:{digest}\r\n"));
            }
            [headers.into_bytes(), b"\r\n".to_vec(), body].concat()
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n".to_vec(),
    };
    let _ = stream.write_all(&response);
}
