//! What a worker says about itself, read in one command ([`probe`]) and parsed here: the kernel release and
//! config, mounts, filesystems, swap, modules, sysctls, PID 1, and `bpftool -j feature probe` (what the Cilium
//! agent itself runs at start, cilium/cilium pkg/datapath/linux/probes/probes.go `Probe`).

use std::collections::{BTreeMap, BTreeSet};

/// Marks the start of each section of the probe's output.
const MARK: &str = "### kthw-probe ";

/// The shell command that prints every section. Of the kernel config only the lines of `options` (set, or
/// "is not set"): the file is 250 kB.
pub fn probe(options: &[&str]) -> String {
    let pattern = options.join("|");
    format!(
        r#"r=$(uname -r)
echo '{MARK}uname'; echo "$r"
echo '{MARK}config'; if [ -f "/boot/config-$r" ]; then grep -E '^(# )?({pattern})( is not set|=)' "/boot/config-$r"; else echo "absent: /boot/config-$r"; fi
echo '{MARK}mounts'; cat /proc/mounts
echo '{MARK}filesystems'; cat /proc/filesystems
echo '{MARK}swaps'; cat /proc/swaps
echo '{MARK}modules'; cut -d' ' -f1 /proc/modules; sed 's#.*/##; s#[.]ko.*$##' "/lib/modules/$r/modules.builtin"
echo '{MARK}sysctl'; sysctl -e net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
echo '{MARK}init'; cat /proc/1/comm
echo '{MARK}bpftool'; if command -v bpftool >/dev/null; then bpftool -j feature probe 2>/dev/null || echo "bpftool failed: exit $?"; else echo 'absent: bpftool is not installed'; fi
true"#
    )
}

/// One line of /proc/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub options: Vec<String>,
}

/// A worker's facts, as [`probe`] printed them.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    /// `uname -r`.
    pub release: String,
    /// `CONFIG_X` → `y`, `m`, a value, or `n` ("is not set"); None when /boot/config-<release> is absent.
    pub kernel_config: Option<BTreeMap<String, String>>,
    pub mounts: Vec<Mount>,
    /// /proc/filesystems' type names.
    pub filesystems: BTreeSet<String>,
    /// Active swap areas (/proc/swaps less its header).
    pub swaps: Vec<String>,
    /// Loaded modules and those built into the kernel, with `-` read as `_` (the kernel's own equivalence).
    pub modules: BTreeSet<String>,
    pub sysctls: BTreeMap<String, String>,
    /// /proc/1/comm.
    pub init: String,
    /// `bpftool -j feature probe`'s JSON, or why there is none.
    pub bpftool: Result<serde_json::Value, String>,
}

impl NodeFacts {
    pub fn parse(output: &str) -> NodeFacts {
        let sections = sections(output);
        let get = |name: &str| sections.get(name).map(String::as_str).unwrap_or("");
        NodeFacts {
            release: get("uname").trim().to_string(),
            kernel_config: kernel_config(get("config")),
            mounts: mounts(get("mounts")),
            filesystems: get("filesystems")
                .lines()
                .filter_map(|l| l.split_whitespace().last())
                .map(String::from)
                .collect(),
            swaps: get("swaps")
                .lines()
                .skip(1)
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string())
                .collect(),
            modules: get("modules").lines().map(|l| l.trim().replace('-', "_")).filter(|m| !m.is_empty()).collect(),
            sysctls: get("sysctl")
                .lines()
                .filter_map(|l| l.split_once(" = "))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect(),
            init: get("init").trim().to_string(),
            bpftool: bpftool(get("bpftool")),
        }
    }

    /// `(major, minor)` of the kernel release (`6.1.0-41-amd64` → (6, 1)).
    pub fn kernel_version(&self) -> Option<(u32, u32)> {
        let mut parts = self.release.split(|c: char| !c.is_ascii_digit());
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }

    /// The filesystem mounted at `target`, the last one mounted there winning (as the kernel shows it).
    pub fn mounted_at(&self, target: &str) -> Option<&Mount> {
        self.mounts.iter().rev().find(|m| m.target == target)
    }
}

fn sections(output: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in output.lines() {
        if let Some(name) = line.strip_prefix(MARK) {
            current = Some(name.trim().to_string());
            out.entry(name.trim().to_string()).or_default();
        } else if let Some(name) = &current {
            let text = out.get_mut(name).expect("the section was opened");
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// `CONFIG_X=y` and `# CONFIG_X is not set` lines (a whole /boot/config or the probe's cut of it).
pub fn kernel_config(text: &str) -> Option<BTreeMap<String, String>> {
    if text.trim().is_empty() || text.starts_with("absent:") {
        return None;
    }
    let set = text.lines().filter_map(|l| l.split_once('=')).filter(|(k, _)| k.starts_with("CONFIG_"));
    let unset = text
        .lines()
        .filter_map(|l| l.strip_prefix("# ")?.strip_suffix(" is not set"))
        .filter(|k| k.starts_with("CONFIG_"))
        .map(|k| (k, "n"));
    Some(
        set.map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .chain(unset.map(|(k, v)| (k.to_string(), v.to_string())))
            .collect(),
    )
}

/// /proc/mounts: `source target fstype options dump pass`, octal escapes left as they are.
pub fn mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 4).then(|| Mount {
                source: w[0].to_string(),
                target: w[1].to_string(),
                fstype: w[2].to_string(),
                options: w[3].split(',').map(String::from).collect(),
            })
        })
        .collect()
}

fn bpftool(text: &str) -> Result<serde_json::Value, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the probe printed no bpftool section".into());
    }
    // bpftool may warn on stderr (merged) before its JSON: the JSON is the last line that opens an object.
    let json = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or(text);
    serde_json::from_str(json).map_err(|e| {
        let head: String = text.chars().take(300).collect();
        format!("bpftool said no JSON ({e}): {head}")
    })
}
