//! The JUnit report `cilium connectivity test --junit-file` writes, read for what a person needs from a failed
//! run: the totals, each failed test case with what failed in it, and whether the failure was an agent that
//! restarted rather than traffic that did not pass.
//!
//! The form is cilium-cli's writer (cilium/cilium-cli@v0.18.4 and @v0.19.7,
//! vendor/github.com/cilium/cilium/cilium-cli/): connectivity/internal/junit/junit.go marshals
//! `<testsuites tests= disabled= errors= failures= time=>` around one `<testsuite name="connectivity test">` whose
//! `<testcase name= classname="connectivity test" status= time=>` are the tests (connectivity/check/junit.go
//! `Collect`: `status` "passed", "skipped" or "failed"); a failed one holds `<failure message="<test> failed"
//! type="failure">` whose text is its failed actions, one per line (action.go `String`:
//! `<test>/<scenario>:<action>[: <peers>]`). From v0.19.7 the failure also carries each action's message as a
//! `failureMessage` attribute (`FailureMessages []string ...xml:"failureMessage,attr"`), and Go's encoding/xml
//! writes a slice attribute as one attribute per element (golang/go src/encoding/xml/marshal.go `marshalAttr`,
//! "Walk slices"): two messages are two attributes of one name, which a conforming XML parser refuses. So this
//! reads the report with a scanner of its own, not an XML parser.

/// A test case of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub name: String,
    /// `passed`, `skipped` or `failed` (the writer's `status`), or `failed` when a `<failure>` is there.
    pub status: String,
    /// A failed case's failed actions (`<test>/<scenario>:<action>[: <peers>]`), from the failure's text.
    pub actions: Vec<String>,
    /// A failed case's messages (v0.19.7's `failureMessage` attributes; none at v0.18.4).
    pub messages: Vec<String>,
}

impl Case {
    pub fn failed(&self) -> bool {
        self.status == "failed"
    }
}

/// `(tests, failures, errors)` of a JUnit report's `<testsuites>` element.
pub fn totals(xml: &str) -> Option<(u64, u64, u64)> {
    let (_, tag) = tags(xml, "testsuites").next()?;
    let number = |name: &str| attrs(tag, name).first().and_then(|v| v.parse().ok());
    Some((number("tests")?, number("failures").unwrap_or(0), number("errors").unwrap_or(0)))
}

/// Every `<testcase>` of the report, in order.
pub fn cases(xml: &str) -> Vec<Case> {
    let starts: Vec<(usize, &str)> = tags(xml, "testcase").collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, (at, tag))| {
            let end = starts.get(i + 1).map_or(xml.len(), |(next, _)| *next);
            let body = if tag.ends_with('/') { "" } else { &xml[at + tag.len() + 2..end] };
            let failure = tags(body, "failure").next();
            let first = |name: &str| attrs(tag, name).into_iter().next().unwrap_or_default();
            let status = if failure.is_some() { "failed".to_string() } else { first("status") };
            let (actions, messages) = match failure {
                Some((f_at, f_tag)) => {
                    let text = if f_tag.ends_with('/') {
                        String::new()
                    } else {
                        let rest = &body[f_at + f_tag.len() + 2..];
                        unescape(&rest[..rest.find("</failure>").unwrap_or(rest.len())])
                    };
                    let actions = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
                    (actions, attrs(f_tag, "failureMessage"))
                }
                None => (Vec::new(), Vec::new()),
            };
            Case { name: first("name"), status, actions, messages }
        })
        .collect()
}

/// An agent container that restarted during the run, as cilium-cli's `check-log-errors` test reports it:
/// connectivity/tests/errors.go `noErrorsInLogs.Run` fails an action with `Non-zero (%d) restart count of %s must
/// be investigated`, the id being `<cluster>/<namespace>/<pod> (<container>)` (errors.go:155 and :181 at
/// v0.18.4, :231 and :265 at v0.19.7). Found in the CLI's output (the test's log is printed when it fails) and,
/// from v0.19.7, in the JUnit failure's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    pub restarts: u64,
    /// `<cluster>/<namespace>/<pod>`.
    pub pod: String,
    pub container: String,
}

