//! Resolving versions into a lock: every file's checksum read from the file its publisher puts beside it,
//! the Cilium chart's digest from its Helm repository's index and its images' digests from its values.yaml,
//! and CoreDNS's and pause's from their registry. Upstream's URLs are recorded; a mirror (or a loopback
//! stand-in in tests) serving upstream's layout may answer instead, as `kthw artifacts fetch --mirror` does.

use std::path::{Path, PathBuf};

use super::chart::{chart_images, index_entry, top_level_keys, values_yaml};
use super::sums::{parse_sum_file, SumForm};
use super::{Lock, FORMAT};
use crate::artifacts::{Algorithm, Artifact, Cache, Checksum, Download, DownloadError, Kind, Mirror};
use crate::phase::Phase;
use crate::spec::{VersionKey, VersionSet, Versions};

/// Where upstream's files and images are asked for.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Files from here (upstream's URL path under it: [`Mirror::file_url`]) instead of upstream.
    pub files: Option<Mirror>,
    /// Registries: the mirror's host as registry ([`Mirror::repository`]); the files' mirror when unset.
    pub registry: Option<Mirror>,
}

/// Why versions could not be resolved. Each names the URL that answered and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "{what} does not exist upstream: {url} answered {status}; check the version against the publisher's \
         releases (a mirror must serve upstream's path under its URL)"
    )]
    NotFound { what: String, url: String, status: u16 },
    #[error("cannot fetch {url} (for {what})")]
    Fetch {
        what: String,
        url: String,
        #[source]
        source: DownloadError,
    },
    #[error("{url} is not a checksum file in the form {publisher} publishes ({problem}); refusing to guess at a sum")]
    SumForm { url: String, publisher: &'static str, problem: String },
    #[error("Cilium chart {version}: {url}: {problem}")]
    Chart { version: String, url: String, problem: String },
    #[error("{what}: {problem}")]
    Registry { what: String, problem: String },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One release file and the checksum file its publisher puts beside it.
struct Published {
    name: &'static str,
    key: VersionKey,
    url: String,
    sums_url: String,
    form: SumForm,
    algorithm: Algorithm,
    publisher: &'static str,
}

/// Every release file of `v`, at its publisher's URL, with its checksum file. The layouts: dl.k8s.io
/// `v<K>/<tarball>` with `<tarball>.sha512` beside it (kubernetes/release's krel pushes a `.sha256` and
/// `.sha512` per file); GitHub releases `<owner>/<repo>/releases/download/v<V>/<asset>` with etcd's
/// `SHA256SUMS`, runc's `runc.sha256sum`, and per asset `.sha256sum` (cilium CLI, containerd) or `.sha256`
/// (CNI plugins).
fn published(v: &Versions) -> Vec<Published> {
    let gh = |repo: &str, tag: &str, asset: &str| format!("https://github.com/{repo}/releases/download/{tag}/{asset}");
    let k8s = |tarball: &str| format!("https://dl.k8s.io/v{}/{tarball}", v.kubernetes);
    let etcd = format!("etcd-v{}-linux-amd64.tar.gz", v.etcd);
    let containerd = format!("containerd-{}-linux-amd64.tar.gz", v.containerd);
    let cni = format!("cni-plugins-linux-amd64-v{}.tgz", v.cni_plugins);
    let beside = |url: &str, ext: &str| format!("{url}{ext}");
    let server = k8s("kubernetes-server-linux-amd64.tar.gz");
    let node = k8s("kubernetes-node-linux-amd64.tar.gz");
    let cli = gh("cilium/cilium-cli", &format!("v{}", v.cilium_cli), "cilium-linux-amd64.tar.gz");
    let containerd_url = gh("containerd/containerd", &format!("v{}", v.containerd), &containerd);
    let cni_url = gh("containernetworking/plugins", &format!("v{}", v.cni_plugins), &cni);
    use SumForm::{BareHex, Coreutils};
    use VersionKey as K;
    vec![
        Published {
            name: "kubernetes-server",
            key: K::Kubernetes,
            sums_url: beside(&server, ".sha512"),
            url: server,
            form: BareHex,
            algorithm: Algorithm::Sha512,
            publisher: "dl.k8s.io",
        },
        Published {
            name: "kubernetes-node",
            key: K::Kubernetes,
            sums_url: beside(&node, ".sha512"),
            url: node,
            form: BareHex,
            algorithm: Algorithm::Sha512,
            publisher: "dl.k8s.io",
        },
        Published {
            name: "etcd",
            key: K::Etcd,
            url: gh("etcd-io/etcd", &format!("v{}", v.etcd), &etcd),
            sums_url: gh("etcd-io/etcd", &format!("v{}", v.etcd), "SHA256SUMS"),
            form: Coreutils,
            algorithm: Algorithm::Sha256,
            publisher: "etcd's releases",
        },
        Published {
            name: "cilium-cli",
            key: K::CiliumCli,
            sums_url: beside(&cli, ".sha256sum"),
            url: cli,
            form: Coreutils,
            algorithm: Algorithm::Sha256,
            publisher: "the cilium CLI's releases",
        },
        Published {
            name: "containerd",
            key: K::Containerd,
            sums_url: beside(&containerd_url, ".sha256sum"),
            url: containerd_url,
            form: Coreutils,
            algorithm: Algorithm::Sha256,
            publisher: "containerd's releases",
        },
        Published {
            name: "runc",
            key: K::Runc,
            url: gh("opencontainers/runc", &format!("v{}", v.runc), "runc.amd64"),
            sums_url: gh("opencontainers/runc", &format!("v{}", v.runc), "runc.sha256sum"),
            form: Coreutils,
            algorithm: Algorithm::Sha256,
            publisher: "runc's releases",
        },
        Published {
            name: "cni-plugins",
            key: K::CniPlugins,
            sums_url: beside(&cni_url, ".sha256"),
            url: cni_url,
            form: Coreutils,
            algorithm: Algorithm::Sha256,
            publisher: "the CNI plugins' releases",
        },
    ]
}

/// Cilium's Helm repository, whose `index.yaml` lists every chart archive with its sha256.
pub const HELM_REPOSITORY: &str = "https://helm.cilium.io";

/// What a resolve produced, and every URL it asked (for the person reading the output).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub lock: Lock,
    pub asked: Vec<String>,
}

