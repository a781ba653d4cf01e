//! OCI image archives made by tests, as `skopeo copy ... oci-archive:FILE:NAME` writes them: an image layout
//! (blobs by sha256, index.json naming one image, oci-layout) in a tar. For images this host cannot
//! download, and for images no registry has.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// The media types of one image format's index, manifest, config and layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// image-spec: layers uncompressed (`...layer.v1.tar`).
    Oci,
    /// distribution docs/spec/manifest-v2-2.md: layers gzip-compressed (`...rootfs.diff.tar.gzip`).
    Docker,
}

impl Format {
    fn types(self) -> [&'static str; 4] {
        match self {
            Format::Oci => [INDEX, MANIFEST, CONFIG, LAYER],
            Format::Docker => [
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ],
        }
    }
}

/// An image layout being written under a directory.
pub struct OciLayout {
    root: PathBuf,
}

impl OciLayout {
    pub fn new(root: PathBuf) -> OciLayout {
        std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        OciLayout { root }
    }

    /// Stores `bytes` as a blob; its descriptor.
    pub fn blob(&self, bytes: &[u8], media_type: &str) -> Value {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(self.root.join("blobs/sha256").join(&hex), bytes).unwrap();
        json!({ "mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len() })
    }

    /// A linux/`arch` image of one uncompressed layer; the descriptor of its manifest, with its platform.
    pub fn image(&self, arch: &str, layer: &[u8]) -> Value {
        self.image_as(Format::Oci, arch, layer)
    }

    /// A linux/`arch` image of one layer (the tar `layer`) in `format`; its manifest's descriptor.
    pub fn image_as(&self, format: Format, arch: &str, layer: &[u8]) -> Value {
        self.image_running(format, arch, layer, &[])
    }

    /// Like [`OciLayout::image_as`], with `entrypoint` as the config's `Entrypoint` (image-spec config.md), what a
    /// runtime runs when nobody names a command: how containerd starts a pod's sandbox from the pause image.
    pub fn image_running(&self, format: Format, arch: &str, layer: &[u8], entrypoint: &[&str]) -> Value {
        let [_, manifest_type, config_type, layer_type] = format.types();
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(layer)));
        let layer = match format {
            Format::Oci => self.blob(layer, layer_type),
            Format::Docker => {
                use std::io::Write;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(layer).unwrap();
                self.blob(&gz.finish().unwrap(), layer_type)
            }
        };
        let config = json!({
            "architecture": arch, "os": "linux",
            "config": if entrypoint.is_empty() { json!({}) } else { json!({ "Entrypoint": entrypoint }) },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        });
        let config = self.blob(config.to_string().as_bytes(), config_type);
        let manifest = json!({ "schemaVersion": 2, "mediaType": manifest_type, "config": config, "layers": [layer] });
        let mut desc = self.blob(manifest.to_string().as_bytes(), manifest_type);
        desc["platform"] = json!({ "architecture": arch, "os": "linux" });
        desc
    }

    /// An attestation manifest for the image `subject` describes, as BuildKit pushes one beside each image:
    /// platform unknown/unknown, an in-toto layer, and the annotations that tie it to its image
    /// (moby/buildkit docs/attestations/attestation-storage.md).
    pub fn attestation(&self, subject: &Value) -> Value {
        let statement =
            json!({ "_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://spdx.dev/Document" });
        let layer = self.blob(statement.to_string().as_bytes(), "application/vnd.in-toto+json");
        let config = self.blob(b"{}", CONFIG);
        let manifest = json!({ "schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": [layer] });
        let mut desc = self.blob(manifest.to_string().as_bytes(), MANIFEST);
        desc["platform"] = json!({ "architecture": "unknown", "os": "unknown" });
        desc["annotations"] = json!({
            "vnd.docker.reference.digest": subject["digest"],
            "vnd.docker.reference.type": "attestation-manifest",
        });
        desc
    }

    /// An image index of `manifests`; its descriptor.
    pub fn index(&self, manifests: &[Value]) -> Value {
        self.index_as(Format::Oci, manifests)
    }

