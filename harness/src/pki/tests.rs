//! Every certificate checked by openssl, the real verifier: chain, purpose, subject, SANs, usages, validity.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::test_tools::{run, verifier_present};
use super::*;

fn written_pki() -> (ClusterSpec, ClusterPki, tempfile::TempDir) {
    let spec = ClusterSpec::default();
    let pki = ClusterPki::generate(&spec).expect("generate the seed's PKI");
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path()).unwrap();
    (spec, pki, dir)
}

/// `openssl x509 -noout -text`-style facts about one certificate file.
struct Facts {
    subject: String,
    sans: String,
    key_usage: String,
    ext_key_usage: String,
    basic_constraints: String,
}

fn facts(dir: &Path, file: &str) -> Facts {
    let ext = |name: &str| {
        let (ok, out, err) = run("openssl", &["x509", "-in", file, "-noout", "-ext", name], dir);
        assert!(ok, "openssl x509 -ext {name} {file}: {err}");
        // First line is the extension's name; the value follows, indented.
        out.lines().skip(1).map(str::trim).collect::<Vec<_>>().join(" ")
    };
    let (ok, subject, err) = run("openssl", &["x509", "-in", file, "-noout", "-subject", "-nameopt", "RFC2253"], dir);
    assert!(ok, "openssl x509 -subject {file}: {err}");
    Facts {
        subject: subject.trim().trim_start_matches("subject=").to_string(),
        sans: ext("subjectAltName"),
        key_usage: ext("keyUsage"),
        ext_key_usage: ext("extendedKeyUsage"),
        basic_constraints: ext("basicConstraints"),
    }
}

fn verify(dir: &Path, file: &str, purpose: &str) -> (bool, String) {
    let (ok, out, err) = run("openssl", &["verify", "-CAfile", "ca.crt", "-purpose", purpose, file], dir);
    (ok, format!("{out}{err}"))
}

const CLIENT: &str = "TLS Web Client Authentication";
const BOTH: &str = "TLS Web Server Authentication, TLS Web Client Authentication";
const LEAF_KU: &str = "Digital Signature, Key Encipherment";

#[test]
fn ca_is_a_ca_that_signs_certificates() {
    if !verifier_present("openssl", "ca_is_a_ca_that_signs_certificates") {
        return;
    }
    let (_, _, dir) = written_pki();
    let f = facts(dir.path(), "ca.crt");
    assert_eq!(f.basic_constraints, "CA:TRUE");
    assert_eq!(f.key_usage, "Digital Signature, Certificate Sign, CRL Sign");
    let (ok, out) = verify(dir.path(), "ca.crt", "any");
    assert!(ok, "the CA must verify against itself: {out}");
}

#[test]
fn every_leaf_chains_to_the_ca_with_the_right_subject_sans_and_usages() {
    if !verifier_present("openssl", "every_leaf_chains_to_the_ca_with_the_right_subject_sans_and_usages") {
        return;
    }
    let (_, pki, dir) = written_pki();
    // What the seed's checklist says each certificate is, written as openssl prints it.
    let expected: &[(&str, &str, &str, &str)] = &[
        ("admin", "O=system:masters,CN=admin", "", CLIENT),
        ("kube-controller-manager", "O=system:kube-controller-manager,CN=system:kube-controller-manager", "", CLIENT),
        ("kube-scheduler", "O=system:kube-scheduler,CN=system:kube-scheduler", "", CLIENT),
        (
            "kube-apiserver",
            "CN=kubernetes",
            "DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, \
             DNS:kubernetes.default.svc.cluster.local, DNS:control-plane-1, \
             IP Address:10.0.0.4, IP Address:10.32.0.1, IP Address:127.0.0.1",
            BOTH,
        ),
        (
            "etcd-server",
            "CN=etcd-server",
            "DNS:control-plane-1, DNS:localhost, IP Address:10.0.0.4, IP Address:127.0.0.1",
            BOTH,
        ),
        ("etcd-peer", "CN=etcd-peer", "DNS:control-plane-1, IP Address:10.0.0.4, IP Address:127.0.0.1", BOTH),
        ("etcd-client", "CN=kube-apiserver-etcd-client", "", CLIENT),
        (
            "kubelet-worker-node-1",
            "O=system:nodes,CN=system:node:worker-node-1",
            "DNS:worker-node-1, IP Address:10.0.0.5",
            BOTH,
        ),
        (
            "kubelet-worker-node-2",
            "O=system:nodes,CN=system:node:worker-node-2",
            "DNS:worker-node-2, IP Address:10.0.0.6",
            BOTH,
        ),
    ];
    let stems: Vec<&str> = pki.leaves.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = expected.iter().map(|e| e.0).collect();
    want.sort_unstable();
    assert_eq!(stems, want, "exactly the seed's certificates, no more");

    for (stem, subject, sans, eku) in expected {
        let file = format!("{stem}.crt");
        let f = facts(dir.path(), &file);
        assert_eq!(&f.subject, subject, "{stem} subject");
        assert_eq!(&f.sans, sans, "{stem} SANs");
        assert_eq!(f.key_usage, LEAF_KU, "{stem} key usage");
        assert_eq!(&f.ext_key_usage, eku, "{stem} extended key usage");
        assert_eq!(f.basic_constraints, "CA:FALSE", "{stem} must not be a CA");
        let purpose = if *eku == CLIENT { "sslclient" } else { "sslserver" };
        let (ok, out) = verify(dir.path(), &file, purpose);
        assert!(ok && out.contains(": OK"), "openssl verify {stem} as {purpose}: {out}");
        if *eku == CLIENT {
            let (ok, _) = verify(dir.path(), &file, "sslserver");
            assert!(!ok, "{stem} is a client certificate and must not verify as a server");
        }
        // The key on disk belongs to the certificate.
        let (_, cert_pub, _) = run("openssl", &["x509", "-in", &file, "-noout", "-pubkey"], dir.path());
        let (_, key_pub, _) = run("openssl", &["pkey", "-in", &format!("{stem}.key"), "-pubout"], dir.path());
        assert_eq!(cert_pub, key_pub, "{stem}.key must match {stem}.crt");
    }
}

