//! A mirror for runners that cannot reach upstream: one URL serves both the files and the images.
//!
//! Layout, for a mirror `https://mirror.example/kthw`:
//! - a file artifact is fetched from the mirror URL followed by the path of its upstream URL:
//!   `https://dl.k8s.io/v1.32.4/kubernetes-server-linux-amd64.tar.gz` becomes
//!   `https://mirror.example/kthw/v1.32.4/kubernetes-server-linux-amd64.tar.gz`, and
//!   `https://github.com/etcd-io/etcd/releases/download/v3.5.21/etcd-v3.5.21-linux-amd64.tar.gz` becomes
//!   `https://mirror.example/kthw/etcd-io/etcd/releases/download/v3.5.21/etcd-v3.5.21-linux-amd64.tar.gz`
//!   (any static web server over a directory laid out like that will do);
//! - an image is pulled from the mirror's host as a registry, the mirror's path prefixed to the repository
//!   path without its registry: `quay.io/cilium/cilium` becomes `mirror.example/kthw/cilium/cilium` (a
//!   registry proxy cache such as Harbor's, with a project `kthw`), still by the pinned digest.
//!   An `http://` mirror is a registry without TLS.

use ureq::http::Uri;

use super::ArtifactError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// The URL without a trailing slash.
    base: String,
    /// `host[:port]` and path prefix, the registry form.
    registry: String,
    plain_http: bool,
}

impl Mirror {
    pub fn parse(text: &str) -> Result<Mirror, ArtifactError> {
        let bad = |why: &'static str| ArtifactError::Mirror { value: text.to_string(), why };
        let uri: Uri = text.parse().map_err(|_| bad("is not a URL"))?;
        let plain_http = match uri.scheme_str() {
            Some("https") => false,
            Some("http") => true,
            _ => return Err(bad("is not an http:// or https:// URL")),
        };
        let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
        if uri.query().is_some() {
            return Err(bad("has a query, which no path can follow"));
        }
        let prefix = uri.path().trim_end_matches('/');
        Ok(Mirror {
            base: text.trim_end_matches('/').to_string(),
            registry: format!("{authority}{prefix}"),
            plain_http,
        })
    }

    /// The mirror's URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Where the mirror serves the file at `upstream`: the mirror URL, then the upstream URL's path.
    pub fn file_url(&self, upstream: &str) -> String {
        let after_scheme = upstream.split_once("://").map_or(upstream, |(_, rest)| rest);
        let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
        format!("{}{path}", self.base)
    }

    /// The mirror's name for an image repository (`registry/path`, no tag or digest).
    pub fn repository(&self, repository: &str) -> String {
        format!("{}/{}", self.registry, crate::oci::split_domain(repository).1)
    }

    /// The mirror speaks plain HTTP, so a registry client must not insist on TLS.
    pub fn plain_http(&self) -> bool {
        self.plain_http
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_keep_their_upstream_path_under_the_mirror() {
        let m = Mirror::parse("https://mirror.example:8443/kthw/").unwrap();
        assert_eq!(
            m.file_url("https://dl.k8s.io/v1.32.4/kubernetes-server-linux-amd64.tar.gz"),
            "https://mirror.example:8443/kthw/v1.32.4/kubernetes-server-linux-amd64.tar.gz"
        );
        assert_eq!(
            m.file_url("https://github.com/cilium/cilium-cli/releases/download/v0.18.3/cilium-linux-amd64.tar.gz"),
            "https://mirror.example:8443/kthw/cilium/cilium-cli/releases/download/v0.18.3/cilium-linux-amd64.tar.gz"
        );
        assert!(!m.plain_http());
    }

    #[test]
    fn images_move_to_the_mirror_host_without_their_registry() {
        let m = Mirror::parse("http://127.0.0.1:5000").unwrap();
        assert_eq!(m.repository("quay.io/cilium/cilium"), "127.0.0.1:5000/cilium/cilium");
        assert_eq!(m.repository("registry.k8s.io/pause"), "127.0.0.1:5000/pause");
        assert_eq!(m.repository("localhost/x/y"), "127.0.0.1:5000/x/y");
        assert_eq!(m.repository("cilium/cilium"), "127.0.0.1:5000/cilium/cilium", "a Docker Hub repository");
        assert_eq!(m.repository("busybox"), "127.0.0.1:5000/library/busybox");
        assert!(m.plain_http());
        let prefixed = Mirror::parse("https://harbor.example/kthw").unwrap();
        assert_eq!(prefixed.repository("registry.k8s.io/coredns/coredns"), "harbor.example/kthw/coredns/coredns");
    }

    #[test]
    fn a_mirror_must_be_an_http_url_with_a_host() {
        for (bad, why) in [
            ("mirror.example/kthw", "http"),
            ("ftp://mirror.example/", "http"),
            ("https://mirror.example/kthw?x=1", "query"),
            ("not a url", "URL"),
        ] {
            let err = Mirror::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains(why), "{bad}: {err}");
        }
    }
}