impl std::fmt::Display for Restart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}) restarted {} time(s)", self.pod, self.container, self.restarts)
    }
}

/// Every restart `text` reports, each once.
pub fn restarts(text: &str) -> Vec<Restart> {
    const START: &str = "Non-zero (";
    let mut found: Vec<Restart> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(START) {
        rest = &rest[at + START.len()..];
        let parsed = (|| {
            let (n, after) = rest.split_once(") restart count of ")?;
            let (id, _) = after.split_once(" must be investigated")?;
            let (pod, container) = id.rsplit_once(" (")?;
            Some(Restart {
                restarts: n.parse().ok()?,
                pod: pod.to_string(),
                container: container.strip_suffix(')')?.to_string(),
            })
        })();
        if let Some(r) = parsed.filter(|r| !found.contains(r)) {
            found.push(r);
        }
    }
    found
}

/// The name of cilium-cli's test that fails on any agent restart or error in the agents' logs
/// (connectivity/builder/check_log_errors.go `newTest("check-log-errors", ct)` at both tags).
pub const CHECK_LOG_ERRORS: &str = "check-log-errors";

/// One line per failed case for a report: its name, what failed in it, and, for `check-log-errors` failing
/// with agents that restarted (found in `output` or the case's messages), that it is a restart.
pub fn describe_failures(cases: &[Case], output: &str) -> Vec<String> {
    cases
        .iter()
        .filter(|c| c.failed())
        .map(|c| {
            let mut line = c.name.clone();
            let restarted: Vec<Restart> = if c.name == CHECK_LOG_ERRORS {
                restarts(&format!("{}\n{output}", c.messages.join("\n")))
            } else {
                vec![]
            };
            if !restarted.is_empty() {
                let list: Vec<String> = restarted.iter().map(Restart::to_string).collect();
                line.push_str(&format!(
                    ": an agent restart, not traffic that failed: {} (check-log-errors fails on any restart of a \
                     Cilium container; its previous logs are in the bundle's failing pods)",
                    list.join("; ")
                ));
            } else if !c.actions.is_empty() {
                line.push_str(&format!(": {}", c.actions.join("; ")));
            }
            for m in c.messages.iter().filter(|_| restarted.is_empty()) {
                line.push_str(&format!(" [{m}]"));
            }
            line
        })
        .collect()
}

/// The start tags named `name` in `xml`: each with its offset and its text between `<` and `>`.
fn tags<'a>(xml: &'a str, name: &str) -> std::vec::IntoIter<(usize, &'a str)> {
    let open = format!("<{name}");
    let found: Vec<(usize, &str)> = xml
        .match_indices(open.as_str())
        .filter_map(|(at, _)| {
            let rest = &xml[at + 1..];
            let after = rest[name.len()..].chars().next()?;
            if !(after.is_whitespace() || after == '>' || after == '/') {
                return None;
            }
            Some((at, &rest[..rest.find('>')?]))
        })
        .collect();
    found.into_iter()
}

/// Every value of attribute `name` in a start tag's text, unescaped (a name may repeat: see the module's note).
fn attrs(tag: &str, name: &str) -> Vec<String> {
    let key = format!(" {name}=\"");
    let mut out = Vec::new();
    let mut rest = tag;
    while let Some(at) = rest.find(&key) {
        rest = &rest[at + key.len()..];
        let Some(end) = rest.find('"') else { break };
        out.push(unescape(&rest[..end]));
        rest = &rest[end..];
    }
    out
}

