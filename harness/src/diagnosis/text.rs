//! How a line is read before any recogniser sees it, and the column shapes recognisers share. Upstream's
//! words arrive wrapped: quoted in markdown (`> `), inside logfmt, klog and JSON strings whose quotes are
//! escaped (`error="Get \"https://...\": ..."`, the kubelet's `err="... \"Back-off pulling image \\\"X\\\"\""`,
//! escaped once per layer), or in tables whose columns shift (`kubectl get pods -A` adds NAMESPACE first).

/// A line as the recognisers read it: markdown quote markers removed and escaped quotes unescaped, as many
/// layers as there are (a klog value quoting an error that quotes an image is two).
pub(super) fn normalise(line: &str) -> String {
    let mut text = unquote_markdown(line).to_string();
    // Each pass removes one layer; three are the most any upstream wrapping seen here nests.
    for _ in 0..3 {
        let once = unescape_once(&text);
        if once == text {
            break;
        }
        text = once;
    }
    text
}

/// The line without markdown's blockquote markers (`> `, `>> `), the way an issue quotes output.
pub(super) fn unquote_markdown(line: &str) -> &str {
    let mut rest = line.trim_start();
    while let Some(r) = rest.strip_prefix('>') {
        rest = r.strip_prefix(' ').unwrap_or(r);
    }
    rest
}

/// `\"` to `"` and `\\` to `\`, left to right, once: one layer of Go's `%q`/strconv.Quote, JSON or logfmt.
fn unescape_once(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&n) = chars.peek() {
                if n == '"' || n == '\\' {
                    out.push(n);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// `key: value` of a YAML line (`- key: value` too), unquoted.
pub(super) fn yaml_value(line: &str, key: &str) -> Option<String> {
    let t = line.trim_start().trim_start_matches("- ");
    let v = t.strip_prefix(key)?.strip_prefix(':')?.trim();
    Some(v.trim_matches('"').to_string())
}

/// A `kubectl get pods` row: the pod, its STATUS and its RESTARTS count (without `(52s ago)`). The READY
/// column (`0/1`) anchors it: the pod is the word before it, after an optional NAMESPACE column
/// (kubernetes/kubernetes@v1.32.4:pkg/printers/internalversion/printers.go, printPod).
pub(super) fn pod_row(line: &str) -> Option<(String, String, String)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let ready = words.iter().position(|w| is_ready(w))?;
    if !(1..=2).contains(&ready) {
        return None;
    }
    let pod = words[ready - 1].trim_start_matches("pod/").to_string();
    let status = words.get(ready + 1)?.to_string();
    let restarts = words.get(ready + 2).map(|r| r.to_string()).unwrap_or_default();
    Some((pod, status, restarts))
}

/// `0/1`, `2/2`: a READY column's value.
fn is_ready(word: &str) -> bool {
    word.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && a.chars().all(|c| c.is_ascii_digit()) && b.chars().all(|c| c.is_ascii_digit())
    })
}

/// An age as kubectl prints it (`48s`, `5m36s`, `2d3h`: k8s.io/apimachinery's duration.HumanDuration).
pub(super) fn is_age(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_digit())
        && word.ends_with(|c: char| c.is_ascii_alphabetic())
        && word.chars().all(|c| c.is_ascii_digit() || "smhdy".contains(c))
}

/// An event's age in `kubectl describe` (the word after the reason, with ` (x3 over 2m)` when it repeated:
/// staging/src/k8s.io/kubectl/pkg/describe/describe.go DescribeEvents) or `kubectl get events` (the first
/// column, LAST SEEN).
pub(super) fn event_age(words: &[&str], reason: &str) -> Option<String> {
    if let Some(p) = words.iter().position(|w| *w == reason) {
        if let Some(age) = words.get(p + 1).filter(|w| is_age(w)) {
            let repeat = words.get(p + 2..p + 5).filter(|r| r[0].starts_with("(x") && r[1] == "over");
            return Some(match repeat {
                Some(r) => format!("{age} {} {} {}", r[0], r[1], r[2]),
                None => age.to_string(),
            });
        }
    }
    words.first().filter(|w| is_age(w)).map(|w| w.to_string())
}

/// The node an event's source names: `kubelet, worker-node-1` in `kubectl describe` before the source lost
/// its host (formatEventSource, Kubernetes up to 1.19).
pub(super) fn event_node(words: &[&str]) -> Option<String> {
    let p = words.iter().position(|w| *w == "kubelet,")?;
    words.get(p + 1).map(|n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_quotes_are_unescaped_layer_by_layer() {
        // Written by hand to exercise the unescaping: a klog value quoting an error that quotes an image.
        let klog = r#"err="failed to \"StartContainer\" with ImagePullBackOff: \"Back-off pulling image \\\"quay.io/x:v1\\\"\"""#;
        assert_eq!(
            normalise(klog),
            r#"err="failed to "StartContainer" with ImagePullBackOff: "Back-off pulling image "quay.io/x:v1""""#
        );
        assert_eq!(normalise(r"C:\path"), r"C:\path", "a lone backslash stays");
        assert_eq!(normalise("> > kubectl get pods"), "kubectl get pods");
    }

    #[test]
    fn pod_rows_are_found_with_or_without_a_namespace_column() {
        let row = pod_row;
        assert_eq!(
            row("kube-system   cilium-7xkq2   0/1   CrashLoopBackOff   6 (52s ago)   9m"),
            Some(("cilium-7xkq2".into(), "CrashLoopBackOff".into(), "6".into()))
        );
        assert_eq!(row("pod/cilium-7xkq2 0/1 Running 0 9m").unwrap().0, "cilium-7xkq2");
        assert_eq!(row("Desired: 2, Ready: 2/2, Available: 2/2"), None, "2/2, is not a READY column");
        assert_eq!(row("  Warning  Failed  27s  kubelet  Error: ErrImagePull"), None);
    }

    #[test]
    fn ages_and_repeats_are_read_from_either_events_table() {
        let w = |l: &'static str| l.split_whitespace().collect::<Vec<_>>();
        assert_eq!(
            event_age(&w("Normal Pulling 10s (x3 over 2m) kubelet Pulling"), "Pulling").unwrap(),
            "10s (x3 over 2m)"
        );
        assert_eq!(event_age(&w("45s Normal Pulling pod/x Pulling image"), "Pulling").unwrap(), "45s");
        assert_eq!(event_age(&w("I1207 x reason=\"Pulling\""), "Pulling"), None);
        assert!(is_age("5m36s") && !is_age("E1207") && !is_age("v1.35"));
    }
}
