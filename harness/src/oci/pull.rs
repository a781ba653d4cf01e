//! Pulling an image from a registry with every manifest kept as served: skopeo copies it into a `dir:`
//! (containers/image's dir transport stores any manifest type unchanged, so `--preserve-digests` holds for
//! OCI indexes with attestation manifests, Docker v2 manifest lists and single manifests alike; tried with
//! skopeo 1.9.3 against a registry on 127.0.0.1 serving each kind), and kthw writes the OCI archive from it
//! ([`super::archive::write_archive`]). skopeo's own `oci-archive:` destination would have to convert a Docker
//! list to an OCI index, a new digest, and refuses to under `--preserve-digests`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::archive::write_archive;
use super::reference::Reference;
use super::{is_loopback_registry, ImageRef, OciError};

/// The `skopeo` arguments that copy `source` (`repository@digest` or `repository:tag`) into `dir`, every
/// platform and the index itself (skopeo-copy(1) `--all`: "attempt to copy all of the images in the list, and
/// the list itself"), failing rather than changing a digest (`--preserve-digests`). `plain_http` drops TLS
/// (`--src-tls-verify=false`: "Require HTTPS and verify certificates" off), for a registry on loopback.
pub fn skopeo_copy_args(source: &str, plain_http: bool, retries: u32, dir: &Path) -> Vec<String> {
    let mut args = vec!["copy".to_string(), "--quiet".into(), "--all".into(), "--preserve-digests".into()];
    args.push(format!("--retry-times={retries}"));
    if plain_http {
        args.push("--src-tls-verify=false".into());
    }
    args.push(format!("docker://{source}"));
    args.push(format!("dir:{}", dir.display()));
    args
}

/// Pulls `reference` (every platform, digests preserved) into an OCI archive under `scratch`; returns the
/// archive and the image it names. A registry on a loopback address is spoken to over plain HTTP, as Docker
/// allows for localhost (docker/docs "Test an insecure registry").
pub fn pull(reference: &Reference, scratch: &Path) -> Result<(PathBuf, ImageRef), OciError> {
    let source = reference.source();
    let dir = scratch.join("dir");
    let _ = std::fs::remove_dir_all(&dir);
    let args = skopeo_copy_args(&source, is_loopback_registry(reference.registry()), 2, &dir);
    tracing::info!("pulling {source} with skopeo {}", args.join(" "));
    let fail = |why: String| OciError::Pull { reference: source.clone(), why };
    let out = Command::new("skopeo")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("cannot run ({e}); install skopeo (`apt-get install skopeo`)")))?;
    if !out.status.success() {
        return Err(fail(format!("exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
    }
    let archive = scratch.join("image.oci.tar");
    let image = write_archive(&dir, reference, &archive)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok((archive, image))
}
