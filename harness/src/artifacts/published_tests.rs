//! Every pinned image's reference and digest, held against the lines of the primary source that publishes
//! them, copied here verbatim (only the lines that name the image; those between them left out). A digest
//! mistyped in artifacts.toml, or an image added without its source, fails here before a runner pulls.

use super::*;
use crate::spec::VersionSet;

/// Where an image's reference and digest are published.
pub(crate) enum Source {
    /// `values.yaml` of the Cilium chart that cilium-cli vendors at `cli` (the chart `cilium install` renders):
    /// the image is `repository` + `suffix` + `:tag` + `@` + the value of `digest_key`. The operator's
    /// `suffix` is `-generic` (the chart's templates/cilium-operator/_helpers.tpl, "cilium.operator.image":
    /// `printf "%s-%s%s%s%s" repository $cloud suffix $tag $imageDigest`, $cloud "generic" off AWS, Azure and
    /// Alibaba Cloud).
    Chart { cli: &'static str, chart: &'static str, suffix: &'static str, digest_key: &'static str },
    /// cilium-cli's defaults.go at `cli`: a map entry `"Key": "repository:tag@sha256:..."`.
    CliDefaults { cli: &'static str },
    /// A kubernetes/k8s.io promoter manifest (`images.yaml`): `- name: N` then `"sha256:...": ["tag"]`, served
    /// as `registry` + N.
    Promoter { registry: &'static str },
}

pub(crate) struct Published {
    pub(crate) set: VersionSet,
    pub(crate) name: &'static str,
    /// owner/repo@commit-or-tag:path, and the file inside an archive where there is one.
    pub(crate) at: &'static str,
    pub(crate) source: Source,
    pub(crate) excerpt: &'static str,
}

use Source::*;
use VersionSet::{Current, Seed};

const SEED_CHART: Source = Chart { cli: "v0.18.4", chart: "1.17.4", suffix: "", digest_key: "digest" };
const CURRENT_CHART: Source = Chart { cli: "v0.19.7", chart: "1.19.5", suffix: "", digest_key: "digest" };

// The excerpts: the lines of each file named in `at`, read with `git show TAG:PATH` (and `tar xzO` for the
// chart's values.yaml) from the cilium/cilium-cli repository, and with the search tool's read_file from
// kubernetes/k8s.io at the commits named.
pub(crate) const PUBLISHED: &[Published] = &[
    Published {
        set: Seed,
        name: "cilium",
        at: "cilium/cilium-cli@v0.18.4:vendor/github.com/cilium/charts/cilium-1.17.4.tgz cilium/values.yaml lines 193-198",
        source: SEED_CHART,
        excerpt: "  repository: \"quay.io/cilium/cilium\"\n  tag: \"v1.17.4\"\n  \
                  digest: \"sha256:24a73fe795351cf3279ac8e84918633000b52a9654ff73a6b0d7223bcff4a67a\"\n  useDigest: true\n",
    },
    Published {
        set: Seed,
        name: "cilium-operator-generic",
        at: "cilium/cilium-cli@v0.18.4:vendor/github.com/cilium/charts/cilium-1.17.4.tgz cilium/values.yaml lines 2716-2728",
        source: Chart { cli: "v0.18.4", chart: "1.17.4", suffix: "-generic", digest_key: "genericDigest" },
        excerpt: "    repository: \"quay.io/cilium/operator\"\n    tag: \"v1.17.4\"\n    \
                  genericDigest: \"sha256:a3906412f477b09904f46aac1bed28eb522bef7899ed7dd81c15f78b7aa1b9b5\"\n    \
                  useDigest: true\n    suffix: \"\"\n",
    },
    Published {
        set: Seed,
        name: "cilium-envoy",
        at: "cilium/cilium-cli@v0.18.4:vendor/github.com/cilium/charts/cilium-1.17.4.tgz cilium/values.yaml lines 2359-2363",
        source: SEED_CHART,
        excerpt: "    repository: \"quay.io/cilium/cilium-envoy\"\n    \
                  tag: \"v1.32.6-1746661844-0f602c28cb2aa57b29078195049fb257d5b5246c\"\n    \
                  digest: \"sha256:a04218c6879007d60d96339a441c448565b6f86650358652da27582e0efbf182\"\n    useDigest: true\n",
    },
    Published {
        set: Seed,
        name: "coredns",
        at: "kubernetes/k8s.io@9a1bd547b6a93ef57e6c6f7940b2299e9ee76ee0:registry.k8s.io/images/k8s-staging-coredns/images.yaml",
        source: Promoter { registry: "registry.k8s.io/coredns/" },
        excerpt: "- name: coredns\n  dmap:\n    \
                  \"sha256:e8c262566636e6bc340ece6473b0eed193cad045384401529721ddbe6463d31c\": [\"v1.12.1\"]\n",
    },
    Published {
        set: Seed,
        name: "pause",
        at: "kubernetes/k8s.io@ecf019a88caa0923c610e8982ca44a460c0303e5:registry.k8s.io/images/k8s-staging-kubernetes/images.yaml",
        source: Promoter { registry: "registry.k8s.io/" },
        excerpt: "- name: pause\n  dmap:\n    \
                  \"sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a\": [\"3.10\"]\n",
    },
    Published {
        set: Seed,
        name: "connectivity-curl",
        at: "cilium/cilium-cli@v0.18.4:vendor/github.com/cilium/cilium/cilium-cli/defaults/defaults.go line 170",
        source: CliDefaults { cli: "v0.18.4" },
        excerpt: "\t\t\"ConnectivityCheckAlpineCurlImage\": \"quay.io/cilium/alpine-curl:v1.10.0@sha256:913e8c9f3d960dde03882defa0edd3a919d529c2eb167caa7f54194528bde364\",\n",
    },
    Published {
        set: Seed,
        name: "connectivity-json-mock",
        at: "cilium/cilium-cli@v0.18.4:vendor/github.com/cilium/cilium/cilium-cli/defaults/defaults.go line 172",
        source: CliDefaults { cli: "v0.18.4" },
        excerpt: "\t\t\"ConnectivityCheckJSONMockImage\": \"quay.io/cilium/json-mock:v1.3.8@sha256:5aad04835eda9025fe4561ad31be77fd55309af8158ca8663a72f6abb78c2603\",\n",
    },
    Published {
        set: Current,
        name: "cilium",
        at: "cilium/cilium-cli@v0.19.7:vendor/github.com/cilium/charts/cilium-1.19.5.tgz cilium/values.yaml lines 249-254",
        source: CURRENT_CHART,
        excerpt: "  repository: \"quay.io/cilium/cilium\"\n  tag: \"v1.19.5\"\n  \
                  digest: sha256:20fbbc14ac20b55a292c0dcda5571bf31cde30a7dbc68c29db3e709390ab0732\n  useDigest: true\n",
    },
    Published {
        set: Current,
        name: "cilium-operator-generic",
        at: "cilium/cilium-cli@v0.19.7:vendor/github.com/cilium/charts/cilium-1.19.5.tgz cilium/values.yaml lines 3110-3122",
        source: Chart { cli: "v0.19.7", chart: "1.19.5", suffix: "-generic", digest_key: "genericDigest" },
        excerpt: "    repository: \"quay.io/cilium/operator\"\n    tag: \"v1.19.5\"\n    \
                  genericDigest: sha256:be848a365776e07d0c5a895eda7aec928ddc52a5a1fa2f432fd7a286609e1db4\n    \
                  useDigest: true\n    suffix: \"\"\n",
    },
    Published {
        set: Current,
        name: "cilium-envoy",
        at: "cilium/cilium-cli@v0.19.7:vendor/github.com/cilium/charts/cilium-1.19.5.tgz cilium/values.yaml lines 2725-2729",
        source: CURRENT_CHART,
        excerpt: "    repository: \"quay.io/cilium/cilium-envoy\"\n    \
                  tag: \"v1.36.8-1781157951-a7f42a3390781539911b5b9107881b35ecc4e752\"\n    \
                  digest: \"sha256:326f872e19ce8aa45170efbf583b3f301586ba3feead14b864676d4baf3b45ed\"\n    useDigest: true\n",
    },
    Published {
        set: Current,
        name: "coredns",
        at: "cilium/cilium-cli@v0.19.7:vendor/github.com/cilium/cilium/cilium-cli/defaults/defaults.go line 174",
        source: CliDefaults { cli: "v0.19.7" },
        excerpt: "\t\t\"ConnectivityDNSTestServerImage\": \"registry.k8s.io/coredns/coredns:v1.14.6@sha256:900f9c109f7a33545d3c811516e8376df9019147b750f5ce3e254468769176ea\",\n",
    },
    Published {
        set: Current,
        name: "pause",
        at: "kubernetes/k8s.io@ecf019a88caa0923c610e8982ca44a460c0303e5:registry.k8s.io/images/k8s-staging-kubernetes/images.yaml",
        source: Promoter { registry: "registry.k8s.io/" },
        excerpt: "- name: pause\n  dmap:\n    \
                  \"sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a\": [\"3.10\"]\n",
    },
    Published {
        set: Current,
        name: "connectivity-curl",
        at: "cilium/cilium-cli@v0.19.7:vendor/github.com/cilium/cilium/cilium-cli/defaults/defaults.go line 170",
        source: CliDefaults { cli: "v0.19.7" },
        excerpt: "\t\t\"ConnectivityCheckAlpineCurlImage\": \"quay.io/cilium/alpine-curl:v1.10.0@sha256:913e8c9f3d960dde03882defa0edd3a919d529c2eb167caa7f54194528bde364\",\n",
    },
    Published {
        set: Current,
        name: "connectivity-json-mock",
        at: "cilium/cilium-cli@v0.19.7:vendor/github.com/cilium/cilium/cilium-cli/defaults/defaults.go line 172",
        source: CliDefaults { cli: "v0.19.7" },
        excerpt: "\t\t\"ConnectivityCheckJSONMockImage\": \"quay.io/cilium/json-mock:v1.4.1@sha256:6a66df90808a39c02e7a9d58af7bf0e54d8f8b7d4bc528f48c891969a7049195\",\n",
    },
];

/// The `key: value` lines of a YAML excerpt, values unquoted.
fn yaml_value<'a>(excerpt: &'a str, key: &str) -> Option<&'a str> {
    excerpt.lines().find_map(|l| {
        let (k, v) = l.trim().split_once(':')?;
        (k == key).then(|| v.trim().trim_matches('"'))
    })
}

