//! What a bundle of a failed test holds beyond a cluster's: which test it was and how to run it again
//! ([`TestRecord`], in the manifest for `kthw repro`), and what the test asked to add ([`Extras`]: a command's
//! output, a file from a node, a text of its own, the logs of every pod in the namespaces it created).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::writer::{guest, session, timed, Writer, COMMAND};
use crate::bootstrap::Layout;
use crate::cluster::Cluster;
use crate::ssh::shell_quote;

/// Pod logs kept per container: the end, where a failure shows.
const POD_LOG_LINES: usize = 500;

/// The test a bundle is of: its name, and the binary and arguments it ran with, to run it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestRecord {
    /// The name the test gave itself.
    pub name: String,
    /// The test binary (a cargo test target), when the process could tell.
    pub binary: Option<String>,
    /// The arguments it ran with (nextest runs each test as `BINARY --exact NAME --nocapture`).
    pub args: Vec<String>,
    /// The package the test belongs to (cargo and nextest give a test `CARGO_PKG_NAME`).
    pub package: Option<String>,
}

impl TestRecord {
    /// Test `name` as this process runs it.
    pub fn here(name: &str) -> TestRecord {
        let mut argv = std::env::args();
        let _ = argv.next();
        TestRecord {
            name: name.to_string(),
            binary: std::env::current_exe().ok().map(|p| p.display().to_string()),
            args: argv.collect(),
            package: std::env::var("CARGO_PKG_NAME").ok().filter(|p| !p.is_empty()),
        }
    }

    /// The libtest filter that selects this test alone: what followed `--exact`, else the first argument that
    /// is no flag, else its name.
    pub fn filter(&self) -> String {
        let exact = self.args.iter().position(|a| a == "--exact").and_then(|i| self.args.get(i + 1));
        let plain = self.args.iter().find(|a| !a.starts_with('-'));
        exact.or(plain).cloned().unwrap_or_else(|| self.name.clone())
    }

    /// How to run this test again on kept cluster `cluster` (`KTHW_TEST_ON` makes the test use it instead of
    /// a fresh copy), with nextest and with the test binary itself.
    pub fn rerun(&self, cluster: &str, kthw_home: Option<&std::path::Path>) -> String {
        let env = match kthw_home {
            Some(home) => format!("KTHW_HOME={} KTHW_TEST_ON={cluster}", shell_quote(&home.display().to_string())),
            None => format!("KTHW_TEST_ON={cluster}"),
        };
        let filter = shell_quote(&self.filter());
        let package = self.package.as_ref().map(|p| format!(" -p {p}")).unwrap_or_default();
        let mut text = format!(
            "to run test {} again on cluster {cluster}: `{env} cargo nextest run{package} -E {}`",
            self.name,
            shell_quote(&format!("test(={})", self.filter()))
        );
        if let Some(binary) = &self.binary {
            text.push_str(&format!(", or `{env} {} --exact {filter} --nocapture`", shell_quote(binary)));
        }
        text
    }
}

/// What a test added to its bundle, collected when the bundle is made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// `(node, command)`: the command's output then, under `test/NODE/`.
    pub commands: Vec<(String, String)>,
    /// `(node, path)`: the file then, under `test/NODE/`.
    pub files: Vec<(String, String)>,
    /// `(file name, text)`: kept as given, under `test/`.
    pub texts: Vec<(String, String)>,
    /// Namespaces the test created: every pod's description and logs, under `test/namespaces/NS/`.
    pub namespaces: Vec<String>,
}

/// A file name from anything: what a person can still read, no directories.
pub fn file_name(text: &str) -> String {
    let name: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .take(80)
        .collect();
    name.trim_matches('.').to_string()
}

