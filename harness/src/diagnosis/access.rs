//! Recognisers for reaching and being allowed: an apiserver that does not answer, an identity refused (by the
//! apiserver's RBAC or by a kubelet's authorizer), and a node name the asking host cannot resolve. Each reads
//! one normalised line ([`super::text::normalise`]).

use super::Finding;

/// The group a kubelet's refusal is reported under: the kubelet API is no API group, and its fix is not
/// another kubeconfig but a right for the apiserver's kubelet-client identity.
pub const KUBELET_API: &str = "kubelet API";

/// The group of a refused non-resource URL (`/`, `/version`, `/metrics`).
pub const NON_RESOURCE: &str = "non-resource URL";

/// Go's resolver error (golang/go@go1.23.6:src/net/net.go, DNSError.Error: `lookup NAME on SERVER: ERR`).
pub(super) fn node_name_lookup(line: &str) -> Option<Finding> {
    let rest = &line[line.find("lookup ")? + "lookup ".len()..];
    let (name, rest) = rest.split_once(" on ")?;
    let (resolver, reason) = rest.split_once(": ")?;
    // A dotted name is a service or external host, not a node's single-label hostname.
    if name.is_empty() || name.contains('.') || name.contains(' ') {
        return None;
    }
    let reason = reason.split([',', '"']).next().unwrap_or(reason).trim();
    Some(Finding::NodeNameUnresolvable { name: name.into(), resolver: resolver.into(), reason: reason.into() })
}

/// A refusal. Terminals and logs wrap it, so the user or the group may be on the next line.
pub(super) fn forbidden(line: &str, next: &str) -> Option<Finding> {
    if line.trim_end().ends_with("User") {
        return forbidden_text(&format!("{} {}", line.trim_end(), next.trim_start()));
    }
    let f = forbidden_text(line)?;
    match &f {
        Finding::Forbidden { api_group, .. }
            if api_group == "core" && !line.contains("in API group") && !line.contains(" at the cluster scope") =>
        {
            forbidden_text(&format!("{line} {next}")).or(Some(f))
        }
        _ => Some(f),
    }
}

/// The apiserver's refusal in each form it has had (kubernetes/kubernetes
/// staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go, forbiddenMessage):
/// `User "U" cannot VERB resource "R" in API group "G" ...` (since 1.11), `User "U" cannot VERB path "P"`
/// (a non-resource URL), and before 1.11 `User "U" cannot VERB R[.GROUP][/SUB] at the cluster scope` or
/// `... in the namespace "N"`; then the kubelet's own ([`kubelet_forbidden`]).
pub(super) fn forbidden_text(text: &str) -> Option<Finding> {
    let Some(at) = text.find("User \"") else { return kubelet_forbidden(text) };
    let rest = &text[at + "User \"".len()..];
    let (user, rest) = rest.split_once("\" cannot ")?;
    let (verb, rest) = rest.split_once(' ')?;
    let found = |resource: &str, api_group: &str| Finding::Forbidden {
        user: user.into(),
        verb: verb.into(),
        resource: resource.into(),
        api_group: api_group.into(),
    };
    if let Some(rest) = rest.strip_prefix("resource \"") {
        let (resource, rest) = rest.split_once('"')?;
        let group = rest
            .split_once("in API group \"")
            .and_then(|(_, g)| g.split_once('"'))
            .map(|(g, _)| if g.is_empty() { "core" } else { g })
            .unwrap_or("core");
        return Some(found(resource, group));
    }
    if let Some(rest) = rest.strip_prefix("path \"") {
        return Some(found(rest.split_once('"')?.0, NON_RESOURCE));
    }
    // The older form: the resource with its group after a dot and its subresource after a slash, then the scope.
    let (named, scope) = rest.split_once(' ')?;
    if !(scope.starts_with("at the cluster scope") || scope.starts_with("in the namespace")) {
        return None;
    }
    let (named, sub) = named.split_once('/').map_or((named, None), |(n, s)| (n, Some(s)));
    let (resource, group) = named.split_once('.').unwrap_or((named, "core"));
    let resource = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource.to_string(),
    };
    Some(found(&resource, group))
}

