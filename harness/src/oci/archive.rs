//! OCI image archives: reading the names an archive gives its images, whoever wrote it, and writing one from
//! what skopeo copied into a `dir:` with every manifest kept as the registry served it.
//!
//! Names: `ctr images export`, `docker save` (Docker 25 and later) and BuildKit's OCI exporter put the full
//! name in `io.containerd.image.name` and only the tag in `org.opencontainers.image.ref.name` (containerd
//! v1.7.27 images/archive/exporter.go `ociReferenceName`: "OCI defines the reference name as only a tag
//! excluding the repository"); `skopeo copy ... oci-archive:FILE:NAME` puts the full name in `ref.name`. containerd's
//! importer takes `io.containerd.image.name` first, then `ref.name` (v1.6.20 import.go `imageName`), and so does
//! [`read_archive`].

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::reference::Reference;
use super::{ImageRef, OciError};

/// The annotation a full image name is kept in (containerd images/annotations.go `AnnotationImageName`).
pub const IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation (image-spec annotations.md), a tag or (skopeo) a full name.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The manifest media types a registry serves for an image: the top-level manifest of each is what a pod's
/// `@sha256:` names, and it is kept byte for byte.
pub const MEDIA_TYPES: [&str; 4] = [
    // image-spec image-index.md, manifest.md
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    // distribution docs/spec/manifest-v2-2.md
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The images an OCI archive names in its index.json (one or more tags of one repository).
pub fn read_archive(path: &Path) -> Result<Vec<ImageRef>, OciError> {
    let bad = |why: String| OciError::NotAnArchive { path: path.to_path_buf(), why };
    let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open it: {e}")))?;
    let mut tar = tar::Archive::new(file);
    let mut index = None;
    for entry in tar.entries().map_err(|e| bad(format!("not a tar: {e}")))? {
        let mut entry = entry.map_err(|e| bad(format!("not a tar: {e}")))?;
        let at = entry.path().map_err(|e| bad(format!("not a tar: {e}")))?.into_owned();
        // `tar -C layout .` writes `./index.json`.
        let named = at.components().filter(|c| !matches!(c, std::path::Component::CurDir));
        if named.eq(Path::new("index.json").components()) {
            let mut text = Vec::new();
            entry.read_to_end(&mut text).map_err(|e| bad(format!("cannot read its index.json: {e}")))?;
            index = Some(text);
            break;
        }
    }
    let index = index.ok_or_else(|| bad("no index.json in it".into()))?;
    let index: serde_json::Value =
        serde_json::from_slice(&index).map_err(|e| bad(format!("its index.json is not JSON: {e}")))?;
    let manifests = index["manifests"].as_array().ok_or_else(|| bad("its index.json lists no manifests".into()))?;
    if manifests.is_empty() {
        return Err(bad("its index.json lists 0 images".into()));
    }
    let mut images = Vec::new();
    for entry in manifests {
        let digest = entry["digest"]
            .as_str()
            .filter(|d| d.starts_with("sha256:"))
            .ok_or_else(|| bad("an image in it has no sha256 digest".into()))?;
        let annotations = &entry["annotations"];
        let name = annotations[IMAGE_NAME]
            .as_str()
            .or_else(|| annotations[REF_NAME].as_str().filter(|r| r.contains(['/', ':'])))
            .ok_or_else(|| OciError::Unnamed {
                path: path.to_path_buf(),
                digest: digest.to_string(),
                tag: annotations[REF_NAME].as_str().map(str::to_string),
            })?;
        let reference = Reference::parse(name)?;
        images.push(ImageRef { reference: reference.name(), digest: digest.to_string() });
    }
    let repositories: BTreeSet<&str> = images.iter().map(ImageRef::repository).collect();
    if repositories.len() > 1 {
        // containerd names digests `<--base-name>@<digest>`, one prefix for the whole archive.
        return Err(bad(format!(
            "it holds images of {} repositories ({}); give one repository per archive",
            repositories.len(),
            repositories.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(images)
}

/// The media type of a manifest as served: its `mediaType`, or for an OCI manifest without one (the field is
/// optional in image-spec before 1.1), what its shape says.
pub fn media_type(manifest: &[u8]) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).map_err(|e| format!("it is not JSON: {e}"))?;
    let declared = v["mediaType"].as_str();
    let shape = if v["manifests"].is_array() {
        MEDIA_TYPES[0]
    } else if v["config"].is_object() && v["layers"].is_array() {
        MEDIA_TYPES[1]
    } else {
        ""
    };
    match declared.unwrap_or(shape) {
        t if MEDIA_TYPES.contains(&t) => Ok(t.to_string()),
        "" => Err(format!(
            "it has no mediaType and is neither an index nor a manifest (schemaVersion {})",
            v["schemaVersion"]
        )),
        t => Err(format!("its media type {t} is not one of {}", MEDIA_TYPES.join(", "))),
    }
}

/// Writes the OCI archive `out` from `dir`, a copy skopeo made with `copy --all --preserve-digests ... dir:`
/// (containers/image dir transport: `manifest.json` the top-level manifest as served, `<hex>.manifest.json`
/// every other manifest, `<hex>` every blob), naming its image `name`. Every file is checked against its
/// digest; when `name` pins a digest, the top-level manifest must have exactly that one. An OCI image layout
/// may point at a manifest of any media type (image-spec image-layout.md), so a Docker manifest list keeps its
/// bytes and digest, where skopeo's own `oci-archive:` would have to convert it (and refuses to with
/// `--preserve-digests`).
pub fn write_archive(dir: &Path, name: &Reference, out: &Path) -> Result<ImageRef, OciError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| OciError::Io { action, path, source }
    };
    let top = dir.join("manifest.json");
    let manifest = std::fs::read(&top).map_err(io("read", &top))?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
    if let Some(pinned) = &name.digest {
        if *pinned != digest {
            return Err(OciError::DigestMismatch { reference: name.source(), served: digest });
        }
    }
    let media_type =
        media_type(&manifest).map_err(|why| OciError::UnknownManifest { reference: name.source(), why })?;
    let mut blobs = vec![(digest.clone(), top.clone())];
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let path = entry.map_err(io("list", dir))?.path();
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default();
        let hex = file.strip_suffix(".manifest.json").unwrap_or(file);
        if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            let actual = hex::encode(Sha256::digest(std::fs::read(&path).map_err(io("read", &path))?));
            if actual != hex {
                return Err(OciError::DigestMismatch {
                    reference: format!("{} ({file})", name.source()),
                    served: format!("sha256:{actual}"),
                });
            }
            blobs.push((format!("sha256:{hex}"), path));
        }
    }
    let mut annotations = serde_json::json!({ IMAGE_NAME: name.name() });
    if let Some(tag) = &name.tag {
        annotations[REF_NAME] = tag.clone().into();
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPES[0],
        "manifests": [{ "mediaType": media_type, "digest": digest, "size": manifest.len(), "annotations": annotations }],
    });
    let tmp = out.with_extension("tar.part");
    let write = || -> std::io::Result<()> {
        let mut tar = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(&tmp)?));
        let mut put = |at: &str, bytes: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, at, bytes)
        };
        put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        put("index.json", index.to_string().as_bytes())?;
        let mut seen = BTreeSet::new();
        for (digest, path) in &blobs {
            if seen.insert(digest) {
                tar.append_path_with_name(path, format!("blobs/sha256/{}", &digest["sha256:".len()..]))?;
            }
        }
        tar.into_inner()?.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    write().map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, out).map_err(io("move into place", out))?;
    Ok(ImageRef { reference: name.name(), digest })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;

    const DIGEST: &str = "sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";

    /// An archive of `files` (path, bytes) at `dir/name`.
    fn tar_of(dir: &Path, name: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
        let path = dir.join(name);
        let mut tar = tar::Builder::new(std::fs::File::create(&path).unwrap());
        for (at, bytes) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, at, bytes.as_slice()).unwrap();
        }
        tar.finish().unwrap();
        path
    }

    fn index_of(entries: serde_json::Value) -> Vec<u8> {
        json!({ "schemaVersion": 2, "manifests": entries }).to_string().into_bytes()
    }

    fn entry(annotations: serde_json::Value) -> serde_json::Value {
        json!({ "mediaType": MEDIA_TYPES[0], "digest": DIGEST, "size": 1, "annotations": annotations })
    }

    #[test]
    fn archives_name_their_image_as_docker_ctr_buildkit_and_skopeo_write_it() {
        let dir = tempfile::tempdir().unwrap();
        // docker save (moby v25 image/tarexport/save.go) and ctr images export: the full name in
        // io.containerd.image.name, the tag alone in ref.name; index.json last, after the blobs.
        let docker = tar_of(
            dir.path(),
            "docker.tar",
            &[
                ("blobs/sha256/ab", b"{}".to_vec()),
                ("manifest.json", b"[]".to_vec()),
                (
                    "index.json",
                    index_of(json!([entry(
                        json!({ IMAGE_NAME: "docker.io/library/busybox:latest", REF_NAME: "latest" })
                    )])),
                ),
            ],
        );
        let want = ImageRef { reference: "docker.io/library/busybox:latest".into(), digest: DIGEST.into() };
        assert_eq!(read_archive(&docker).unwrap(), [want]);
        // skopeo copy ... oci-archive:FILE:NAME: the full name in ref.name; here a layout tarred by the host's
        // tar as `tar -C DIR .`, whose members are `./index.json` and so on.
        let layout = dir.path().join("layout");
        std::fs::create_dir(&layout).unwrap();
        std::fs::write(
            layout.join("index.json"),
            index_of(json!([entry(json!({ REF_NAME: "127.0.0.1:5000/kthw/busybox:1" }))])),
        )
        .unwrap();
        let skopeo = dir.path().join("skopeo.tar");
        let tar = std::process::Command::new("tar").arg("-C").arg(&layout).arg("-cf").arg(&skopeo).arg(".").status();
        assert!(tar.unwrap().success());
        assert_eq!(read_archive(&skopeo).unwrap()[0].reference, "127.0.0.1:5000/kthw/busybox:1");
        // Two tags of one repository (docker save busybox:1 busybox:2): both.
        let two = tar_of(
            dir.path(),
            "two.tar",
            &[(
                "index.json",
                index_of(json!([entry(json!({ IMAGE_NAME: "busybox:1" })), entry(json!({ IMAGE_NAME: "busybox:2" }))])),
            )],
        );
        let names: Vec<String> = read_archive(&two).unwrap().into_iter().map(|i| i.reference).collect();
        assert_eq!(names, ["docker.io/library/busybox:1", "docker.io/library/busybox:2"]);
    }

    #[test]
    fn an_archive_that_cannot_be_loaded_is_refused_saying_what_would_be() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(PathBuf, &str)> = vec![
            (dir.path().join("missing.tar"), "cannot open it"),
            (tar_of(dir.path(), "none.tar", &[("oci-layout", b"{}".to_vec())]), "no index.json in it"),
            (tar_of(dir.path(), "empty.tar", &[("index.json", index_of(json!([])))]), "lists 0 images"),
            (tar_of(dir.path(), "json.tar", &[("index.json", b"{".to_vec())]), "index.json is not JSON"),
            (
                tar_of(
                    dir.path(),
                    "tag.tar",
                    &[("index.json", index_of(json!([entry(json!({ REF_NAME: "v1.17.4" }))])))],
                ),
                "has no name (only the tag \"v1.17.4\")",
            ),
            (
                tar_of(
                    dir.path(),
                    "repos.tar",
                    &[(
                        "index.json",
                        index_of(json!([
                            entry(json!({ IMAGE_NAME: "a.io/x:1" })),
                            entry(json!({ IMAGE_NAME: "b.io/y:1" }))
                        ])),
                    )],
                ),
                "images of 2 repositories (a.io/x, b.io/y)",
            ),
        ];
        for (path, why) in cases {
            let err = read_archive(&path).unwrap_err().to_string();
            assert!(err.contains(why), "{}: {err}", path.display());
            assert!(err.contains("docker save") && err.contains("ctr images export"), "says what is accepted: {err}");
        }
        std::fs::write(dir.path().join("text"), "hello").unwrap();
        let err = read_archive(&dir.path().join("text")).unwrap_err().to_string();
        assert!(err.contains("not an OCI image archive"), "{err}");
    }

    /// A skopeo `dir:` copy whose top-level manifest is `top`, with `blobs`; returns the top's digest.
    fn dir_copy(dir: &Path, top: &[u8], blobs: &[&[u8]]) -> String {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("manifest.json"), top).unwrap();
        std::fs::write(dir.join("version"), "Directory Transport Version: 1.1\n").unwrap();
        for b in blobs {
            std::fs::write(dir.join(hex::encode(Sha256::digest(b))), b).unwrap();
        }
        format!("sha256:{}", hex::encode(Sha256::digest(top)))
    }

    #[test]
    fn every_kind_of_manifest_keeps_its_bytes_and_digest_in_the_archive() {
        let scratch = tempfile::tempdir().unwrap();
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let child = format!(r#"{{"schemaVersion":2,"mediaType":"{}","config":{{}},"layers":[]}}"#, MEDIA_TYPES[3]);
        for (i, media_type) in MEDIA_TYPES.iter().enumerate() {
            // Odd spacing and key order on purpose: re-serialising would change the digest.
            let top = match i {
                0 | 2 => format!(r#"{{ "schemaVersion" : 2, "mediaType": "{media_type}", "manifests": [] }}"#),
                _ => format!(r#"{{"mediaType": "{media_type}",  "schemaVersion": 2, "config": {{}}, "layers": []}}"#),
            };
            let dir = scratch.path().join(i.to_string());
            let digest = dir_copy(&dir, top.as_bytes(), &[config]);
            let child_hex = hex::encode(Sha256::digest(&child));
            std::fs::write(dir.join(format!("{child_hex}.manifest.json")), &child).unwrap();
            let name = Reference::parse(&format!("127.0.0.1:5000/kthw/kind{i}:1@{digest}")).unwrap();
            let out = scratch.path().join(format!("{i}.tar"));
            let image = write_archive(&dir, &name, &out).unwrap();
            assert_eq!(image, ImageRef { reference: format!("127.0.0.1:5000/kthw/kind{i}:1"), digest: digest.clone() });
            assert_eq!(read_archive(&out).unwrap(), [image]);
            let mut files = std::collections::BTreeMap::new();
            for e in tar::Archive::new(std::fs::File::open(&out).unwrap()).entries().unwrap() {
                let mut e = e.unwrap();
                let mut bytes = Vec::new();
                e.read_to_end(&mut bytes).unwrap();
                files.insert(e.path().unwrap().display().to_string(), bytes);
            }
            assert_eq!(files[&format!("blobs/sha256/{}", &digest[7..])], top.as_bytes(), "{media_type}: as served");
            assert_eq!(files[&format!("blobs/sha256/{child_hex}")], child.as_bytes());
            assert_eq!(files[&format!("blobs/sha256/{}", hex::encode(Sha256::digest(config)))], config);
            let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
            assert_eq!(index["manifests"][0]["mediaType"], *media_type);
            assert_eq!(index["manifests"][0]["size"], top.len());
            assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "1");
            assert!(files.contains_key("oci-layout"));
        }
    }

    #[test]
    fn what_the_registry_served_wrong_is_refused_and_nothing_is_kept() {
        let scratch = tempfile::tempdir().unwrap();
        let top = format!(r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#, MEDIA_TYPES[2]);
        let dir = scratch.path().join("d");
        let digest = dir_copy(&dir, top.as_bytes(), &[b"layer"]);
        let out = scratch.path().join("out.tar");
        let pinned = Reference::parse(&format!("quay.io/x/y:1@{DIGEST}")).unwrap();
        let err = write_archive(&dir, &pinned, &out).unwrap_err().to_string();
        assert!(err.contains(&format!("served a manifest with digest {digest}, not the one asked for")), "{err}");
        assert!(!out.exists());

        std::fs::write(dir.join(hex::encode(Sha256::digest(b"layer"))), b"tampered").unwrap();
        let err = write_archive(&dir, &Reference::parse("quay.io/x/y:1").unwrap(), &out).unwrap_err().to_string();
        assert!(err.contains("quay.io/x/y:1 (") && err.contains("served a manifest with digest"), "{err}");
        assert!(!out.exists());

        let schema1 = scratch.path().join("s1");
        dir_copy(&schema1, br#"{"schemaVersion":1,"name":"x/y","fsLayers":[]}"#, &[]);
        let err = write_archive(&schema1, &Reference::parse("quay.io/x/y:1").unwrap(), &out).unwrap_err().to_string();
        assert!(
            err.contains("cannot keep: it has no mediaType and is neither an index nor a manifest (schemaVersion 1)"),
            "{err}"
        );
        let helm = scratch.path().join("helm");
        dir_copy(&helm, br#"{"schemaVersion":2,"mediaType":"application/vnd.cncf.helm.chart.v1"}"#, &[]);
        let err = write_archive(&helm, &Reference::parse("quay.io/x/y:1").unwrap(), &out).unwrap_err().to_string();
        assert!(err.contains("media type application/vnd.cncf.helm.chart.v1 is not one of"), "{err}");
        // An OCI manifest from before image-spec 1.1 may lack mediaType: its shape says what it is.
        assert_eq!(media_type(br#"{"schemaVersion":2,"config":{},"layers":[]}"#).unwrap(), MEDIA_TYPES[1]);
    }
}
