//! A real registry on the host's loopback, filled by the test itself: Debian's `docker-registry`
//! (distribution) on a free 127.0.0.1 port, and pushes over its HTTP API (distribution docs/spec/api.md:
//! a monolithic blob upload, `POST /v2/<name>/blobs/uploads/` then `PUT <location>?digest=`; a manifest
//! `PUT /v2/<name>/manifests/<reference>` with its media type), so that every manifest is stored byte for byte
//! as built, in every media type a registry serves, which no push tool here does (skopeo converts or refuses).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::oci_layout::OciLayout;

/// Debian's docker-registry serving on a free 127.0.0.1 port, storing under a directory; stopped when dropped.
pub struct Registry {
    child: Child,
    pub port: u16,
}

impl Registry {
    /// Starts one storing under `dir`; `None` (the test skips, saying why) where docker-registry is not
    /// installed, a failure under `CI=true`.
    pub fn start(dir: &Path) -> Option<Registry> {
        kthw::testing::needs(kthw::testing::on_path("docker-registry", "a registry on loopback"))?;
        let port = kthw::virt::free_port().unwrap();
        let config = dir.join("registry.yml");
        let storage = dir.join("registry");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen on 127.0.0.1:{port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(registry)
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes the image or index `top` of `layout` as `repository:tag` (a repository path on this registry):
    /// every blob of the layout, each manifest an index lists (by digest), then `top` by tag. Returns the
    /// digest of `top`, which the registry answers with.
    pub fn push(&self, layout: &OciLayout, repository: &str, tag: &str, top: &Value) -> String {
        let base = format!("http://{}/v2/{repository}", self.host());
        for blob in std::fs::read_dir(layout.blobs()).unwrap() {
            let path = blob.unwrap().path();
            let digest = format!("sha256:{}", path.file_name().unwrap().to_str().unwrap());
            let started = ureq::post(format!("{base}/blobs/uploads/")).send_empty().unwrap();
            let location = started.headers().get("location").expect("an upload location").to_str().unwrap();
            let location = if location.starts_with('/') {
                format!("http://{}{location}", self.host())
            } else {
                location.to_string()
            };
            let sep = if location.contains('?') { '&' } else { '?' };
            ureq::put(format!("{location}{sep}digest={digest}"))
                .header("Content-Type", "application/octet-stream")
                .send(std::fs::read(&path).unwrap().as_slice())
                .unwrap_or_else(|e| panic!("push blob {digest}: {e}"));
        }
        let put_manifest = |desc: &Value, reference: &str| {
            let bytes = layout.read(desc["digest"].as_str().unwrap());
            let answered = ureq::put(format!("{base}/manifests/{reference}"))
                .header("Content-Type", desc["mediaType"].as_str().unwrap())
                .send(bytes.as_slice())
                .unwrap_or_else(|e| panic!("push manifest {reference}: {e}"));
            answered.headers().get("docker-content-digest").unwrap().to_str().unwrap().to_string()
        };
        let top_bytes: Value = serde_json::from_slice(&layout.read(top["digest"].as_str().unwrap())).unwrap();
        for child in top_bytes["manifests"].as_array().into_iter().flatten() {
            put_manifest(child, child["digest"].as_str().unwrap());
        }
        let digest = put_manifest(top, tag);
        assert_eq!(digest, top["digest"].as_str().unwrap(), "the registry keeps the manifest as pushed");
        digest
    }

    /// The digest of `repository:reference` as the registry serves it, whatever its media type.
    pub fn digest_of(&self, repository: &str, reference: &str) -> String {
        let answered = ureq::head(format!("http://{}/v2/{repository}/manifests/{reference}", self.host()))
            .header("Accept", kthw::oci::MEDIA_TYPES.join(", "))
            .call()
            .unwrap_or_else(|e| panic!("HEAD {repository}:{reference}: {e}"));
        answered.headers().get("docker-content-digest").unwrap().to_str().unwrap().to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