/// Resolves versions: see the module's documentation.
#[derive(Debug, Clone)]
pub struct Resolver {
    pub sources: Sources,
    pub download: Download,
    /// Where checksum files and the index are fetched to while they are read.
    pub scratch: PathBuf,
    /// The artifact cache: the chart archive the resolve downloads to read its values is kept there, verified,
    /// so that fetching the lock's artifacts later does not download it again.
    pub cache: Option<Cache>,
}

fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

impl Resolver {
    fn url_of(&self, upstream: &str) -> String {
        match &self.sources.files {
            Some(m) => m.file_url(upstream),
            None => upstream.to_string(),
        }
    }

    /// Fetches `upstream` (through the mirror) into the scratch directory; a 4xx is the version not existing.
    fn fetch(&self, upstream: &str, what: &str, asked: &mut Vec<String>) -> Result<PathBuf, ResolveError> {
        let url = self.url_of(upstream);
        asked.push(url.clone());
        std::fs::create_dir_all(&self.scratch).map_err(|source| ResolveError::Io {
            action: "create",
            path: self.scratch.clone(),
            source,
        })?;
        let part = self.scratch.join(format!("{}.{}", asked.len(), last_segment(&url)));
        let _ = std::fs::remove_file(&part);
        match self.download.fetch(&url, &part, what) {
            Ok(_) => Ok(part),
            Err(DownloadError::Refused { status }) if status.is_client_error() => {
                Err(ResolveError::NotFound { what: what.to_string(), url, status: status.as_u16() })
            }
            Err(source) => Err(ResolveError::Fetch { what: what.to_string(), url, source }),
        }
    }