    /// An index (OCI) or manifest list (Docker) of `manifests`; its descriptor.
    pub fn index_as(&self, format: Format, manifests: &[Value]) -> Value {
        let media_type = format.types()[0];
        let index = json!({ "schemaVersion": 2, "mediaType": media_type, "manifests": manifests });
        self.blob(index.to_string().as_bytes(), media_type)
    }

    /// The directory every blob is kept in, named by its sha256.
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    /// The bytes of blob `digest` (`sha256:<hex>`).
    pub fn read(&self, digest: &str) -> Vec<u8> {
        std::fs::read(self.root.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap()
    }

    /// The archive at `archive` whose index.json names `top` (an image or an index) `name`.
    pub fn archive(&self, mut top: Value, name: &str, archive: &Path) {
        top["annotations"] = json!({ "org.opencontainers.image.ref.name": name });
        std::fs::write(self.root.join("index.json"), json!({ "schemaVersion": 2, "manifests": [top] }).to_string())
            .unwrap();
        std::fs::write(self.root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let tar = Command::new("tar")
            .arg("-cf")
            .arg(archive)
            .arg("-C")
            .arg(&self.root)
            .args(["index.json", "oci-layout", "blobs"])
            .status();
        assert!(tar.unwrap().success());
    }
}

/// An uncompressed layer tar of `files` (path in the image, host file), made by the host's tar.
pub fn layer(scratch: &Path, files: &[(&str, &Path)]) -> Vec<u8> {
    let root = scratch.join(format!("layer-{}", hex::encode(Sha256::digest(format!("{files:?}")))));
    for (at, from) in files {
        let target = root.join(at);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from, &target).unwrap();
    }
    std::fs::create_dir_all(&root).unwrap();
    let out = Command::new("tar").arg("-cf").arg("-").arg("-C").arg(&root).arg(".").output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// An OCI image archive of a two-platform image named `name`: an index (its digest is returned) of a
/// linux/amd64 image whose one layer holds the host's static busybox, and a linux/arm64 one.
pub fn multi_arch_archive(dir: &Path, name: &str) -> (PathBuf, String) {
    let slug = name.replace(['/', ':'], "-");
    let layout = OciLayout::new(dir.join(format!("layout-{slug}")));
    let amd64 = layout.image("amd64", &layer(dir, &[("bin/busybox", Path::new("/bin/busybox"))]));
    let readme = dir.join("README");
    std::fs::write(&readme, "an arm64 image this host never runs\n").unwrap();
    let arm64 = layout.image("arm64", &layer(dir, &[("README", &readme)]));
    let index = layout.index(&[amd64, arm64]);
    let digest = index["digest"].as_str().unwrap().to_string();
    let archive = dir.join(format!("{slug}.oci.tar"));
    layout.archive(index, name, &archive);
    (archive, digest)
}

/// An OCI image archive as `skopeo copy ... oci-archive:FILE:REFERENCE` writes one: an index naming the image
/// `reference`, one linux/amd64 manifest, its config and one empty layer.
pub fn stand_in_archive(dir: &Path, reference: &str) -> PathBuf {
    let layout = OciLayout::new(dir.join("layout"));
    let image = layout.image("amd64", &[0u8; 1024]); // an empty tar: two zero blocks
    let archive = dir.join("stand-in.oci.tar");
    layout.archive(image, reference, &archive);
    archive
}

/// A stand-in for the pause image that runs, as [`stand_in_archive`] writes one: its one layer the host's static
/// busybox, its entrypoint a sleep that outlives any test (the real pause blocks in pause(2) until a signal). For
/// running pod sandboxes, where the real pause image cannot be fetched.
pub fn running_stand_in_archive(dir: &Path, reference: &str) -> PathBuf {
    let layout = OciLayout::new(dir.join("layout-running"));
    let busybox = layer(dir, &[("bin/busybox", Path::new("/bin/busybox"))]);
    let image = layout.image_running(Format::Oci, "amd64", &busybox, &["/bin/busybox", "sleep", "2147483647"]);
    let archive = dir.join("running-stand-in.oci.tar");
    layout.archive(image, reference, &archive);
    archive
}
