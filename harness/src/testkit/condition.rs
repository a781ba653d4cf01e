//! What [`Kube::wait_for`](super::Kube::wait_for) waits for, judged on the object as the apiserver returns it
//! (JSON), or on its absence. Each judgement that is not yet met says what it saw, which the deadline's error
//! then carries.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// A condition on one Kubernetes object.
///
/// ```
/// use kthw::testkit::Condition;
/// use serde_json::json;
/// let pod = json!({"status": {"phase": "Running", "podIP": "10.200.1.7",
///                            "conditions": [{"type": "Ready", "status": "True"}]}});
/// assert!(Condition::Exists.judge(Some(&pod)).is_ok());
/// assert!(Condition::status("Ready").judge(Some(&pod)).is_ok());
/// assert!(Condition::PodRunning.judge(Some(&pod)).is_ok());
/// assert_eq!(Condition::Deleted.judge(Some(&pod)).unwrap_err(), "it still exists");
/// let fresh = Condition::custom("a fresh status", |o| o["status"]["phase"] == "Pending");
/// assert!(fresh.judge(Some(&pod)).is_err());
/// ```
#[derive(Clone)]
pub enum Condition {
    /// The apiserver has the object.
    Exists,
    /// The apiserver no longer has it (finalizers done).
    Deleted,
    /// `status.conditions` holds one of this type with this status: `Ready`, `Available`, `Established`...
    Status {
        /// The condition's `type`.
        kind: String,
        /// The `status` it must have: `True`, `False` or `Unknown`.
        status: String,
    },
    /// A pod in phase Running with an address.
    PodRunning,
    /// A predicate of the caller's own, named for the errors.
    Custom {
        /// What it waits for, as errors say it.
        what: String,
        /// Whether the object as the apiserver returns it meets it.
        holds: Arc<dyn Fn(&Value) -> bool + Send + Sync>,
    },
}

impl Condition {
    /// `status.conditions` has `kind` with status `True` (a Deployment's `Available`, a Node's `Ready`).
    pub fn status(kind: &str) -> Condition {
        Condition::Status { kind: kind.to_string(), status: "True".to_string() }
    }

    /// A predicate of the caller's own on the object, named `what` in errors.
    pub fn custom(what: &str, holds: impl Fn(&Value) -> bool + Send + Sync + 'static) -> Condition {
        Condition::Custom { what: what.to_string(), holds: Arc::new(holds) }
    }

    /// Ok when `object` (None: the apiserver has none) meets the condition; otherwise what was seen.
    pub fn judge(&self, object: Option<&Value>) -> Result<(), String> {
        let Some(o) = object else {
            return match self {
                Condition::Deleted => Ok(()),
                _ => Err("it does not exist".to_string()),
            };
        };
        match self {
            Condition::Exists => Ok(()),
            Condition::Deleted => Err("it still exists".to_string()),
            Condition::Status { kind, status } => {
                let conditions = o["status"]["conditions"].as_array().cloned().unwrap_or_default();
                match conditions.iter().find(|c| c["type"] == kind.as_str()) {
                    Some(c) if c["status"] == status.as_str() => Ok(()),
                    Some(c) => Err(format!(
                        "{kind} is {} (reason {}, message {})",
                        text(&c["status"]),
                        text(&c["reason"]),
                        text(&c["message"])
                    )),
                    None => Err(format!("no {kind} condition; conditions: {}", summary(&conditions))),
                }
            }
            Condition::PodRunning => {
                let status = &o["status"];
                if status["phase"] == "Running" && status["podIP"].is_string() {
                    return Ok(());
                }
                let waiting: Vec<String> = status["containerStatuses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| {
                        let w = &c["state"]["waiting"];
                        w.is_object().then(|| format!("{} waiting: {}", text(&c["name"]), text(&w["reason"])))
                    })
                    .collect();
                Err(format!(
                    "phase {}, pod IP {}{}",
                    text(&status["phase"]),
                    text(&status["podIP"]),
                    if waiting.is_empty() { String::new() } else { format!(", {}", waiting.join(", ")) }
                ))
            }
            Condition::Custom { what, holds } => match holds(o) {
                true => Ok(()),
                false => Err(format!("not {what}; its status: {}", o["status"])),
            },
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Exists => f.write_str("exists"),
            Condition::Deleted => f.write_str("deleted"),
            Condition::Status { kind, status } => write!(f, "{kind}={status}"),
            Condition::PodRunning => f.write_str("running"),
            Condition::Custom { what, .. } => f.write_str(what),
        }
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({self})")
    }
}