/// The image reference (`repository:tag`) and the digest the excerpt publishes, read as its source's format.
fn read(p: &Published) -> (String, String) {
    let e = p.excerpt;
    match p.source {
        Chart { suffix, digest_key, .. } => {
            let field = |k: &str| yaml_value(e, k).unwrap_or_else(|| panic!("{}: no {k} in {e}", p.at)).to_string();
            assert_eq!(field("useDigest"), "true", "{}: the chart writes the digest into the pod spec", p.at);
            assert_eq!(yaml_value(e, "suffix").unwrap_or(""), "", "{}", p.at);
            (format!("{}{suffix}:{}", field("repository"), field("tag")), field(digest_key))
        }
        CliDefaults { .. } => {
            let value = e.trim().trim_end_matches(',').rsplit_once(": ").map(|(_, v)| v.trim_matches('"'));
            let (reference, digest) = value.and_then(|v| v.split_once('@')).unwrap_or_else(|| panic!("{e}"));
            (reference.to_string(), digest.to_string())
        }
        Promoter { registry } => {
            let name = e.lines().find_map(|l| l.strip_prefix("- name: ")).unwrap_or_else(|| panic!("{e}"));
            let entry =
                e.lines().find_map(|l| l.trim().strip_prefix('"')?.split_once("\": ")).unwrap_or_else(|| panic!("{e}"));
            let (digest, tags) = (entry.0, entry.1.trim_matches(|c| "[]\"".contains(c)));
            (format!("{registry}{name}:{tags}"), digest.to_string())
        }
    }
}