#[test]
fn validity_is_one_year_for_leaves_and_starts_in_the_past() {
    if !verifier_present("openssl", "validity_is_one_year_for_leaves_and_starts_in_the_past") {
        return;
    }
    let (_, _, dir) = written_pki();
    // Valid now, still valid in 364 days, expired in 366.
    let check = |secs: i64| {
        run("openssl", &["x509", "-in", "admin.crt", "-noout", "-checkend", &secs.to_string()], dir.path()).0
    };
    assert!(check(364 * 86400), "admin.crt must be valid for a year");
    assert!(!check(366 * 86400), "admin.crt must expire after a year");
    let ca_ok =
        run("openssl", &["x509", "-in", "ca.crt", "-noout", "-checkend", &(3649 * 86400i64).to_string()], dir.path()).0;
    assert!(ca_ok, "the CA must be valid for ten years");
    // A guest whose clock lags by minutes after a restore still accepts them.
    let (ok, out) = {
        let at = (time::OffsetDateTime::now_utc() - time::Duration::minutes(30)).unix_timestamp().to_string();
        let (ok, o, e) = run("openssl", &["verify", "-CAfile", "ca.crt", "-attime", &at, "admin.crt"], dir.path());
        (ok, o + &e)
    };
    assert!(ok, "certificates must be valid 30 minutes in the past: {out}");
}

#[test]
fn there_is_no_kube_proxy_certificate() {
    let (spec, pki, dir) = written_pki();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(!name.contains("proxy"), "unexpected file {name}: Cilium replaces kube-proxy");
    }
    assert!(profiles(&spec).iter().all(|p| !p.common_name.contains("kube-proxy")));
    assert!(pki.leaves.keys().all(|k| !k.contains("proxy")));
}

#[test]
fn keys_are_private_and_load_returns_what_was_written() {
    let (_, pki, dir) = written_pki();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        if name.ends_with(".key") {
            assert_eq!(mode, 0o600, "{name} must be readable by its owner only");
        }
    }
    assert_eq!(ClusterPki::load(dir.path()).unwrap(), pki);
    // Writing again over an existing PKI works and keeps keys private.
    pki.write(dir.path()).unwrap();
    let mode = std::fs::metadata(dir.path().join("ca.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn load_names_the_missing_file() {
    let (_, _, dir) = written_pki();
    std::fs::remove_file(dir.path().join("service-account.pub")).unwrap();
    let err = ClusterPki::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("service-account") && err.contains("pki phase"), "{err}");
}

#[test]
fn service_account_key_pair_matches() {
    if !verifier_present("openssl", "service_account_key_pair_matches") {
        return;
    }
    let (_, _, dir) = written_pki();
    let (ok, derived, err) = run("openssl", &["pkey", "-in", SERVICE_ACCOUNT_KEY, "-pubout"], dir.path());
    assert!(ok, "{err}");
    let public = std::fs::read_to_string(dir.path().join(SERVICE_ACCOUNT_PUB)).unwrap();
    assert_eq!(derived.trim(), public.trim());
}

#[test]
fn a_spec_with_other_workers_gets_their_kubelet_certificates() {
    let mut spec = ClusterSpec::default();
    spec.nodes.retain(|n| n.name != "worker-node-2");
    spec.nodes[1].name = "w1".to_string();
    let pki = ClusterPki::generate(&spec).unwrap();
    assert!(pki.leaf(&kubelet_stem("w1")).is_ok());
    assert!(pki.leaf(&kubelet_stem("worker-node-2")).is_err());
}
