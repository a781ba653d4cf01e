//! What never goes into a bundle: private keys, and files that embed one. Bundles are attached to bug reports
//! and CI artifacts, so the rule errs on the side of leaving out: by name first (what kthw itself writes), then
//! by content (whatever else carries a PEM private key or a kubeconfig's client key).

use std::path::Path;

/// Why a file is left out of a bundle, or None when it may go in.
pub fn exclusion(path: &Path, head: &[u8]) -> Option<&'static str> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let in_fw_cfg = path.components().any(|c| c.as_os_str() == "fwcfg");
    if name == "client_key" || name.ends_with(".key") || name.ends_with("-key.pem") || name.ends_with("_key") {
        Some("a private key (by its name)")
    } else if name.ends_with(".kubeconfig") || name == "config" && path.to_string_lossy().contains(".kube") {
        Some("a kubeconfig, which embeds its client's private key")
    } else if in_fw_cfg {
        Some("in a node's fw_cfg identity directory, which holds its SSH host private key")
    } else if name.ends_with(".qcow2") || name.ends_with(".raw") {
        Some("a disk image (too big; the node's journal is collected instead)")
    } else if contains(head, b"PRIVATE KEY-----") || contains(head, b"client-key-data") {
        Some("it contains a private key")
    } else {
        None
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Removes private keys from collected text (a journal or log may hold one a command printed): PEM private key
/// blocks and kubeconfig `client-key-data` values, each replaced by a marker; every other line is kept.
pub fn redact(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut in_key = false;
    for line in text.split_inclusive(|b| *b == b'\n') {
        let is_marker = |m: &[u8]| contains(line, m) && contains(line, b"PRIVATE KEY-----");
        if in_key {
            in_key = !is_marker(b"-----END ");
        } else if is_marker(b"-----BEGIN ") {
            let at = find(line, b"-----BEGIN ").expect("just found");
            out.extend_from_slice(&line[..at]);
            out.extend_from_slice(b"[private key removed by kthw]\n");
            in_key = !contains(&line[at..], b"-----END ");
        } else if let Some(at) = find(line, b"client-key-data:") {
            out.extend_from_slice(&line[..at]);
            out.extend_from_slice(b"client-key-data: [removed by kthw]\n");
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn every_secret_kthw_writes_is_left_out_by_its_name() {
        for p in [
            "client_key",
            "pki/ca.key",
            "pki/kube-apiserver-key.pem",
            "kubeconfigs/admin.kubeconfig",
            "kubeconfigs/host-admin.kubeconfig",
            "nodes/control-plane-1/fwcfg/host_key",
            "nodes/control-plane-1/fwcfg/hostname",
            "nodes/control-plane-1/disk.qcow2",
            "ssh_host_ed25519_key",
        ] {
            assert!(exclusion(&PathBuf::from(p), b"harmless").is_some(), "{p} must be left out");
        }
    }

    #[test]
    fn logs_and_certificates_go_in_unless_they_carry_a_key() {
        for p in ["timeline.log", "phases.jsonl", "nodes/worker-node-1/console.log", "pki/ca.crt", "state.json"] {
            assert_eq!(exclusion(&PathBuf::from(p), b"-----BEGIN CERTIFICATE-----"), None, "{p}");
        }
        let key = b"x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n";
        assert!(exclusion(&PathBuf::from("notes.txt"), key).is_some());
        assert!(exclusion(&PathBuf::from("phases/x/out.yaml"), b"users:\n  client-key-data: LS0t").is_some());
    }

    #[test]
    fn keys_in_collected_text_are_redacted_and_the_rest_kept() {
        let text = b"before\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\nabc\n-----END RSA PRIVATE KEY-----\nafter \
                     -----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let out = String::from_utf8(redact(text)).unwrap();
        assert!(!out.contains("MIIE") && !out.contains("PRIVATE KEY-----"), "{out}");
        assert!(out.starts_with("before\n[private key removed by kthw]\nafter "), "{out}");
        assert!(out.contains("-----BEGIN CERTIFICATE-----\nMIIB"), "certificates stay: {out}");
        let kubeconfig = b"users:\n  user:\n    client-key-data: LS0tLS1CRUdJTg==\n    token: x\n";
        let out = String::from_utf8(redact(kubeconfig)).unwrap();
        assert_eq!(out, "users:\n  user:\n    client-key-data: [removed by kthw]\n    token: x\n");
        let cut = b"log: -----BEGIN EC PRIVATE KEY-----\nMHcC";
        assert_eq!(String::from_utf8(redact(cut)).unwrap(), "log: [private key removed by kthw]\n");
    }
}