/// XML's predefined entities and the character references Go's encoding/xml writes (`&#34;`, `&#39;`, `&#xA;`,
/// `&#x9;`, `&#xD;`: marshal.go `escapeText`/`EscapeString`), and any other numeric reference.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix('#')
                .and_then(|n| match n.strip_prefix('x') {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => n.parse().ok(),
                })
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed run as cilium-cli v0.19.7 writes it, written by hand in the form of
    /// cilium/cilium-cli@v0.19.7:vendor/github.com/cilium/cilium/cilium-cli/connectivity/check/junit.go
    /// (`Collect`, `Write`) and connectivity/internal/junit/junit.go (xml.Header, two-space indent, four-space
    /// step), with Go's escapes (`&#xA;` between actions, `&#39;`), an agent restart reported by
    /// connectivity/tests/errors.go, and a repeated `failureMessage` attribute as encoding/xml writes a slice.
    /// Cluster, pod names, addresses and times are ours.
    const V0_19_7_FAILED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="4" disabled="1" errors="0" failures="2" time="212.5">
    <testsuite name="connectivity test" id="0" package="cilium" tests="4" errors="0" failures="2" skipped="1" time="212.5" timestamp="2026-12-07T02:31:04Z">
        <properties></properties>
        <testcase name="no-policies" classname="connectivity test" status="failed" time="61.2">
            <failure message="no-policies failed" failureMessage="command &#34;curl -w ...&#34; failed: command terminated with exit code 28" type="failure">no-policies/pod-to-pod:curl-0: cilium-test/client-64d966fcbd-ctrb8 (10.200.1.17) -&gt; cilium-test/echo-other-node-5b87f6f4f4-8r6mh (10.200.0.31:8080)&#xA;no-policies/pod-to-service:curl-1: cilium-test/client2-6f4f8c9b7d-2k9ql (10.200.1.42) -&gt; cilium-test/echo-other-node:8080 (echo-other-node.cilium-test:8080)</failure>
        </testcase>
        <testcase name="l7-lb" classname="connectivity test" status="skipped" time="0">
            <skipped message="l7-lb skipped"></skipped>
        </testcase>
        <testcase name="client-egress" classname="connectivity test" status="passed" time="40.1"></testcase>
        <testcase name="check-log-errors" classname="connectivity test" status="failed" time="11.0">
            <failure message="check-log-errors failed" failureMessage="Non-zero (1) restart count of kubernetes/kube-system/cilium-7xk2p (cilium-agent) must be investigated" failureMessage="Found 2 logs in kubernetes/kube-system/cilium-7xk2p (cilium-agent) matching list of errors that must be investigated" type="failure">check-log-errors/no-errors-in-logs:kubernetes/kube-system/cilium-7xk2p (cilium-agent)</failure>
        </testcase>
    </testsuite>
</testsuites>"#;

    /// The same failure as cilium-cli v0.18.4 writes it, written by hand in the form of
    /// cilium/cilium-cli@v0.18.4:vendor/github.com/cilium/cilium/cilium-cli/connectivity/check/junit.go:104 (no
    /// `failureMessage`), so the restart is only in the CLI's output, where connectivity/check/logging.go
    /// `Failf` prints the message after "❌". The names are ours.
    const V0_18_4_FAILED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="2" disabled="0" errors="0" failures="1" time="95.0">
    <testsuite name="connectivity test" id="0" package="cilium" tests="2" errors="0" failures="1" time="95.0" timestamp="2026-12-07T02:31:04Z">
        <properties></properties>
        <testcase name="no-policies" classname="connectivity test" status="passed" time="84.0"></testcase>
        <testcase name="check-log-errors" classname="connectivity test" status="failed" time="11.0">
            <failure message="check-log-errors failed" type="failure">check-log-errors/no-errors-in-logs:kubernetes/kube-system/cilium-7xk2p (cilium-agent)</failure>
        </testcase>
    </testsuite>
