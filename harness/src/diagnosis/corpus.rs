//! The corpus (corpus.toml) held against the classifier: every case read as upstream writes it, in the
//! wrapping it comes in, and nothing named in a healthy cluster.

use super::*;

/// The forms of real outputs, each citing where upstream writes the words and where the public shows the
/// wrapping, with values written by hand.
const CORPUS: &str = include_str!("corpus.toml");

/// One case of the corpus.
struct Case {
    name: String,
    wrapping_kind: String,
    text: String,
    expect: Vec<toml::Table>,
}

fn corpus() -> Vec<Case> {
    let doc: toml::Table = toml::from_str(CORPUS).expect("corpus.toml parses");
    let field = |c: &toml::Value, k: &str| c[k].as_str().unwrap_or_else(|| panic!("{k} in {c:?}")).to_string();
    doc["case"]
        .as_array()
        .expect("[[case]] entries")
        .iter()
        .map(|c| Case {
            name: field(c, "name"),
            wrapping_kind: field(c, "wrapping_kind"),
            text: field(c, "text"),
            expect: c["expect"].as_array().unwrap().iter().map(|e| e.as_table().unwrap().clone()).collect(),
        })
        .collect()
}

/// A finding's kind and its fields as text, in the corpus's terms.
fn fields(f: &Finding) -> (&'static str, Vec<(&'static str, String)>) {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    match f {
        Finding::NodeNameUnresolvable { name, resolver, reason } => (
            "NodeNameUnresolvable",
            vec![("name", name.clone()), ("resolver", resolver.clone()), ("reason", reason.clone())],
        ),
        Finding::AgentStatusUnavailable { pod, detail } => {
            ("AgentStatusUnavailable", vec![("pod", pod.clone()), ("detail", detail.clone())])
        }
        Finding::Forbidden { user, verb, resource, api_group } => (
            "Forbidden",
            vec![
                ("user", user.clone()),
                ("verb", verb.clone()),
                ("resource", resource.clone()),
                ("api_group", api_group.clone()),
            ],
        ),
        Finding::ImageNotPulled { image, node, since, state } => (
            "ImageNotPulled",
            vec![("image", opt(image)), ("node", opt(node)), ("since", opt(since)), ("state", state.clone())],
        ),
        Finding::ImagePullFailed { image, node, reason, message } => (
            "ImagePullFailed",
            vec![("image", opt(image)), ("node", opt(node)), ("reason", reason.clone()), ("message", message.clone())],
        ),
        Finding::ContainerCreating { pod } => ("ContainerCreating", vec![("pod", opt(pod))]),
        Finding::CrashLoop { pod, state, restarts, .. } => {
            ("CrashLoop", vec![("pod", pod.clone()), ("state", state.clone()), ("restarts", restarts.clone())])
        }
        Finding::ApiserverUnreachable { endpoint, reason } => {
            ("ApiserverUnreachable", vec![("endpoint", endpoint.clone()), ("reason", reason.clone())])
        }
    }
}

/// What is wrong with the classifier's reading of `case`: a kind it should not find or missed, or an expected
/// finding none of whose kind matches on every field given.
fn misreadings(case: &Case) -> Vec<String> {
    let found: Vec<(&str, Vec<(&str, String)>)> = diagnose(&case.text).iter().map(fields).collect();
    let mut wrong = Vec::new();
    let expected_kinds: Vec<&str> = case.expect.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for (kind, _) in &found {
        if !expected_kinds.contains(kind) {
            wrong.push(format!("found a {kind} it should not: {found:?}"));
        }
    }
    for e in &case.expect {
        let kind = e["kind"].as_str().unwrap();
        let matches = |fs: &Vec<(&str, String)>| {
            e.iter()
                .filter(|(k, _)| *k != "kind")
                .all(|(k, v)| fs.iter().any(|(name, value)| name == k && Some(value.as_str()) == v.as_str()))
        };
        if !found.iter().any(|(k, fs)| *k == kind && matches(fs)) {
            wrong.push(format!("missed {e}: found {found:?}"));
        }
    }
    wrong
}

#[test]
fn the_corpus_is_read_as_upstream_writes_it_in_every_wrapping() {
    let cases = corpus();
    let wrong: Vec<String> = cases
        .iter()
        .flat_map(|c| misreadings(c).into_iter().map(move |w| format!("{} [{}]: {w}", c.name, c.wrapping_kind)))
        .collect();
    assert!(wrong.is_empty(), "{} misreadings:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn the_corpus_holds_every_kind_in_several_wrappings_and_healthy_clusters() {
    let cases = corpus();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let healthy = cases.iter().filter(|c| c.expect.is_empty()).count();
    assert!(healthy >= 5, "{healthy} healthy cases");
    for kind in [
        "NodeNameUnresolvable",
        "AgentStatusUnavailable",
        "Forbidden",
        "ImageNotPulled",
        "ImagePullFailed",
        "ContainerCreating",
        "CrashLoop",
        "ApiserverUnreachable",
    ] {
        let mut wrappings: Vec<&str> = cases
            .iter()
            .filter(|c| c.expect.iter().any(|e| e["kind"].as_str() == Some(kind)))
            .map(|c| c.wrapping_kind.as_str())
            .collect();
        wrappings.sort();
        wrappings.dedup();
        assert!(wrappings.len() >= 2, "{kind} is met in {wrappings:?} only");
    }
    for wrapping in ["json", "logfmt", "klog", "markdown", "get-pods", "describe", "cilium-status", "plain"] {
        assert!(cases.iter().any(|c| c.wrapping_kind == wrapping), "no case in {wrapping}");
    }
    // A corpus case that a misreading would pass is no test: each positive must name something.
    for c in cases.iter().filter(|c| !c.expect.is_empty()) {
        assert!(!diagnose(&c.text).is_empty() || !misreadings(c).is_empty(), "{}", c.name);
    }
}

/// The seed's own words (shared/seed/cilium-bootstrap.md).
const SEED_DNS: &str = "dial tcp: lookup worker-node-2 on 127.0.0.53:53: server misbehaving";

#[test]
fn a_misreading_of_the_corpus_is_caught() {
    let case = |text: &str, expect: &str| Case {
        name: "t".into(),
        wrapping_kind: "plain".into(),
        text: text.into(),
        expect: toml::from_str::<toml::Table>(&format!("e = [{expect}]")).unwrap()["e"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_table().unwrap().clone())
            .collect(),
    };
    assert!(misreadings(&case(SEED_DNS, r#"{ kind = "NodeNameUnresolvable", name = "worker-node-2" }"#)).is_empty());
    assert_eq!(misreadings(&case(SEED_DNS, r#"{ kind = "NodeNameUnresolvable", name = "worker-node-1" }"#)).len(), 1);
    assert_eq!(misreadings(&case(SEED_DNS, "")).len(), 1, "a finding in a healthy case");
    assert_eq!(misreadings(&case("all fine", r#"{ kind = "CrashLoop" }"#)).len(), 1, "a miss");
}
