//! An image's digest from its registry, through the OCI distribution API: `GET /v2/<name>/manifests/<tag>`
//! (distribution-spec spec.md, "Pulling manifests") accepting every manifest media type kthw keeps, the
//! digest computed over the bytes served and checked against the `Docker-Content-Digest` header when the
//! registry sends one. The top-level manifest's digest is what a pod's `@sha256:` names, so an index stays an
//! index (never one platform's manifest).

use sha2::{Digest, Sha256};
use ureq::http::StatusCode;

use crate::artifacts::Download;
use crate::oci::MEDIA_TYPES;

/// What the registry answered for one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryDigest {
    pub digest: String,
    pub media_type: String,
    /// The URL asked.
    pub url: String,
}

/// The digest of `repository:tag` (`repository` without registry: `coredns/coredns`) at `registry`
/// (`host[:port]`), over HTTPS or, for a loopback stand-in, plain HTTP. Errors say what was asked and what
/// answered.
pub fn manifest_digest(
    download: &Download,
    registry: &str,
    plain_http: bool,
    repository: &str,
    tag: &str,
) -> Result<RegistryDigest, String> {
    let scheme = if plain_http { "http" } else { "https" };
    let url = format!("{scheme}://{registry}/v2/{repository}/manifests/{tag}");
    let agent = download.agent();
    let mut last = String::new();
    for attempt in 1..=download.attempts.max(1) {
        let response = agent.get(&url).header("Accept", MEDIA_TYPES.join(", ")).call();
        let mut response = match response {
            Ok(r) => r,
            Err(e) => {
                last = format!("no answer from {url}: {e}");
                std::thread::sleep(download.first_backoff * attempt);
                continue;
            }
        };
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(format!("{url} answered 404: the registry has no {repository}:{tag}"));
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(format!(
                "{url} answered 401: the registry wants a token, which kthw does not ask for (anonymous pulls only)"
            ));
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            last = format!("{url} answered {status}");
            std::thread::sleep(download.first_backoff * attempt);
            continue;
        }
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        let header = response.headers().get("Docker-Content-Digest").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = response
            .body_mut()
            .with_config()
            .limit(4 << 20)
            .read_to_vec()
            .map_err(|e| format!("{url}: the manifest broke off: {e}"))?;
        let media_type = crate::oci::media_type(&body).map_err(|e| format!("{url} served a manifest, but {e}"))?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if let Some(h) = header.filter(|h| *h != digest) {
            return Err(format!("{url}: Docker-Content-Digest says {h}, the bytes served hash to {digest}"));
        }
        return Ok(RegistryDigest { digest, media_type, url });
    }
    Err(last)
}