</testsuites>"#;

    /// Written by hand in the form of the v0.18.4 CLI's output for that failure (logging.go: the test's log,
    /// then its action lines; `fail` is "❌").
    const V0_18_4_OUTPUT: &str = "[=] [cilium-test] Test [check-log-errors] [2/2]\n  \
        [.] Action [check-log-errors/no-errors-in-logs:kubernetes/kube-system/cilium-7xk2p (cilium-agent)]\n  \
        ❌ Non-zero (1) restart count of kubernetes/kube-system/cilium-7xk2p (cilium-agent) must be investigated\n";

    #[test]
    fn every_case_is_read_with_its_status_actions_and_repeated_messages() {
        assert!(roxmltree::Document::parse(V0_19_7_FAILED).is_err(), "a repeated attribute is not well-formed XML");
        assert_eq!(totals(V0_19_7_FAILED), Some((4, 2, 0)));
        let cases = cases(V0_19_7_FAILED);
        let names: Vec<(&str, &str)> = cases.iter().map(|c| (c.name.as_str(), c.status.as_str())).collect();
        assert_eq!(
            names,
            [
                ("no-policies", "failed"),
                ("l7-lb", "skipped"),
                ("client-egress", "passed"),
                ("check-log-errors", "failed")
            ]
        );
        assert_eq!(cases[0].actions.len(), 2, "{:?}", cases[0].actions);
        assert!(cases[0].actions[0].starts_with("no-policies/pod-to-pod:curl-0: cilium-test/client-"));
        assert!(cases[0].actions[0].contains("-> cilium-test/echo-other-node"), "&gt; unescaped");
        assert_eq!(cases[0].messages, ["command \"curl -w ...\" failed: command terminated with exit code 28"]);
        assert_eq!(cases[3].messages.len(), 2, "both failureMessage attributes");
        assert!(cases[2].actions.is_empty() && cases[2].messages.is_empty());
    }

    #[test]
    fn an_agent_restart_is_told_from_traffic_that_failed_at_both_cli_versions() {
        let said = describe_failures(&cases(V0_19_7_FAILED), "");
        assert_eq!(said.len(), 2);
        assert!(said[0].starts_with("no-policies: no-policies/pod-to-pod:curl-0"), "{}", said[0]);
        assert!(said[0].contains("exit code 28") && !said[0].contains("restart"), "{}", said[0]);
        assert!(
            said[1].starts_with("check-log-errors: an agent restart, not traffic that failed: ")
                && said[1].contains("kubernetes/kube-system/cilium-7xk2p (cilium-agent) restarted 1 time(s)"),
            "{}",
            said[1]
        );

        let old = cases(V0_18_4_FAILED);
        assert_eq!(old[1].messages, Vec::<String>::new(), "v0.18.4 writes no failureMessage");
        let without_output = describe_failures(&old, "");
        assert_eq!(
            without_output,
            ["check-log-errors: check-log-errors/no-errors-in-logs:kubernetes/kube-system/cilium-7xk2p (cilium-agent)"]
        );
        let with_output = describe_failures(&old, V0_18_4_OUTPUT);
        assert!(
            with_output[0].contains("an agent restart") && with_output[0].contains("cilium-7xk2p"),
            "{with_output:?}"
        );
    }

    #[test]
    fn restarts_are_read_once_each_and_other_text_is_not_one() {
        let twice = format!("{V0_18_4_OUTPUT}{V0_18_4_OUTPUT}");
        assert_eq!(
            restarts(&twice),
            [Restart {
                restarts: 1,
                pod: "kubernetes/kube-system/cilium-7xk2p".into(),
                container: "cilium-agent".into()
            }]
        );
        assert!(restarts("Non-zero (x) restart count of nothing").is_empty());
        assert!(restarts("no-policies/pod-to-pod:curl-0 failed").is_empty());
    }

    #[test]
    fn go_escapes_are_undone() {
        assert_eq!(unescape("a&#xA;b &#34;c&#34; &#39;d&#39; &amp;&lt;&gt; &#x9;"), "a\nb \"c\" 'd' &<> \t");
        assert_eq!(unescape("5 & 6; &unknown;"), "5 & 6; &unknown;");
    }
}