    fn read(&self, path: &Path) -> Result<String, ResolveError> {
        std::fs::read_to_string(path).map_err(|source| ResolveError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })
    }

    /// Resolves `v` into a lock. `preset` gives what a set of versions does not change: each artifact's
    /// phases and scenarios, pause's tag, and the connectivity test's images when the cilium CLI is the
    /// preset's own (they are that CLI's defaults).
    pub fn resolve(&self, v: &Versions, preset: VersionSet) -> Result<Resolved, ResolveError> {
        let now = crate::image::manifest::rfc3339(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        );
        let via = match &self.sources.files {
            Some(m) => format!(" (served by {} in upstream's layout)", m.url()),
            None => String::new(),
        };
        let shape = Lock::preset(preset);
        let like = |name: &str| shape.artifacts.iter().find(|a| a.name == name).cloned();
        let mut asked = Vec::new();
        let mut artifacts = Vec::new();
        for p in published(v) {
            let version = v.get(p.key).to_string();
            let what = format!("{} {version} ({})", p.key, p.name);
            let sums = self.fetch(&p.sums_url, &what, &mut asked)?;
            let text = self.read(&sums)?;
            let sum = parse_sum_file(&text, p.form, p.algorithm, last_segment(&p.url)).map_err(|problem| {
                ResolveError::SumForm { url: self.url_of(&p.sums_url), publisher: p.publisher, problem }
            })?;
            let base = like(p.name).expect("every preset pins every published file");
            artifacts.push(Artifact {
                set: None,
                kind: Kind::File,
                component: p.key.key().to_string(),
                version: version.clone(),
                upstream_version: format!("v{version}"),
                url: Some(p.url.clone()),
                checksum: Some(sum.to_string()),
                source: format!("{} beside it{via}, read {now}", p.sums_url),
                ..base
            });
        }
        let (chart, images, chart_keys) = self.chart(&v.cilium, &via, &now, &mut asked)?;
        artifacts.push(chart);
        for image in images {
            let base = like(image.name).expect("every preset pins every chart image");
            artifacts.push(Artifact {
                set: None,
                component: VersionKey::Cilium.key().to_string(),
                version: v.cilium.clone(),
                upstream_version: image.tag.clone(),
                reference: Some(image.reference.clone()),
                digest: Some(image.digest.clone()),
                source: format!(
                    "values.yaml {} of the Cilium chart {} (locked as cilium-chart), read {now}",
                    image.key, v.cilium
                ),
                ..base
            });
        }
        let pause = like("pause").expect("every preset pins pause");
        for (base, key, version, tag) in [
            (
                like("coredns").expect("every preset pins coredns"),
                VersionKey::Coredns,
                v.coredns.clone(),
                format!("v{}", v.coredns),
            ),
            (pause.clone(), VersionKey::Kubernetes, v.kubernetes.clone(), pause.upstream_version.clone()),
        ] {
            let upstream = base.locator().rsplit_once(':').map_or(base.locator(), |(r, _)| r).to_string();
            let found = self.registry_digest(&upstream, &tag, &mut asked)?;
            artifacts.push(Artifact {
                set: None,
                component: key.key().to_string(),
                version,
                upstream_version: tag.clone(),
                reference: Some(format!("{upstream}:{tag}")),
                digest: Some(found.digest.clone()),
                source: format!("GET {} ({}), read {now}", found.url, found.media_type),
                ..base
            });
        }
        if v.cilium_cli == preset.pins().cilium_cli {
            artifacts.extend(
                shape
                    .artifacts
                    .iter()
                    .filter(|a| a.name.starts_with("connectivity-"))
                    .cloned()
                    .map(|a| Artifact { set: None, ..a }),
            );
        }
        let lock = Lock {
            format: FORMAT,
            resolved: format!("{now} by kthw {}{via}", crate::VERSION),
            versions: v.clone(),
            chart_keys,
            artifacts,
        };
        Ok(Resolved { lock, asked })
    }

    /// The chart archive's digest from the Helm repository's index, the archive itself (kept in the cache),
    /// and from its values.yaml the images it deploys and its top-level keys.
    fn chart(
        &self,
        version: &str,
        via: &str,
        now: &str,
        asked: &mut Vec<String>,
    ) -> Result<(Artifact, Vec<super::ChartImage>, Vec<String>), ResolveError> {
        let index_url = format!("{HELM_REPOSITORY}/index.yaml");
        let what = format!("cilium {version} (its Helm chart)");
        let index = self.fetch(&index_url, &what, asked)?;
        let index = self.read(&index)?;
        let chart_err = |url: &str, problem: String| ResolveError::Chart {
            version: version.to_string(),
            url: self.url_of(url),
            problem,
        };
        let (url, digest) = index_entry(&index, "cilium", version).map_err(|p| match p.contains("has no version") {
            true => ResolveError::NotFound { what: what.clone(), url: self.url_of(&index_url), status: 404 },
            false => chart_err(&index_url, p),
        })?;
        let url = if url.contains("://") { url } else { format!("{HELM_REPOSITORY}/{url}") };
        let artifact = Artifact {
            name: "cilium-chart".to_string(),
            set: None,
            kind: Kind::File,
            component: VersionKey::Cilium.key().to_string(),
            version: version.to_string(),
            upstream_version: format!("v{version}"),
            url: Some(url.clone()),
            reference: None,
            checksum: Some(digest.clone()),
            digest: None,
            source: format!("{index_url} entries.cilium {version} digest{via}, read {now}"),
            missing_checksum: None,
            phases: vec![Phase::Cilium],
            scenarios: Vec::new(),
        };
        let expected = Checksum::parse(&digest).expect("index_entry checked the digest");
        let archive = self.fetch(&url, &what, asked)?;
        let actual = Checksum::of_file(expected.algorithm, &archive).map_err(|source| ResolveError::Io {
            action: "hash",
            path: archive.clone(),
            source,
        })?;
        if actual != expected {
            return Err(chart_err(&url, format!("the archive hashes to {actual}, the index says {expected}")));
        }
        let bytes = std::fs::read(&archive).map_err(|source| ResolveError::Io {
            action: "read",
            path: archive.clone(),
            source,
        })?;
        let values = values_yaml(&bytes).map_err(|p| chart_err(&url, p))?;
        let images = chart_images(&values).map_err(|p| chart_err(&url, p))?;
        let keys = top_level_keys(&values).map_err(|p| chart_err(&url, p))?;
        if let Some(cache) = &self.cache {
            let into = cache.path_of(&artifact);
            let dir = into.parent().expect("artifact paths have a parent");
            std::fs::create_dir_all(dir).map_err(|source| ResolveError::Io {
                action: "create",
                path: dir.to_path_buf(),
                source,
            })?;
            std::fs::copy(&archive, &into).map_err(|source| ResolveError::Io {
                action: "keep the chart in",
                path: into.clone(),
                source,
            })?;
            cache.verify(&artifact, &into, &expected).map_err(|e| chart_err(&url, e.to_string()))?;
        }
        Ok((artifact, images, keys))
    }

    fn registry_digest(
        &self,
        upstream: &str,
        tag: &str,
        asked: &mut Vec<String>,
    ) -> Result<super::RegistryDigest, ResolveError> {
        let what = format!("{upstream}:{tag}");
        let mirror = self.sources.registry.as_ref().or(self.sources.files.as_ref());
        let (name, plain_http) = match mirror {
            Some(m) => (m.repository(upstream), m.plain_http()),
            None => (upstream.to_string(), false),
        };
        let (host, repository) = name.split_once('/').unwrap_or(("", &name));
        let found = super::manifest_digest(&self.download, host, plain_http, repository, tag)
            .map_err(|problem| ResolveError::Registry { what: what.clone(), problem })?;
        asked.push(found.url.clone());
        Ok(found)
    }
}