/// A kubelet refusing a caller, usually the apiserver proxying exec, logs or port-forward
/// (kubernetes/kubernetes@v1.32.4:pkg/kubelet/server/server.go InstallAuthFilter:
/// `Forbidden (user=%s, verb=%s, resource=%s, subresource=%s)`).
fn kubelet_forbidden(text: &str) -> Option<Finding> {
    let rest = &text[text.find("Forbidden (user=")? + "Forbidden (".len()..];
    let inner = rest.split(')').next()?;
    let field = |k: &str| {
        inner.split(", ").find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('='))).map(str::to_string)
    };
    let (resource, sub) = (field("resource")?, field("subresource").unwrap_or_default());
    Some(Finding::Forbidden {
        user: field("user")?,
        verb: field("verb")?,
        resource: if sub.is_empty() { resource } else { format!("{resource}/{sub}") },
        api_group: KUBELET_API.into(),
    })
}

/// The apiserver's own answer, a `Status` object (`"kind":"Status"`), as a client prints its body on one line:
/// the message carries user, verb and resource, `details.group` the group. Read from the raw line (before
/// unescaping), which is JSON.
pub(super) fn status_json(line: &str) -> Option<Finding> {
    let start = line.find("{\"kind\":\"Status\"")?;
    let mut stream = serde_json::Deserializer::from_str(&line[start..]).into_iter::<serde_json::Value>();
    let status = stream.next()?.ok()?;
    if status["reason"] != "Forbidden" {
        return None;
    }
    match forbidden_text(status["message"].as_str()?)? {
        Finding::Forbidden { user, verb, resource, api_group } => {
            let group = status["details"]["group"].as_str().filter(|g| !g.is_empty()).map(str::to_string);
            Some(Finding::Forbidden { user, verb, resource, api_group: group.unwrap_or(api_group) })
        }
        other => Some(other),
    }
}

/// What a client says when the apiserver does not answer: Go's url.Error around a request to an API path
/// (`Get "<url>": dial tcp <addr>: ...`, golang/go@go1.23.6:src/net/url/url.go Error; unquoted before go1.14;
/// any method: the kubelet registers with a `Post`), or kubectl's own sentences
/// (kubernetes/kubernetes@v1.32.4:staging/src/k8s.io/kubectl/pkg/cmd/util/helpers.go: `Unable to connect to
/// the server: %v`, `The connection to the server %s was refused - did you specify the right host or port?`).
pub(super) fn apiserver_unreachable(line: &str) -> Option<Finding> {
    if let Some(rest) = line.split_once("Unable to connect to the server: ").map(|(_, r)| r.trim()) {
        let endpoint = rest
            .split_once("dial tcp ")
            .and_then(|(_, a)| a.split_once(": "))
            .map_or("the kubeconfig's server".to_string(), |(addr, _)| addr.to_string());
        return Some(Finding::ApiserverUnreachable { endpoint, reason: rest.into() });
    }
    if let Some((_, rest)) = line.split_once("The connection to the server ") {
        let (server, _) = rest.split_once(" was refused")?;
        return Some(Finding::ApiserverUnreachable {
            endpoint: server.into(),
            reason: "connection refused (kubectl: did you specify the right host or port?)".into(),
        });
    }
    ["Get", "Post", "Put", "Patch", "Delete"].iter().find_map(|m| request_refused(line, m))
}

/// `METHOD "<url>": <network error>` (or `METHOD <url>: ...` before go1.14) against an apiserver path.
fn request_refused(line: &str, method: &str) -> Option<Finding> {
    let (url, rest) = match line.split_once(&format!("{method} \"")) {
        Some((_, r)) => r.split_once("\": ")?,
        None => line.split_once(&format!("{method} http"))?.1.split_once(": ")?,
    };
    let url = if url.starts_with("http") { url.to_string() } else { format!("http{url}") };
    let (scheme, after) = url.split_once("://")?;
    let (host, path) = after.split_once('/').unwrap_or((after, ""));
    let api = ["api", "apis", "version", "healthz", "livez", "readyz", "openapi"];
    let top = path.split(['/', '?']).next().unwrap_or("");
    let network = ["dial tcp", "read tcp", "write tcp", "net/http: TLS handshake timeout"];
    if !api.contains(&top) || !network.iter().any(|n| rest.starts_with(n)) {
        return None;
    }
    // The error ends where its quoted value does (logfmt, klog) or its bracketed list (`[Get ...]`).
    let mut reason = rest.split('"').next().unwrap_or(rest).trim();
    if reason.matches(']').count() > reason.matches('[').count() {
        reason = reason.trim_end_matches(']');
    }
    Some(Finding::ApiserverUnreachable { endpoint: format!("{scheme}://{host}"), reason: reason.into() })
}
