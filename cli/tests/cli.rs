//! The `kthw` binary as a person runs it: spec commands and doctor, with real files and real exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `kthw` binary of this build, wherever the archive it came in was extracted (kthw::testing).
fn kthw_bin() -> PathBuf {
    kthw::testing::package_binary("kthw", env!("CARGO_BIN_EXE_kthw"))
}

fn kthw(args: &[&str]) -> Output {
    Command::new(kthw_bin()).args(args).env("RUST_LOG", "warn").output().expect("run kthw")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn repo() -> PathBuf {
    kthw::testing::workspace_dir()
}

#[test]
fn spec_show_prints_the_seed_values_and_everything_derived() {
    let out = kthw(&["spec", "show"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for needle in [
        "name = \"control-plane-1\"",
        "address = \"10.0.0.4\"",
        "address = \"10.0.0.5\"",
        "address = \"10.0.0.6\"",
        "pods = \"10.200.0.0/16\"",
        "services = \"10.32.0.0/24\"",
        "kubeProxyReplacement = \"true\"",
        "k8sServiceHost = \"10.0.0.4\"",
        "k8sServicePort = \"6443\"",
        "\"ipam.mode\" = \"cluster-pool\"",
        "\"ipam.operator.clusterPoolIPv4PodCIDRList\" = \"10.200.0.0/16\"",
        "\"ipam.operator.clusterPoolIPv4MaskSize\" = \"24\"",
        "cluster-cidr = \"10.200.0.0/16\"",
        "cluster-dns = \"10.32.0.10\"",
    ] {
        assert!(s.contains(needle), "`kthw spec show` lacks {needle:?}:\n{s}");
    }
}

#[test]
fn spec_show_follows_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("lab.toml");
    std::fs::write(&f, "[network]\npods = \"10.244.0.0/16\"\n").unwrap();
    let out = kthw(&["spec", "show", "--spec", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("\"ipam.operator.clusterPoolIPv4PodCIDRList\" = \"10.244.0.0/16\""), "{s}");
    assert!(s.contains("cluster-cidr = \"10.244.0.0/16\""), "{s}");
}

#[test]
fn validate_accepts_a_good_file_with_a_one_line_summary() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("ok.toml");
    std::fs::write(&f, "egress = false\n").unwrap();
    let out = kthw(&["spec", "validate", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert_eq!(s.lines().count(), 1, "{s}");
    assert!(s.contains("valid") && s.contains("control-plane-1 at 10.0.0.4"), "{s}");
}

#[test]
fn validate_rejects_a_contradiction_naming_both_values_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "[components.kube-controller-manager]\n\"cluster-cidr\" = \"10.100.0.0/16\"\n").unwrap();
    let out = kthw(&["spec", "validate", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(e.contains("10.100.0.0/16") && e.contains("10.200.0.0/16"), "{e}");
    assert!(e.contains("line 2, column 18"), "{e}");
    assert!(e.contains("network.pods"), "the fix names the field to change: {e}");
}

#[test]
fn validate_refuses_a_cilium_value_the_pinned_chart_lacks_as_up_does() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bogus.toml");
    std::fs::write(&f, "[cilium.values]\nbogusKey = 1\n").unwrap();
    let out = kthw(&["spec", "validate", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let e = text(&out.stderr);
    assert!(e.contains("\"bogusKey\"") && e.contains("not a value of the Cilium 1.17.4 Helm chart"), "{e}");
    assert!(e.contains("bogus.toml"), "{e}");
    // Per set: a key chart 1.19.5 removed is refused for the current set, naming that chart.
    std::fs::write(&f, "versions = \"current\"\n[cilium.values]\nenableCiliumEndpointSlice = true\n").unwrap();
    let out = kthw(&["spec", "validate", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Cilium 1.19.5"), "{}", text(&out.stderr));
}

#[test]
fn validate_reports_a_missing_file_and_a_typo() {
    let out = kthw(&["spec", "validate", "/nonexistent/spec.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read cluster spec /nonexistent/spec.toml"));

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("typo.toml");
    std::fs::write(&f, "[cilium]\nstatus_wiat = \"5m\"\n").unwrap();
    let out = kthw(&["spec", "validate", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(e.contains("typo.toml:2:1") && e.contains("status_wiat"), "{e}");
}

#[test]
fn the_readme_example_spec_is_valid() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let example = readme.split("```toml\n").nth(1).and_then(|s| s.split("```").next()).expect("a toml example");
    kthw::ClusterSpec::from_toml_validated(example, "README.md example").unwrap();
}

#[test]
fn ci_runs_exactly_the_readme_test_command() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    let cmd = ci.lines().last().expect(".ci/run ends with the test command").trim();
    assert!(
        readme.lines().any(|l| l.trim() == cmd),
        "README.md must show the command .ci/run runs ({cmd:?}) so that CI and users run the same thing"
    );
}

/// `kthw doctor`'s output as (verdict line, the indented lines under it), one per check.
fn doctor_entries(out: &str) -> Vec<(String, Vec<String>)> {
    let mut entries: Vec<(String, Vec<String>)> = Vec::new();
    for line in out.lines().take_while(|l| !l.is_empty()) {
        match entries.last_mut() {
            Some((_, under)) if line.starts_with(' ') => under.push(line.trim().to_string()),
            _ => entries.push((line.to_string(), Vec::new())),
        }
    }
    entries
}

#[test]
fn doctor_lists_every_prerequisite_with_a_verdict() {
    let out = kthw(&["doctor"]);
    let s = text(&out.stdout);
    for name in ["QEMU", "libvirt daemon", "libvirt/QEMU capabilities", "mmdebstrap", "free disk", "acceleration"] {
        let line = s.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("doctor omits {name}:\n{s}"));
        assert!(
            ["ok", "note", "MISSING", "absent"].iter().any(|v| line.trim_start().starts_with(v)),
            "no verdict on {line:?}"
        );
    }
    // The exit code tells the truth about required checks.
    let missing = s.lines().any(|l| l.starts_with("MISSING"));
    assert_eq!(out.status.success(), !missing, "{s}");
}

#[test]
fn doctor_gives_each_missing_prerequisite_a_fix_line_of_its_own() {
    // With nothing on PATH every tool doctor runs or looks up by name is missing, on any host.
    let empty = tempfile::tempdir().unwrap();
    let out =
        Command::new(kthw_bin()).arg("doctor").env("RUST_LOG", "warn").env("PATH", empty.path()).output().unwrap();
    let s = text(&out.stdout);
    let entries = doctor_entries(&s);
    let missing: Vec<_> = entries.iter().filter(|(l, _)| l.starts_with("MISSING") || l.starts_with("absent")).collect();
    for tool in ["QEMU", "qemu-img", "mmdebstrap", "mkfs.ext4", "cpio", "xz", "kubectl"] {
        assert!(missing.iter().any(|(l, _)| l.contains(tool)), "{tool} is not reported missing:\n{s}");
    }
    for (line, under) in &entries {
        let fixes: Vec<&String> = under.iter().filter(|u| u.starts_with("fix: ") && u.len() > "fix: ".len()).collect();
        let wanted = usize::from(missing.iter().any(|(l, _)| l == line));
        assert_eq!(fixes.len(), wanted, "{line:?} has {} fix lines, not {wanted}:\n{s}", fixes.len());
    }
    let required = entries.iter().filter(|(l, _)| l.starts_with("MISSING")).count();
    assert!(!out.status.success(), "{s}");
    assert!(s.contains(&format!("\n{required} required prerequisite(s) missing")), "the count is of its lines:\n{s}");
}

#[test]
fn what_spec_show_prints_validates_as_a_person_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let shown = kthw(&["spec", "show"]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let f = dir.path().join("lab.toml");
    std::fs::write(&f, &shown.stdout).unwrap();
    let out = kthw(&["spec", "validate", f.to_str().unwrap()]);
    assert!(out.status.success(), "spec show's output does not validate: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("valid: cluster \"kthw\", 3 nodes"), "{}", text(&out.stdout));
}

/// Answers every request on a loopback port with 404, recording each request line; returns the base URL.
fn not_found_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            log.lock().unwrap().push(first.trim().to_string());
            let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (base, seen)
}

/// `kthw artifacts fetch` with proxies from the environment removed: only the loopback server is contacted.
fn fetch_through(args: &[&str], env_mirror: Option<&str>) -> Output {
    let mut cmd = Command::new(kthw_bin());
    cmd.args(["artifacts", "fetch"]).args(args).env("RUST_LOG", "warn").env_remove("KTHW_ARTIFACT_MIRROR");
    for v in ["http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        cmd.env_remove(v);
    }
    if let Some(m) = env_mirror {
        cmd.env("KTHW_ARTIFACT_MIRROR", m);
    }
    cmd.output().expect("run kthw")
}

#[test]
fn artifacts_fetch_uses_the_mirror_from_the_flag_or_the_environment() {
    let (base, seen) = not_found_server();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let flag = fetch_through(&["--dir", d, "--mirror", &format!("{base}/m1"), "etcd"], None);
    let env = fetch_through(&["--dir", d, "etcd"], Some(&format!("{base}/m2/")));
    for (out, prefix) in [(&flag, "/m1"), (&env, "/m2")] {
        assert_eq!(out.status.code(), Some(1), "a 404 fails the fetch");
        let err = text(&out.stderr);
        let url = format!("{base}{prefix}/etcd-io/etcd/releases/download/v3.5.21/etcd-v3.5.21-linux-amd64.tar.gz");
        assert!(err.contains(&url) && err.contains("404 Not Found"), "names the mirrored URL and the status: {err}");
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "a 404 is asked once: {seen:?}");
    assert!(seen[0].starts_with("GET /m1/etcd-io/etcd/releases/download/v3.5.21/"), "{seen:?}");
    assert!(seen[1].starts_with("GET /m2/etcd-io/etcd/releases/download/v3.5.21/"), "{seen:?}");

    let bad = fetch_through(&["--dir", d, "--mirror", "mirror.example/kthw", "etcd"], None);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("give an http(s) URL"), "{}", text(&bad.stderr));
}

#[test]
fn scenario_list_names_every_scenario_with_what_it_shows_and_needs() {
    let out = kthw(&["scenario", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for name in
        ["pod-cidr", "clusterip-no-kube-proxy", "rbac-failure", "cold-image-wait", "dns-node-names", "connectivity"]
    {
        let at = s.lines().position(|l| l == name).unwrap_or_else(|| panic!("{name} is not listed:\n{s}"));
        let lines: Vec<&str> = s.lines().skip(at + 1).take(2).collect();
        assert!(lines[0].starts_with("  shows: ") && lines[1].starts_with("  needs: a cluster through "), "{lines:?}");
    }
    assert!(s.contains("resolve_node_names = false") && s.contains("images.preload = false"), "{s}");
}

#[test]
fn scenario_run_refuses_an_unknown_name_listing_the_known_ones() {
    let out = kthw(&["scenario", "run", "pod-cidrs"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("no scenario is named \"pod-cidrs\"") && err.contains("pod-cidr, clusterip-no-kube-proxy"),
        "{err}"
    );
}

#[test]
fn scenario_run_without_the_artifacts_names_them_and_boots_nothing() {
    let home = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(kthw_bin())
        .args(["scenario", "run", "clusterip-no-kube-proxy", "--artifacts-dir"])
        .arg(empty.path())
        .env("KTHW_HOME", home.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("scenario clusterip-no-kube-proxy needs") && err.contains("no VM was booted"), "{err}");
    for artifact in ["kubernetes-server", "cilium-cli", "coredns", "connectivity-json-mock", "connectivity-curl"] {
        assert!(err.contains(&format!("- {artifact} (for ")), "{artifact} is not named:\n{err}");
    }
    assert!(!home.path().join("state/runs").exists(), "a run directory was made");
}

#[test]
fn golden_list_says_why_a_snapshot_is_unusable_and_prune_frees_it_but_never_one_in_use() {
    let home = tempfile::tempdir().unwrap();
    let golden = |args: &[&str]| {
        let mut all = vec!["golden"];
        all.extend_from_slice(args);
        let out =
            Command::new(kthw_bin()).args(&all).env("KTHW_HOME", home.path()).env("RUST_LOG", "warn").output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert!(golden(&["list"]).starts_with("no golden snapshots under"));
    let root = home.path().join("state/golden");
    // A half-written snapshot (its manifest cut short) and one a cluster was restored from.
    for key in ["etcd-00000000000000aa", "nodes-00000000000000bb"] {
        std::fs::create_dir_all(root.join(key).join("nodes")).unwrap();
        std::fs::write(root.join(key).join("manifest.json"), "{\"key\":").unwrap();
        std::fs::write(root.join(key).join("nodes/big"), vec![1u8; 1 << 20]).unwrap();
    }
    let run = home.path().join("state/runs/copy");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("golden-origin"), "nodes-00000000000000bb").unwrap();
    let list = golden(&["list"]);
    assert!(list.contains("etcd-00000000000000aa") && list.contains("unusable: the golden snapshot"), "{list}");
    assert!(list.contains("the manifest does not parse"), "{list}");
    let pruned = golden(&["prune"]);
    assert!(pruned.contains("removed etcd-00000000000000aa (1 MiB)"), "{pruned}");
    assert!(pruned.contains("kept    nodes-00000000000000bb: in use by copy"), "{pruned}");
    assert!(!root.join("etcd-00000000000000aa").exists());
    assert!(root.join("nodes-00000000000000bb").exists());
}

/// `kthw ARGS` as a person runs it against the state under `home`, with `env` added.
fn kthw_at(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(kthw_bin());
    cmd.args(args).env("KTHW_HOME", home).env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run kthw")
}

/// A cluster's run directory as `kthw up` leaves it, for commands that must refuse before touching libvirt.
fn fake_cluster(home: &Path, name: &str, keep_until: Option<u64>) {
    use kthw::cluster::{ClusterState, NodeState};
    let run_dir = kthw::rundir::RunDir::at(kthw::paths::Paths::under(home.to_path_buf()).run(name));
    std::fs::create_dir_all(run_dir.root()).unwrap();
    let key = kthw::ssh::KeyPair::generate("test");
    kthw::ssh::keys::write_private(&run_dir.client_key(), &key).unwrap();
    let spec = kthw::ClusterSpec::default();
    let state = ClusterState {
        name: name.into(),
        id: "c0ffee".into(),
        uri: "test:///default".into(),
        accel: kthw::accel::Accel::Tcg,
        // A pid with another start time: the owner is gone, as after `kthw up` exits.
        owner: kthw::virt::Owner { pid: std::process::id(), start: 1 },
        kept: true,
        keep_until,
        created: 0,
        harness_version: "0".into(),
        image_key: "none".into(),
        network: "kthw-c0ffee".into(),
        bridge: "kthw-c0ffee".into(),
        nodes: spec
            .nodes
            .iter()
            .map(|n| NodeState {
                name: n.name.clone(),
                address: n.address,
                domain: format!("kthw-c0ffee-{}", n.name),
                ssh_port: 1,
                host_key: key.public_openssh(),
                boot_ms: None,
                boot_retries: 0,
            })
            .collect(),
        spec,
    };
    state.write(&run_dir).unwrap();
}

#[test]
fn fault_refuses_bad_input_naming_what_was_wrong_and_what_is_valid() {
    let home = tempfile::tempdir().unwrap();
    fake_cluster(home.path(), "lab", None);
    let fault = |args: &[&str]| {
        let out = kthw_at(home.path(), &[&["fault"], args].concat(), &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?} must fail: {}", text(&out.stdout));
        text(&out.stderr)
    };
    let e = fault(&["lab", "worker-node-2", "unplug"]);
    assert!(e.contains("unknown fault \"unplug\"; valid faults: link-down, link-up, delay MS, loss PERCENT"), "{e}");
    let e = fault(&["lab", "worker-node-2", "delay", "soon"]);
    assert!(e.contains("\"soon\" is not a whole number of milliseconds from 0 to 60000; usage: delay MS"), "{e}");
    let e = fault(&["lab", "worker-node-2", "loss", "120"]);
    assert!(e.contains("not a whole percentage from 0 to 100"), "{e}");
    let e = fault(&["lab", "worker-node-9", "pause"]);
    assert!(
        e.contains("cluster lab has no node worker-node-9; its nodes: control-plane-1, worker-node-1, worker-node-2"),
        "{e}"
    );
    let e = fault(&["nosuch", "worker-node-2", "pause"]);
    assert!(e.contains("no cluster named nosuch"), "{e}");
}

#[test]
fn list_shows_each_kept_clusters_time_to_live_and_gc_removes_only_the_expired() {
    let home = tempfile::tempdir().unwrap();
    let now = kthw::virt::metadata::unix_now();
    fake_cluster(home.path(), "fresh", Some(now + 2 * 3600 + 30));
    fake_cluster(home.path(), "stale", Some(now - 600));
    fake_cluster(home.path(), "forever", None);
    let run = |args: &[&str]| {
        let out = kthw_at(home.path(), args, &[("KTHW_LIBVIRT_URI", "test:///default")]);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let list = run(&["list"]);
    let line = |name: &str| list.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{list}")).to_string();
    assert!(line("fresh").contains("kept, 2 h 0 min left"), "{list}");
    assert!(line("stale").contains("kept, expired 10 min ago (kthw gc removes)"), "{list}");
    assert!(line("forever").contains("kept (kthw down removes)"), "{list}");

    let gc = run(&["gc"]);
    assert!(gc.contains("stale") && !gc.contains("fresh") && !gc.contains("forever"), "{gc}");
    let runs = kthw::paths::Paths::under(home.path().to_path_buf()).runs();
    let mut left: Vec<String> =
        std::fs::read_dir(runs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["forever", "fresh"]);
}

#[test]
fn up_refuses_a_bad_keep_or_time_to_live_before_anything_boots() {
    let home = tempfile::tempdir().unwrap();
    let up = |args: &[&str], env: (&str, &str)| {
        let out = kthw_at(home.path(), &[&["up"], args].concat(), &[env]);
        assert!(!out.status.success());
        text(&out.stderr)
    };
    let e = up(&["--ttl", "2 days"], ("RUST_LOG", "warn"));
    assert!(e.contains("time to live") && e.contains("2 days"), "{e}");
    let e = up(&[], ("KTHW_KEEP", "sometimes"));
    assert!(e.contains("valid values are never, on-failure, always"), "{e}");
    assert!(!Path::new(&home.path().join("state/runs")).exists(), "nothing was made");
}

/// A bundle directory as `kthw bundle` writes one, with what `kthw repro` reads: manifest, spec, phase records.
fn fake_bundle(dir: &Path, format: u32, image_key: &str, failed_in: &str) -> PathBuf {
    let b = dir.join(format!("lab-{format}-{image_key}"));
    std::fs::create_dir_all(b.join("run")).unwrap();
    let manifest = serde_json::json!({
        "format": format, "harness_version": "0.1.0", "cluster": "lab", "cluster_id": "c0ffee", "created": 1,
        "reason": "phase failed", "image_key": image_key, "file_cap": 1, "total_cap": 1, "steps": [], "excluded": [],
    });
    std::fs::write(b.join("MANIFEST.json"), manifest.to_string()).unwrap();
    std::fs::write(b.join("spec.toml"), kthw::ClusterSpec::default().to_effective_toml()).unwrap();
    let record =
        format!("{{\"phase\":\"{failed_in}\",\"ended\":1,\"seconds\":1.0,\"outcome\":\"failed\",\"changed\":null}}\n");
    std::fs::write(b.join("run/phases.jsonl"), record).unwrap();
    b
}

#[test]
fn repro_refuses_what_it_cannot_reproduce_here_before_anything_boots() {
    let home = tempfile::tempdir().unwrap();
    let repro = |source: &Path| {
        let out = kthw_at(home.path(), &["repro", source.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        text(&out.stderr)
    };
    let e = repro(&home.path().join("missing.tar.gz"));
    assert!(e.contains("cannot reproduce") && e.contains("no bundle at") && e.contains("missing.tar.gz"), "{e}");

    let current = kthw::image::BuildOptions::default().recipe().unwrap().key();
    let newer = fake_bundle(home.path(), 99, &current, "etcd");
    let e = repro(&newer);
    assert!(e.contains("has format 99, newer than this kthw reads (1"), "{e}");

    let old_image = fake_bundle(home.path(), 1, "bookworm-0000000000000000", "etcd");
    let e = repro(&old_image);
    assert!(e.contains("booted node image bookworm-0000000000000000, which is not cached here"), "{e}");
    assert!(e.contains(&format!("this kthw's recipe builds {current}")), "{e}");

    // The seed's spec through etcd needs the upstream etcd release, which this test home lacks.
    let lacks = fake_bundle(home.path(), 1, &current, "etcd");
    let e = repro(&lacks);
    assert!(e.contains("the phases through etcd need 1 artifact this host lacks; no VM was booted"), "{e}");
    assert!(e.contains("kthw artifacts fetch"), "names the command that provides it: {e}");

    let archive = home.path().join("cut.tar.gz");
    std::fs::write(&archive, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]).unwrap();
    let e = repro(&archive);
    assert!(e.contains("is truncated or corrupt"), "{e}");
    assert!(!home.path().join("state/runs").exists(), "nothing was made");
}

#[test]
fn artifacts_list_shows_both_version_sets() {
    let dir = tempfile::tempdir().unwrap();
    let out = kthw(&["artifacts", "list", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let seed = s.find("version set seed (`versions = \"seed\"`): kubernetes 1.32.4").expect(&s);
    let current = s.find("version set current (`versions = \"current\"`): kubernetes 1.35.4").expect(&s);
    assert!(seed < current, "{s}");
    assert!(s[seed..current].contains("etcd-v3.5.21-linux-amd64.tar.gz"), "{s}");
    assert!(s[current..].contains("etcd-v3.6.14-linux-amd64.tar.gz"), "{s}");
    assert!(s.contains("28 of 28 not cached"), "{s}");
}

#[test]
fn artifacts_fetch_takes_the_set_from_the_flag_or_the_spec_and_refuses_an_unknown_one() {
    let (base, seen) = not_found_server();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mirror = format!("{base}/m");
    let flag = fetch_through(&["--dir", d, "--mirror", &mirror, "--set", "current", "etcd"], None);
    let spec = dir.path().join("lab.toml");
    std::fs::write(&spec, "versions = \"current\"\n").unwrap();
    let from_spec = fetch_through(&["--dir", d, "--mirror", &mirror, "--spec", spec.to_str().unwrap(), "etcd"], None);
    for out in [&flag, &from_spec] {
        assert_eq!(out.status.code(), Some(1), "a 404 fails the fetch: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("etcd (current set)"), "{}", text(&out.stderr));
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|r| r.starts_with("GET /m/etcd-io/etcd/releases/download/v3.6.14/")), "{seen:?}");

    let bad = fetch_through(&["--dir", d, "--mirror", &mirror, "--set", "newest"], None);
    assert!(!bad.status.success());
    let err = text(&bad.stderr);
    assert!(err.contains("unknown version set \"newest\": choose one of seed, current, or all"), "{err}");
}

/// `kthw gc` with bundles of every age: the old go, the young stay, the budget removes the oldest of the rest,
/// each removal is said with what it freed; `kthw bundle --list` shows what is left. A bad budget or time to
/// live is refused before anything is removed.
#[test]
fn gc_prunes_bundles_past_their_time_to_live_then_over_the_budget_and_says_what_it_freed() {
    let home = tempfile::tempdir().unwrap();
    let bundles = kthw::bundle::bundles_dir(&kthw::paths::Paths::under(home.path().to_path_buf()));
    let now = kthw::virt::metadata::unix_now();
    let make = |name: &str, age: u64, kib: usize| {
        let b = bundles.join(name);
        std::fs::create_dir_all(&b).unwrap();
        let manifest = serde_json::json!({
            "format": 1, "harness_version": "0.1.0", "cluster": "lab", "cluster_id": "c0ffee", "created": now - age,
            "reason": format!("{name} failed"), "image_key": "k", "file_cap": 1, "total_cap": 1, "steps": [],
            "excluded": [],
        });
        std::fs::write(b.join("MANIFEST.json"), manifest.to_string()).unwrap();
        std::fs::write(b.join("console.log"), vec![b'x'; kib * 1024]).unwrap();
        std::fs::write(bundles.join(format!("{name}.tar.gz")), vec![0u8; kib * 1024]).unwrap();
    };
    make("lab-eight-days", 8 * 24 * 3600, 10);
    make("lab-three-days", 3 * 24 * 3600, 300);
    make("lab-yesterday", 24 * 3600, 300);
    make("lab-today", 60, 300);
    let env = [("KTHW_LIBVIRT_URI", "test:///default")];
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = kthw_at(home.path(), args, env);
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };

    let (ok, _, e) = run(&["gc", "--bundle-budget", "lots"], &env);
    assert!(!ok && e.contains("invalid size \"lots\""), "{e}");
    let (ok, _, e) = run(&["gc"], &[env[0], ("KTHW_BUNDLE_TTL", "a week")]);
    assert!(!ok && e.contains("bundle time to live: invalid duration \"a week\""), "{e}");
    assert_eq!(std::fs::read_dir(&bundles).unwrap().count(), 8, "a refused gc removes nothing");

    let (ok, list, e) = run(&["bundle", "--list"], &[]);
    assert!(ok, "{e}");
    let line = |list: &str, name: &str| list.lines().find(|l| l.starts_with(name)).map(str::to_string);
    assert!(
        line(&list, "lab-eight-days").is_some_and(|l| l.contains("192 h 0 min") && l.contains("lab-eight-days failed")),
        "{list}"
    );
    assert!(list.contains("4 bundles"), "{list}");

    // Default time to live (7 days), a budget that holds two of the 600 KiB bundles.
    let (ok, gc, e) = run(&["gc", "--bundle-budget", "1300K"], &env);
    assert!(ok, "{e}");
    assert!(gc.contains("removed bundle lab-eight-days (20.") && gc.contains("older than 168 h 0 min"), "{gc}");
    assert!(
        gc.contains("removed bundle lab-three-days (600.") && gc.contains("while bundles took over 1.3 MiB"),
        "{gc}"
    );
    assert!(!gc.contains("removed bundle lab-yesterday") && !gc.contains("removed bundle lab-today"), "{gc}");
    assert!(gc.contains("2 bundles removed, 620.") && gc.contains("2 bundles (1.2 MiB) kept"), "{gc}");

    // A short time to live from the environment: only the newest stays (the budget never removes it).
    let (ok, gc, e) = run(&["gc", "--bundle-budget", "1K"], &[env[0], ("KTHW_BUNDLE_TTL", "2h")]);
    assert!(ok, "{e}");
    assert!(gc.contains("removed bundle lab-yesterday") && gc.contains("older than 2 h 0 min"), "{gc}");
    let (_, list, _) = run(&["bundle", "--list"], &[]);
    assert!(line(&list, "lab-today").is_some() && list.contains("1 bundles"), "{list}");
    let mut left: Vec<String> =
        std::fs::read_dir(&bundles).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["lab-today", "lab-today.tar.gz"]);
}

/// Every listing piped into a reader that has already stopped (`kthw gc | head -1` once head has its line):
/// the write fails, and kthw ends by SIGPIPE as `ls` would, never with a panic or an error status.
#[test]
fn a_listing_into_a_closed_pipe_ends_by_sigpipe_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let home = tempfile::tempdir().unwrap();
    let now = kthw::virt::metadata::unix_now();
    fake_cluster(home.path(), "stale", Some(now - 600));
    for args in [
        &["list"][..],
        &["gc"],
        &["image", "list"],
        &["golden", "list"],
        &["bundle", "--list"],
        &["artifacts", "list", "--dir", home.path().to_str().unwrap()],
        &["scenario", "list"],
        &["spec", "show"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_kthw"))
            .args(args)
            .env("KTHW_HOME", home.path())
            .env("KTHW_LIBVIRT_URI", "test:///default")
            .env("RUST_LOG", "warn")
            .stdout(writer)
            .output()
            .expect("run kthw");
        let err = text(&out.stderr);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "kthw {args:?}: {err}");
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "kthw {args:?} ended {:?}: {err}", out.status);
    }
}

#[test]
fn bundle_lists_with_a_flag_so_a_cluster_named_list_is_not_shadowed() {
    let home = tempfile::tempdir().unwrap();
    let out = kthw_at(home.path(), &["bundle", "list"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(e.contains("no cluster named list") && e.contains("`kthw bundle --list`"), "{e}");
    let out = kthw_at(home.path(), &["bundle", "--list"], &[]);
    assert!(out.status.success() && text(&out.stdout).starts_with("no bundles under"), "{}", text(&out.stderr));
    let out = kthw_at(home.path(), &["bundle", "--list", "lab"], &[]);
    assert!(!out.status.success() && text(&out.stderr).contains("cannot be used with"), "{}", text(&out.stderr));
}

#[test]
fn golden_prune_refuses_an_unknown_key_naming_it_and_prunes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let snap = home.path().join("state/golden/etcd-00000000000000aa");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(snap.join("manifest.json"), "{\"key\":").unwrap();
    let out = kthw_at(home.path(), &["golden", "prune", "etcd-00000000000000aa", "no-such-key"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let e = text(&out.stderr);
    assert!(e.contains("no golden snapshot no-such-key") && e.contains("the snapshots: etcd-00000000000000aa"), "{e}");
    assert!(!text(&out.stdout).contains("freed"), "{}", text(&out.stdout));
    assert!(snap.exists(), "a refused prune removes nothing, not even the good key");
}

/// `kthw versions`: the ranges with their sources; a preset's lock written from the one kthw ships, asking no
/// one; a combination upstream does not support refused before anything is asked, naming the table.
#[test]
fn versions_show_the_ranges_and_lock_a_preset_without_asking_anyone() {
    let out = kthw(&["versions", "ranges"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("kubernetes   1.30 to 1.35") && s.contains("cilium       1.16 to 1.19"), "{s}");
    assert!(s.contains("cilium 1.19: kubernetes 1.32, 1.33, 1.34, 1.35  (cilium/cilium@v1.19.3"), "{s}");
    assert!(s.contains("kubernetes 1.35: containerd 2.2.0+, 2.1.5+, 1.7.28+"), "{s}");

    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("lab.toml");
    std::fs::write(&spec, "[versions]\npreset = \"current\"\nkubernetes = \"1.35.4\"\n").unwrap();
    let home = dir.path().join("home");
    // No mirror and no network: a preset needs neither.
    let out = kthw_at(&home, &["versions", "lock", "--spec", spec.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("the current preset; its lock ships with kthw"), "{}", text(&out.stdout));
    let lock = kthw::lock::Lock::read(&dir.path().join("lab.lock")).unwrap();
    assert_eq!(lock, kthw::lock::Lock::preset(kthw::spec::VersionSet::Current));
    let show = kthw_at(&home, &["versions", "show", "--spec", spec.to_str().unwrap()], &[]);
    assert!(text(&show.stdout).contains("versions: current") && text(&show.stdout).contains("shipped with kthw"));

    // Versions that are no preset validate before they are locked; the note says what comes next.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[versions]\nkubernetes = \"1.31.9\"\n").unwrap();
    let out = kthw_at(&home, &["spec", "validate", other.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("note:") && text(&out.stderr).contains("kthw versions lock --spec"));
    // Cilium values for a chart whose keys kthw has not read yet are refused as uncheckable, saying how.
    let values = dir.path().join("values.toml");
    std::fs::write(&values, "[versions]\ncilium = \"1.18.3\"\n[cilium.values]\n\"hubble.enabled\" = true\n").unwrap();
    let out = kthw_at(&home, &["spec", "validate", values.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let e = text(&out.stderr);
    assert!(e.contains("cilium.values (hubble.enabled) cannot be checked") && e.contains("Cilium 1.18.3"), "{e}");
    assert!(e.contains("unknown until `kthw versions lock` fetched that chart"), "{e}");
    let out = kthw_at(&home, &["up", "--spec", other.to_str().unwrap()], &[]);
    assert!(!out.status.success() && text(&out.stderr).contains("have no lock"), "{}", text(&out.stderr));
    assert!(!home.join("state/runs").exists(), "nothing was booted");

    std::fs::write(&spec, "[versions]\nkubernetes = \"1.35.4\"\ncontainerd = \"2.2.7\"\n").unwrap();
    let out =
        kthw_at(&home, &["versions", "lock", "--spec", spec.to_str().unwrap(), "--mirror", "http://127.0.0.1:9"], &[]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("Cilium 1.17 is e2e tested with Kubernetes 1.29, 1.30, 1.31, 1.32 only"), "{e}");
    assert!(e.contains("Cilium's Kubernetes compatibility table"), "{e}");
}

/// `kthw repro` of a cilium sysdump (written by hand to exercise it, its file names those of
/// cilium/cilium-cli@v0.19.7 sysdump/constants.go): the spec it becomes is written beside it, what could not be
/// carried is said, and with no lock for its versions nothing boots and the next step is named.
#[test]
fn repro_of_a_sysdump_writes_its_spec_and_says_what_it_could_not_carry() {
    let home = tempfile::tempdir().unwrap();
    let dump = home.path().join("cilium-sysdump-20261207-231500");
    std::fs::create_dir(&dump).unwrap();
    for (name, body) in [
        ("k8s-version-20261207-231500.txt", "version.Info{Major:\"1\", Minor:\"34\", GitVersion:\"v1.34.2\"}"),
        ("cilium-helm-metadata-20261207-231500.yaml", "name: cilium\nchart: cilium\nversion: 1.19.5\n"),
        ("cilium-helm-values-20261207-231500.yaml", "k8sServiceHost: 172.20.0.2\nbpf:\n  masquerade: true\n"),
    ] {
        std::fs::write(dump.join(name), body).unwrap();
    }
    let out = kthw_at(home.path(), &["repro", dump.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("carried: Kubernetes v1.34.2 and Cilium 1.19.5"), "{s}");
    assert!(s.contains("carried: bpf.masquerade = true as cilium.values"), "{s}");
    assert!(s.contains("not carried: k8sServiceHost = \"172.20.0.2\""), "{s}");
    assert!(
        s.contains("have no lock") && s.contains("kthw versions lock --spec") && s.contains("nothing was booted"),
        "{s}"
    );
    let spec = kthw::ClusterSpec::load(&home.path().join("cilium-sysdump-20261207-231500.kthw.toml")).unwrap();
    assert_eq!(spec.versions.pins().kubernetes, "1.34.2");
    assert!(!home.path().join("state/runs").exists(), "nothing was made");

    let empty = home.path().join("empty.zip");
    std::fs::write(&empty, b"").unwrap();
    let out = kthw_at(home.path(), &["repro", empty.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot reproduce") && text(&out.stderr).contains("nothing was booted"));
}
