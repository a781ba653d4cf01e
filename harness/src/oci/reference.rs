//! Image references in every form a person copies: `repo`, `repo:tag`, `repo@sha256:…` and the form a pod
//! spec carries, `repo:tag@sha256:…` (what Cilium's chart writes). They are normalised as the kubelet's CRI
//! plugin normalises a pod's image, so that the names kthw gives images on a node are the names containerd is
//! asked for: a first path component that is not a registry (no `.` or `:`, not `localhost`, no upper case) means
//! Docker Hub (`docker.io`), and a Docker Hub name of one component is an official image (`library/`);
//! a reference with neither tag nor digest means `:latest` (distribution/reference v0.6.0 normalize.go
//! `ParseNormalizedNamed`, `splitDockerDomain`, `TagNameOnly`; containerd v1.7.27 pkg/cri/server/helpers.go
//! `ParseDockerRef` goes through them).

use super::OciError;

const DEFAULT_DOMAIN: &str = "docker.io";
/// distribution/reference normalize.go `legacyDefaultDomain`: rewritten to `docker.io`.
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `registry/path`, normalised (`busybox` → `docker.io/library/busybox`).
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `given`; a refusal names what was wrong and the forms that are accepted.
    pub fn parse(given: &str) -> Result<Reference, OciError> {
        let bad = |why: String| OciError::BadReference { given: given.to_string(), why };
        if given.is_empty() || given.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it is empty or holds white space".into()));
        }
        let (named, digest) = match given.split_once('@') {
            Some((n, d)) => (n, Some(parse_digest(d).map_err(bad)?)),
            None => (given, None),
        };
        let last_slash = named.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match named[last_slash..].rfind(':') {
            Some(i) => (&named[..last_slash + i], Some(&named[last_slash + i + 1..])),
            None => (named, None),
        };
        if let Some(tag) = tag {
            // distribution/reference regexp.go: tag = `[\w][\w.-]{0,127}`.
            let ok = tag.len() <= 128
                && tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(bad(format!("its tag {tag:?} is not a valid tag (letters, digits, `_.-`, at most 128)")));
            }
        }
        let repository = normalise(name).map_err(bad)?;
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference { repository, tag, digest })
    }

    /// The name the image is kept under on a node: `repository:tag`, or `repository@digest` for a reference
    /// that has no tag.
    pub fn name(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{}:{t}", self.repository),
            (None, Some(d)) => format!("{}@{d}", self.repository),
            (None, None) => unreachable!("parse gives every reference a tag or a digest"),
        }
    }

    /// What a registry is asked for: by digest where there is one (a tag beside it only names the image;
    /// skopeo 1.9 refuses both at once: "Docker references with both a tag and digest are currently not
    /// supported"), else by tag.
    pub fn source(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{d}", self.repository),
            None => self.name(),
        }
    }

    /// The registry host (and port) the repository lives on.
    pub fn registry(&self) -> &str {
        self.repository.split('/').next().unwrap_or_default()
    }
}

fn parse_digest(d: &str) -> Result<String, String> {
    let hex = d.strip_prefix("sha256:").ok_or_else(|| format!("its digest {d:?} is not sha256:<64 hex digits>"))?;
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        return Err(format!("its digest {d:?} is not sha256:<64 lower-case hex digits>"));
    }
    Ok(d.to_string())
}

/// A repository name's registry and its path there (distribution/reference normalize.go `splitDockerDomain`):
/// the first component names a registry when it contains a `.` or `:`, is `localhost` or has upper case;
/// otherwise the repository is on Docker Hub, where one-component names live under `library/`.
pub fn split_domain(name: &str) -> (&str, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first => {
            (if first == LEGACY_DEFAULT_DOMAIN { DEFAULT_DOMAIN } else { first }, rest.to_string())
        }
        _ => (DEFAULT_DOMAIN, name.to_string()),
    };
    let path =
        if domain == DEFAULT_DOMAIN && !path.contains('/') { format!("{OFFICIAL_REPO_PREFIX}{path}") } else { path };
    (domain, path)
}

fn normalise(name: &str) -> Result<String, String> {
    let (domain, path) = split_domain(name);
    // distribution/reference regexp.go: path components are lower-case alphanumerics joined by `.`, `_`,
    // `__` or runs of `-`.
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-'))
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
    };
    if let Some(bad) = path.split('/').find(|c| !component_ok(c)) {
        return Err(format!("its path component {bad:?} is not lower-case letters, digits and `._-`"));
    }
    Ok(format!("{domain}/{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:8ef68e97ccca8a3d2ca4ffbeb9a5f5c4f8cb1d4e5e4e1a7b5c1a87c5c0f1b2a3";

    fn parse(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_form_a_person_copies_parses_to_one_repository() {
        // The four forms, on the reference the pinned Cilium chart writes into its pod specs.
        let r = parse(&format!("quay.io/cilium/cilium:v1.17.4@{D}"));
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref(), r.digest.as_deref()),
            ("quay.io/cilium/cilium", Some("v1.17.4"), Some(D))
        );
        assert_eq!(r.name(), "quay.io/cilium/cilium:v1.17.4");
        assert_eq!(r.source(), format!("quay.io/cilium/cilium@{D}"), "pulled by digest, the tag only names it");
        let r = parse(&format!("quay.io/cilium/cilium@{D}"));
        assert_eq!((r.tag.clone(), r.name()), (None, format!("quay.io/cilium/cilium@{D}")));
        let r = parse("quay.io/cilium/cilium:v1.17.4");
        assert_eq!((r.digest.clone(), r.source()), (None, "quay.io/cilium/cilium:v1.17.4".to_string()));
        assert_eq!(parse("quay.io/cilium/cilium").name(), "quay.io/cilium/cilium:latest");
    }

    #[test]
    fn names_are_normalised_as_the_cri_plugin_normalises_a_pod_image() {
        // distribution/reference normalize_test.go cases.
        for (given, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox:1", "docker.io/library/busybox:1"),
            ("cilium/cilium:v1", "docker.io/cilium/cilium:v1"),
            ("index.docker.io/busybox:1", "docker.io/library/busybox:1"),
            ("docker.io/busybox:1", "docker.io/library/busybox:1"),
            ("localhost/kthw/x:1", "localhost/kthw/x:1"),
            ("localhost:5000/x:1", "localhost:5000/x:1"),
            ("127.0.0.1:5000/kthw/busybox:2", "127.0.0.1:5000/kthw/busybox:2"),
            ("[::1]:5000/x:1", "[::1]:5000/x:1"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("Registry/x:1", "Registry/x:1"),
        ] {
            assert_eq!(parse(given).name(), want, "{given}");
        }
        assert_eq!(parse("127.0.0.1:5000/busybox:1").registry(), "127.0.0.1:5000");
    }

    #[test]
    fn a_bad_reference_is_refused_naming_what_is_wrong() {
        for (given, why) in [
            ("", "empty"),
            ("quay.io/cilium/cilium:v1 x", "white space"),
            ("quay.io/cilium/cilium@sha256:abc", "64 lower-case hex"),
            ("quay.io/cilium/cilium@md5:abc", "not sha256:"),
            ("quay.io/Cilium/cilium:v1", "path component \"Cilium\""),
            ("quay.io/cilium/cilium:-v1", "not a valid tag"),
            ("quay.io//cilium", "path component \"\""),
        ] {
            let err = Reference::parse(given).unwrap_err().to_string();
            assert!(err.contains(why), "{given:?}: {err}");
            assert!(err.contains("repo:tag@sha256:"), "the refusal lists the accepted forms: {err}");
        }
    }
}
