//! Cilium's Helm chart as the lock reads it: the chart archive's digest from the Helm repository's
//! `index.yaml` (Helm's repository index: per chart version `digest`, the archive's sha256, and `urls`,
//! relative to the repository or absolute), and from the chart's `values.yaml` the images `cilium install`
//! deploys, each by the digest the chart writes into its pods (`repository:tag@digest` when `useDigest`).

use std::io::Read;

use serde_json::Value;

/// One image the chart deploys by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartImage {
    /// The artifact name kthw gives it (the presets use the same).
    pub name: &'static str,
    /// `repository:tag`, as the pod spec names it before `@digest`.
    pub reference: String,
    pub tag: String,
    pub digest: String,
    /// Where in values.yaml: `image.digest`.
    pub key: String,
}

fn yaml(text: &str, what: &str) -> Result<Value, String> {
    serde_saphyr::from_str::<Value>(text).map_err(|e| format!("{what} is not YAML: {e}"))
}

/// The `entries.cilium[]` entry of a Helm repository index for `version`: its archive URL (as the index
/// writes it) and the sha256 of the archive.
pub fn index_entry(index: &str, chart: &str, version: &str) -> Result<(String, String), String> {
    let v = yaml(index, "the index")?;
    let entries = v["entries"][chart].as_array().ok_or_else(|| format!("it has no entries.{chart} list"))?;
    let entry = entries
        .iter()
        .find(|e| e["version"].as_str() == Some(version))
        .ok_or_else(|| format!("entries.{chart} has no version {version}"))?;
    let url = entry["urls"][0].as_str().ok_or_else(|| format!("entries.{chart} {version} has no urls"))?;
    let digest = entry["digest"].as_str().ok_or_else(|| format!("entries.{chart} {version} has no digest"))?;
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("entries.{chart} {version} digest {digest:?} is not a sha256 hex digest"));
    }
    Ok((url.to_string(), format!("sha256:{}", digest.to_ascii_lowercase())))
}

/// `cilium/values.yaml` out of the chart archive (a gzipped tar whose top directory is the chart's name).
pub fn values_yaml(archive: &[u8]) -> Result<String, String> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let entries = tar.entries().map_err(|e| format!("it is not a gzipped tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("it is not a gzipped tar: {e}"))?;
        let path = entry.path().map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        if path == "cilium/values.yaml" {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(|e| format!("cilium/values.yaml: {e}"))?;
            return Ok(text);
        }
    }
    Err("it holds no cilium/values.yaml".to_string())
}

/// The images the chart deploys with the values `cilium install` leaves at their defaults: the agent
/// (`image`), the operator (`operator.image`, its repository suffixed `-generic` off the clouds: the chart's
/// templates/cilium-operator/_helpers.tpl "cilium.operator.image"), and Envoy (`envoy.image`).
pub fn chart_images(values: &str) -> Result<Vec<ChartImage>, String> {
    let v = yaml(values, "values.yaml")?;
    let one = |name: &'static str, path: &[&str], digest_key: &str, suffix: &str| -> Result<ChartImage, String> {
        let at = path.join(".");
        let mut node = &v;
        for p in path {
            node = &node[*p];
        }
        let field = |k: &str| -> Result<String, String> {
            match &node[k] {
                Value::String(s) => Ok(s.clone()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(format!("values.yaml has no {at}.{k}")),
            }
        };
        if field("useDigest")? != "true" {
            return Err(format!("values.yaml {at}.useDigest is not true: the chart would deploy it by tag"));
        }
        let digest = field(digest_key)?;
        crate::artifacts::Checksum::parse(&digest).map_err(|e| format!("values.yaml {at}.{digest_key}: {e}"))?;
        let tag = field("tag")?;
        Ok(ChartImage {
            name,
            reference: format!("{}{suffix}:{tag}", field("repository")?),
            tag,
            digest,
            key: format!("{at}.{digest_key}"),
        })
    };
    Ok(vec![
        one("cilium", &["image"], "digest", "")?,
        one("cilium-operator-generic", &["operator", "image"], "genericDigest", "-generic")?,
        one("cilium-envoy", &["envoy", "image"], "digest", "")?,
    ])
}

/// The top-level keys of values.yaml: what `cilium.values` may set.
pub fn top_level_keys(values: &str) -> Result<Vec<String>, String> {
    match yaml(values, "values.yaml")? {
        Value::Object(map) => Ok(map.keys().cloned().collect()),
        _ => Err("values.yaml is not a mapping".to_string()),
    }
}