#[test]
fn every_pinned_images_reference_and_digest_are_the_ones_its_primary_source_publishes() {
    let m = Manifest::pinned();
    for set in VersionSet::ALL {
        let m = m.for_set(set);
        let cli = &m.get("cilium-cli").unwrap().upstream_version;
        for a in m.artifacts.iter().filter(|a| a.kind == Kind::Image) {
            let p = PUBLISHED
                .iter()
                .find(|p| p.set == set && p.name == a.name)
                .unwrap_or_else(|| panic!("{set} {}: no primary source for its digest in PUBLISHED", a.name));
            let (reference, digest) = read(p);
            assert_eq!(a.locator(), reference, "{set} {}: not the reference {} publishes", a.name, p.at);
            assert_eq!(
                a.digest.as_deref(),
                Some(digest.as_str()),
                "{set} {}: not the digest {} publishes",
                a.name,
                p.at
            );
            // The chart and the defaults are the pinned CLI's own: what `cilium install` and `cilium
            // connectivity test` deploy with no flags.
            match p.source {
                Chart { cli: tag, chart, .. } => {
                    assert_eq!((cli.as_str(), a.version.as_str()), (tag, chart), "{set} {}: {}", a.name, p.at);
                }
                CliDefaults { cli: tag } => assert_eq!(cli, tag, "{set} {}: {}", a.name, p.at),
                Promoter { .. } => {}
            }
        }
    }
}

#[test]
fn each_source_format_is_read_as_it_is_written() {
    // A mistyped digest or tag in an excerpt is read as written, so the comparison above would catch it.
    let p = PUBLISHED.iter().find(|p| p.set == Seed && p.name == "cilium-operator-generic").unwrap();
    assert_eq!(
        read(p),
        (
            "quay.io/cilium/operator-generic:v1.17.4".to_string(),
            "sha256:a3906412f477b09904f46aac1bed28eb522bef7899ed7dd81c15f78b7aa1b9b5".to_string()
        )
    );
    let pause = PUBLISHED.iter().find(|p| p.name == "pause").unwrap();
    assert_eq!(read(pause).0, "registry.k8s.io/pause:3.10");
    let curl = PUBLISHED.iter().find(|p| p.name == "connectivity-curl").unwrap();
    assert_eq!(read(curl).0, "quay.io/cilium/alpine-curl:v1.10.0");
}
