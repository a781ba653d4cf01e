//! A user's multi-document YAML as [`Kube::apply`](super::Kube::apply) sends it: one [`Doc`] per object,
//! each checked for what server-side apply needs (apiVersion, kind, metadata.name) before anything is sent,
//! and the apiserver's refusal of one turned into an error naming the document, its kind and its name.

use std::fmt;

use serde_json::Value;

use super::TestError;

/// Which Kubernetes object: what [`Kube::apply`](super::Kube::apply) returns and
/// [`Kube::wait_for`](super::Kube::wait_for) takes.
///
/// ```
/// use kthw::testkit::ObjectRef;
/// let web = ObjectRef::new("apps/v1", "Deployment", "web").within("shop");
/// assert_eq!(web.to_string(), "Deployment shop/web");
/// assert_eq!(ObjectRef::pod("shop", "client").to_string(), "Pod shop/client");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// `v1`, `apps/v1`, `cilium.io/v2`...
    pub api_version: String,
    /// `Pod`, `Deployment`, `CiliumNetworkPolicy`...
    pub kind: String,
    /// None for a cluster-scoped object (a Namespace, a ClusterRole, a CRD).
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectRef {
    /// Object `name` of `kind` in `api_version`, cluster-scoped until [`ObjectRef::within`] a namespace.
    pub fn new(api_version: &str, kind: &str, name: &str) -> ObjectRef {
        ObjectRef { api_version: api_version.into(), kind: kind.into(), namespace: None, name: name.into() }
    }

    /// The same object in namespace `ns`.
    pub fn within(mut self, ns: &str) -> ObjectRef {
        self.namespace = Some(ns.to_string());
        self
    }

    /// Pod `ns/name`.
    pub fn pod(ns: &str, name: &str) -> ObjectRef {
        ObjectRef::new("v1", "Pod", name).within(ns)
    }

    /// The group, version and kind, as discovery takes them.
    pub fn gvk(&self) -> kube::api::GroupVersionKind {
        let (group, version) = match self.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", self.api_version.as_str()),
        };
        kube::api::GroupVersionKind::gvk(group, version, &self.kind)
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// One object of the YAML given, numbered from 1 as it stands there (empty documents not counted).
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// Its number in the YAML given, from 1.
    pub index: usize,
    /// As the document says: its namespace only when it names one.
    pub target: ObjectRef,
    /// The object as sent.
    pub object: Value,
}

/// The objects of `yaml` (documents separated by `---`; a `kind: List` gives its items), each with what
/// server-side apply needs; the first document that lacks it is an error naming it.
pub fn documents(yaml: &str) -> Result<Vec<Doc>, TestError> {
    let values: Vec<Value> = serde_saphyr::from_multiple(yaml).map_err(|e| TestError::Yaml { why: e.to_string() })?;
    let mut objects = Vec::new();
    for v in values.into_iter().filter(|v| !v.is_null()) {
        match (v["kind"].as_str(), v["items"].as_array()) {
            (Some(kind), Some(items)) if kind.ends_with("List") => objects.extend(items.iter().cloned()),
            _ => objects.push(v),
        }
    }
    objects.into_iter().enumerate().map(|(i, object)| doc(i + 1, object)).collect()
}

fn doc(index: usize, object: Value) -> Result<Doc, TestError> {
    let bad = |why: String| TestError::Manifest { index, why };
    if !object.is_object() {
        return Err(bad(format!("it is not a mapping but {object}")));
    }
    let field = |path: &[&str]| {
        let mut v = &object;
        for p in path {
            v = &v[*p];
        }
        v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
    };
    let kind = field(&["kind"]).ok_or_else(|| bad("it has no kind".into()))?;
    let api_version = field(&["apiVersion"]).ok_or_else(|| bad(format!("{kind}: it has no apiVersion")))?;
    let name = field(&["metadata", "name"]).ok_or_else(|| {
        bad(format!("{kind}: it has no metadata.name (server-side apply needs one; generateName is not enough)"))
    })?;
    let target = ObjectRef { api_version, kind, namespace: field(&["metadata", "namespace"]), name };
    Ok(Doc { index, target, object })
}

/// The error for `doc` refused by the apiserver with `status`: its message (which names the field at fault),
/// reason and code, with the document's number, kind and name.
pub fn refusal(doc: &Doc, status: &kube::core::Status) -> TestError {
    let detail = match (status.reason.as_str(), status.code) {
        ("", 0) => String::new(),
        ("", code) => format!(" (HTTP {code})"),
        (reason, 0) => format!(" ({reason})"),
        (reason, code) => format!(" ({reason}, HTTP {code})"),
    };
    let t = &doc.target;
    TestError::Refused {
        index: doc.index,
        kind: t.kind.clone(),
        name: t.namespace.as_ref().map_or_else(|| t.name.clone(), |ns| format!("{ns}/{}", t.name)),
        message: format!("{}{detail}", status.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by hand to exercise the splitting: a namespaced and a cluster-scoped object, a comment-only
    // document, and a List whose items carry no namespace of their own.
    const SHOP: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
---
# a document of only a comment, as editors leave at the end
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings, namespace: shop}
";

    #[test]
    fn documents_split_in_order_with_lists_expanded_and_empty_ones_skipped() {
        let docs = documents(SHOP).unwrap();
        let got: Vec<(usize, String)> = docs.iter().map(|d| (d.index, d.target.to_string())).collect();
        assert_eq!(
            got,
            [
                (1, "Namespace shop".to_string()),
                (2, "Deployment shop/web".to_string()),
                (3, "Service web".to_string()),
                (4, "ConfigMap shop/settings".to_string()),
            ]
        );
        assert_eq!(docs[1].object["spec"]["replicas"], 2);
        assert_eq!(docs[1].target.gvk(), kube::api::GroupVersionKind::gvk("apps", "v1", "Deployment"));
        assert_eq!(docs[0].target.gvk(), kube::api::GroupVersionKind::gvk("", "v1", "Namespace"));
        assert!(documents("").unwrap().is_empty());
    }

    #[test]
    fn a_document_without_what_apply_needs_is_named() {
        // Written by hand to exercise a document server-side apply cannot take (generateName, no name).
        let no_name = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Pod\n\
                       metadata:\n  generateName: p-\n";
        let err = documents(no_name).unwrap_err().to_string();
        assert_eq!(
            err,
            "document 2 of the YAML given: Pod: it has no metadata.name (server-side apply needs one; generateName \
             is not enough)"
        );
        let err = documents("kind: Pod\nmetadata: {name: p}\n").unwrap_err().to_string();
        assert_eq!(err, "document 1 of the YAML given: Pod: it has no apiVersion");
        let err = documents("- a\n- b\n").unwrap_err().to_string();
        assert!(err.starts_with("document 1 of the YAML given: it is not a mapping"), "{err}");
        let err = documents("a: [1, 2\n").unwrap_err().to_string();
        assert!(err.starts_with("the YAML given does not parse: "), "{err}");
    }

    #[test]
    fn a_refusal_carries_the_apiservers_message_and_the_documents_kind_and_name() {
        // The Status body of a 422, as apimachinery's NewInvalid words it
        // (kubernetes/kubernetes staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go, NewInvalid).
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "Deployment.apps \"web\" is invalid: spec.selector: Required value",
            "reason": "Invalid", "code": 422
        }))
        .unwrap();
        let doc = &documents(SHOP).unwrap()[1];
        assert_eq!(
            refusal(doc, &status).to_string(),
            "the apiserver refused Deployment shop/web (document 2): Deployment.apps \"web\" is invalid: \
             spec.selector: Required value (Invalid, HTTP 422)"
        );
    }
}