/// A JSON string as its text, anything else as JSON (`null` for a missing field).
fn text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

fn summary(conditions: &[Value]) -> String {
    if conditions.is_empty() {
        return "none yet".to_string();
    }
    conditions.iter().map(|c| format!("{}={}", text(&c["type"]), text(&c["status"]))).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A Deployment's status as kube-controller-manager writes it while a rollout waits on an image
    /// (field names: kubernetes/kubernetes staging/src/k8s.io/api/apps/v1/types.go, DeploymentCondition).
    fn deployment_rolling_out() -> Value {
        json!({
            "kind": "Deployment",
            "status": {"conditions": [
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                 "message": "Deployment does not have minimum availability."}
            ]}
        })
    }

    #[test]
    fn a_status_condition_holds_only_when_true_and_otherwise_says_what_it_is() {
        let d = deployment_rolling_out();
        assert_eq!(Condition::status("Progressing").judge(Some(&d)), Ok(()));
        assert_eq!(
            Condition::status("Available").judge(Some(&d)).unwrap_err(),
            "Available is False (reason MinimumReplicasUnavailable, message Deployment does not have minimum \
             availability.)"
        );
        assert_eq!(
            Condition::status("Ready").judge(Some(&d)).unwrap_err(),
            "no Ready condition; conditions: Progressing=True, Available=False"
        );
        assert_eq!(
            Condition::status("Ready").judge(Some(&json!({}))).unwrap_err(),
            "no Ready condition; conditions: none yet"
        );
        assert_eq!(Condition::status("Ready").judge(None).unwrap_err(), "it does not exist");
    }

    #[test]
    fn existence_and_deletion_are_judged_on_presence() {
        let o = json!({"metadata": {"name": "x"}});
        assert_eq!(Condition::Exists.judge(Some(&o)), Ok(()));
        assert_eq!(Condition::Exists.judge(None).unwrap_err(), "it does not exist");
        assert_eq!(Condition::Deleted.judge(None), Ok(()));
        assert_eq!(Condition::Deleted.judge(Some(&o)).unwrap_err(), "it still exists");
    }

    #[test]
    fn a_pending_pod_says_why_its_containers_wait() {
        // As the kubelet reports a pull it cannot make (ContainerStateWaiting.reason; kubelet's ErrImagePull).
        let pending = json!({"status": {"phase": "Pending", "containerStatuses": [
            {"name": "main", "state": {"waiting": {"reason": "ErrImagePull"}}},
            {"name": "side", "state": {"running": {}}}
        ]}});
        assert_eq!(
            Condition::PodRunning.judge(Some(&pending)).unwrap_err(),
            "phase Pending, pod IP null, main waiting: ErrImagePull"
        );
        let running = json!({"status": {"phase": "Running", "podIP": "10.200.1.7"}});
        assert_eq!(Condition::PodRunning.judge(Some(&running)), Ok(()));
        let no_ip = json!({"status": {"phase": "Running"}});
        assert_eq!(Condition::PodRunning.judge(Some(&no_ip)).unwrap_err(), "phase Running, pod IP null");
    }

    #[test]
    fn a_custom_predicate_is_named_in_what_it_saw() {
        let three = Condition::custom("three ready replicas", |o| o["status"]["readyReplicas"] == 3);
        let two = json!({"status": {"readyReplicas": 2}});
        assert_eq!(three.judge(Some(&two)).unwrap_err(), "not three ready replicas; its status: {\"readyReplicas\":2}");
        assert_eq!(three.judge(Some(&json!({"status": {"readyReplicas": 3}}))), Ok(()));
        assert_eq!(three.to_string(), "three ready replicas");
        assert_eq!(Condition::status("Available").to_string(), "Available=True");
    }
}