/// The extras, each a bounded step; a node or apiserver that does not answer is recorded, not raised.
pub(super) async fn collect(w: &mut Writer, cluster: &Cluster, extras: &Extras) {
    let scale = |d| cluster.accel().scale(d);
    for (name, text) in &extras.texts {
        w.ok(&format!("test/{name}"), &format!("test/{}", file_name(name)), text.clone().into_bytes());
    }
    for (node, cmd) in &extras.commands {
        let Some(s) = session(w, cluster, node).await else { continue };
        let file = format!("test/{node}/{}.txt", file_name(cmd));
        timed(w, file, guest(&s, cmd, scale(COMMAND * 3))).await;
    }
    for (node, path) in &extras.files {
        let Some(s) = session(w, cluster, node).await else { continue };
        let file = format!("test/{node}/{}", file_name(path));
        timed(w, file, guest(&s, &format!("cat {}", shell_quote(path)), scale(COMMAND))).await;
    }
    if extras.namespaces.is_empty() {
        return;
    }
    let cp = cluster.spec().control_plane().name.clone();
    let Some(s) = session(w, cluster, &cp).await else { return };
    let k = shell_quote(&Layout::default().kubectl());
    for ns in &extras.namespaces {
        let started = Instant::now();
        let cmd = format!(
            "k={k}; ns={ns}; $k -n \"$ns\" get all -o wide; for pod in $($k -n \"$ns\" get pods -o name); do \
             echo \"===== $pod\"; $k -n \"$ns\" describe \"$pod\"; echo \"----- logs\"; $k -n \"$ns\" logs \"$pod\" \
             --all-containers --prefix --tail={POD_LOG_LINES} 2>&1; echo \"----- previous logs\"; $k -n \"$ns\" logs \
             \"$pod\" --all-containers --prefix --previous --tail={POD_LOG_LINES} 2>&1; done",
            ns = shell_quote(ns)
        );
        let file = format!("test/namespaces/{}/pods.txt", file_name(ns));
        timed(w, file, guest(&s, &cmd, scale(COMMAND * 6))).await;
        tracing::debug!(ns, took = ?started.elapsed(), "the test's namespace collected");
    }
}

/// The bundle's README line for a test's bundle.
pub(super) fn readme_line(test: &TestRecord, cluster: &str) -> String {
    format!("test: {}\n{} (if it was kept; `kthw repro` stands up another)\n", test.name, test.rerun(cluster, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nextest(name: &str) -> TestRecord {
        TestRecord {
            name: name.to_string(),
            binary: Some("/repo/target/debug/deps/vm-0123abcd".into()),
            args: vec!["--exact".into(), format!("testkit::{name}"), "--nocapture".into()],
            package: Some("kthw-tests".into()),
        }
    }

    #[test]
    fn a_test_run_by_nextest_is_rerun_by_its_exact_name_on_the_kept_cluster() {
        let t = nextest("etcd_answers");
        assert_eq!(t.filter(), "testkit::etcd_answers");
        assert_eq!(
            t.rerun("etcd_answers-4242", None),
            "to run test etcd_answers again on cluster etcd_answers-4242: `KTHW_TEST_ON=etcd_answers-4242 cargo \
             nextest run -p kthw-tests -E 'test(=testkit::etcd_answers)'`, or `KTHW_TEST_ON=etcd_answers-4242 \
             /repo/target/debug/deps/vm-0123abcd --exact testkit::etcd_answers --nocapture`"
        );
        let home = t.rerun("c", Some(std::path::Path::new("/repo/target/kthw-test-home")));
        assert!(home.contains("`KTHW_HOME=/repo/target/kthw-test-home KTHW_TEST_ON=c cargo nextest"), "{home}");
    }

    #[test]
    fn the_filter_falls_back_to_the_first_plain_argument_then_the_name() {
        let mut t = nextest("x");
        t.args = vec!["--nocapture".into(), "my_filter".into()];
        assert_eq!(t.filter(), "my_filter");
        t.args.clear();
        assert_eq!(t.filter(), "x");
        let here = TestRecord::here("y");
        assert!(here.binary.is_some() && here.name == "y");
    }

    #[test]
    fn file_names_keep_what_reads_and_nothing_that_climbs() {
        assert_eq!(file_name("ip route"), "ip_route");
        assert_eq!(file_name("../etc/passwd"), "_etc_passwd");
        assert_eq!(file_name("/var/log/syslog"), "_var_log_syslog");
        assert_eq!(file_name(&"x".repeat(200)).len(), 80);
    }
}
