//! Old bundles out: `kthw gc` removes the bundles past their time to live and then, oldest first, those that
//! take the bundles directory over its size budget. Never one being written (its writer's marker says so and
//! the writer still runs), and never the newest for size alone: the last failure is the one a person is
//! about to read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{bundles_dir, BundleError, Manifest, MANIFEST, WRITING_SUFFIX};
use crate::paths::Paths;
use crate::virt::Owner;

/// How long a bundle stays when nobody says otherwise: a week of nightly runs, read on Monday.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How much the bundles may take together when nobody says otherwise (one bundle holds at most
/// [`super::TOTAL_CAP`] of files, plus its archive).
pub const DEFAULT_BUDGET: u64 = 2 * 1024 * 1024 * 1024;
/// A marker that cannot be read yet (its writer is between creating and filling it) is trusted this long.
const UNREADABLE_MARKER_GRACE: Duration = Duration::from_secs(3600);

/// One bundle in the bundles directory: its directory and archive (either may be gone) and what a killed
/// writer left of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub name: String,
    pub dir: Option<PathBuf>,
    pub archive: Option<PathBuf>,
    /// A half-written archive or a writer's marker whose writer is gone; removed with the bundle.
    pub leftovers: Vec<PathBuf>,
    /// Seconds since the Unix epoch: the manifest's, else the oldest of its files' modification times.
    pub created: u64,
    /// Every byte it takes on disk (directory, archive, leftovers).
    pub bytes: u64,
    /// Its writer still runs: it is being made.
    pub writing: bool,
    /// The manifest, when the directory holds a readable one (a complete bundle).
    pub manifest: Option<Manifest>,
}

/// Why a bundle is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Older than the time to live.
    Expired,
    /// The bundles took more than the budget; this was the oldest.
    OverBudget,
}

/// What to keep: bundles younger than `ttl`, together at most `budget` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub ttl: Duration,
    pub budget: u64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { ttl: DEFAULT_TTL, budget: DEFAULT_BUDGET }
    }
}

/// What a pruning removed and what it left.
#[derive(Debug, Default)]
pub struct Pruned {
    pub removed: Vec<(Listed, Why)>,
    /// Bytes the removed bundles took.
    pub freed: u64,
    pub kept: usize,
    pub kept_bytes: u64,
}

/// Every bundle under `<state>/bundles/`, oldest first.
pub fn list(paths: &Paths) -> Result<Vec<Listed>, BundleError> {
    list_in(&bundles_dir(paths))
}

fn list_in(bundles: &Path) -> Result<Vec<Listed>, BundleError> {
    let entries = match std::fs::read_dir(bundles) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BundleError::io("list", bundles, e)),
    };
    let mut by_name: BTreeMap<String, Listed> = BTreeMap::new();
    let mut markers = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let file = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else { continue };
        if let Some(name) = file.strip_prefix('.').and_then(|f| f.strip_suffix(WRITING_SUFFIX)) {
            markers.push((name.to_string(), path));
        } else if let Some(name) = file.strip_prefix('.').and_then(|f| f.strip_suffix(".tar.gz.partial")) {
            slot(&mut by_name, name).leftovers.push(path);
        } else if file.starts_with('.') {
            continue;
        } else if kind.is_dir() {
            slot(&mut by_name, &file).dir = Some(path);
        } else if let Some(name) = file.strip_suffix(".tar.gz").filter(|_| kind.is_file()) {
            slot(&mut by_name, name).archive = Some(path);
        }
    }
    for (name, marker) in markers {
        let alive = writer_alive(&marker);
        match by_name.get_mut(&name) {
            Some(b) if alive => b.writing = true,
            Some(b) => b.leftovers.push(marker),
            // Claimed, its directory not made yet: nothing to list. A dead writer's lone marker is listed so
            // that it goes too.
            None if alive => {}
            None => slot(&mut by_name, &name).leftovers.push(marker),
        }
    }
    let mut all: Vec<Listed> = by_name.into_values().collect();
    for b in &mut all {
        b.manifest = b
            .dir
            .as_ref()
            .and_then(|d| std::fs::read(d.join(MANIFEST)).ok())
            .and_then(|j| serde_json::from_slice::<Manifest>(&j).ok());
        let parts: Vec<&PathBuf> = b.dir.iter().chain(&b.archive).chain(&b.leftovers).collect();
        b.bytes = parts.iter().map(|p| disk_bytes(p)).sum();
        let oldest_mtime = parts.iter().filter_map(|p| mtime(p)).min();
        b.created = b.manifest.as_ref().map(|m| m.created).or(oldest_mtime).unwrap_or(0);
    }
    all.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(all)
}

/// The entry of bundle `name`, made empty when new.
fn slot<'a>(by_name: &'a mut BTreeMap<String, Listed>, name: &str) -> &'a mut Listed {
    by_name.entry(name.to_string()).or_insert_with(|| Listed::empty(name))
}

impl Listed {
    /// Bundle `name` with nothing found of it yet.
    fn empty(name: &str) -> Listed {
        Listed {
            name: name.to_string(),
            dir: None,
            archive: None,
            leftovers: Vec::new(),
            created: 0,
            bytes: 0,
            writing: false,
            manifest: None,
        }
    }
}

/// Whether the writer named in a marker (`PID START`) still runs.
fn writer_alive(marker: &Path) -> bool {
    let text = std::fs::read_to_string(marker).unwrap_or_default();
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(pid)), Some(Ok(start))) => u32::try_from(pid).is_ok_and(|pid| Owner { pid, start }.is_alive()),
        // Being filled right now, or garbage: trusted for a while, then stale.
        _ => mtime(marker).is_some_and(|t| unix_now().saturating_sub(t) < UNREADABLE_MARKER_GRACE.as_secs()),
    }
}

fn mtime(path: &Path) -> Option<u64> {
    let modified = std::fs::symlink_metadata(path).ok()?.modified().ok()?;
    Some(modified.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The bytes of a file, or of every file under a directory (links not followed).
fn disk_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries.flatten().map(|e| disk_bytes(&e.path())).sum()
}

/// Which bundles `policy` removes at `now` (indices into `bundles`, oldest first as listed): every one past
/// the time to live, then the oldest until the rest fit the budget. One being written is never chosen, and
/// the newest complete one is never chosen for size alone.
pub fn choose(bundles: &[Listed], policy: Policy, now: u64) -> Vec<(usize, Why)> {
    let mut chosen = Vec::new();
    let mut total: u64 = bundles.iter().map(|b| b.bytes).sum();
    for (i, b) in bundles.iter().enumerate() {
        if !b.writing && now.saturating_sub(b.created) > policy.ttl.as_secs() {
            chosen.push((i, Why::Expired));
            total -= b.bytes;
        }
    }
    let newest = bundles.iter().enumerate().filter(|(_, b)| !b.writing).max_by_key(|(_, b)| b.created).map(|(i, _)| i);
    let mut order: Vec<usize> = (0..bundles.len()).collect();
    order.sort_by_key(|&i| bundles[i].created);
    for i in order {
        if total <= policy.budget {
            break;
        }
        let b = &bundles[i];
        if b.writing || Some(i) == newest || chosen.iter().any(|(c, _)| *c == i) {
            continue;
        }
        chosen.push((i, Why::OverBudget));
        total -= b.bytes;
    }
    chosen.sort_by_key(|(i, _)| *i);
    chosen
}

/// Removes what [`choose`] picks under `<state>/bundles/`, now.
pub fn prune(paths: &Paths, policy: Policy) -> Result<Pruned, BundleError> {
    let bundles = list(paths)?;
    let chosen = choose(&bundles, policy, unix_now());
    let mut pruned = Pruned::default();
    for (i, b) in bundles.iter().enumerate() {
        match chosen.iter().find(|(c, _)| *c == i) {
            Some((_, why)) => {
                remove(b)?;
                tracing::info!(bundle = %b.name, bytes = b.bytes, why = ?why, "bundle removed");
                pruned.freed += b.bytes;
                pruned.removed.push((b.clone(), *why));
            }
            None => {
                pruned.kept += 1;
                pruned.kept_bytes += b.bytes;
            }
        }
    }
    Ok(pruned)
}

/// The archive first (a bundle without its archive still reads as one), then the directory, then leftovers.
fn remove(b: &Listed) -> Result<(), BundleError> {
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    if let Some(a) = &b.archive {
        gone(std::fs::remove_file(a)).map_err(|e| BundleError::io("remove", a, e))?;
    }
    if let Some(d) = &b.dir {
        gone(std::fs::remove_dir_all(d)).map_err(|e| BundleError::io("remove", d, e))?;
    }
    for l in &b.leftovers {
        gone(std::fs::remove_file(l)).map_err(|e| BundleError::io("remove", l, e))?;
    }
    Ok(())
}

/// A bundle time to live as people write it ("7d", "36h"): at least a minute.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = crate::spec::parse_duration(text).map_err(|e| format!("bundle time to live: {e}"))?;
    if ttl < Duration::from_secs(60) {
        return Err(format!("bundle time to live {text:?}: give one of at least 1m"));
    }
    Ok(ttl)
}

/// A size as people write it: "2GiB", "500M", "1024" (bytes); K, M, G and T are binary (1024) multiples, with
/// or without "iB".
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {text:?}: write it like \"2GiB\", \"500M\" or \"1048576\" (bytes)");
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = t[..digits].parse().map_err(|_| bad())?;
    let unit: u32 = match &t[digits..] {
        "" | "B" => 0,
        "K" | "KiB" => 1,
        "M" | "MiB" => 2,
        "G" | "GiB" => 3,
        "T" | "TiB" => 4,
        _ => return Err(bad()),
    };
    n.checked_mul(1024u64.pow(unit)).ok_or_else(bad)
}

/// "1.5 GiB", "340 KiB", "12 B".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;

    fn listed(name: &str, created: u64, bytes: u64) -> Listed {
        Listed { created, bytes, ..Listed::empty(name) }
    }

    fn names(bundles: &[Listed], chosen: &[(usize, Why)]) -> Vec<(String, Why)> {
        chosen.iter().map(|(i, why)| (bundles[*i].name.clone(), *why)).collect()
    }

    #[test]
    fn expired_bundles_go_and_young_ones_stay() {
        let now = 100 * DAY;
        let bundles = [listed("old", now - 9 * DAY, 10), listed("week", now - 7 * DAY, 10), listed("new", now, 10)];
        let policy = Policy { ttl: Duration::from_secs(7 * DAY), budget: u64::MAX };
        assert_eq!(names(&bundles, &choose(&bundles, policy, now)), [("old".into(), Why::Expired)]);
    }

    #[test]
    fn over_the_budget_the_oldest_go_first_until_the_rest_fit() {
        let now = 100 * DAY;
        let bundles =
            [listed("a", now - 4, 40), listed("b", now - 3, 40), listed("c", now - 2, 40), listed("d", now - 1, 40)];
        let policy = Policy { ttl: DEFAULT_TTL, budget: 100 };
        assert_eq!(
            names(&bundles, &choose(&bundles, policy, now)),
            [("a".into(), Why::OverBudget), ("b".into(), Why::OverBudget)],
            "160 bytes over a budget of 100: the two oldest, and 80 bytes stay"
        );
        let policy = Policy { ttl: DEFAULT_TTL, budget: 160 };
        assert!(choose(&bundles, policy, now).is_empty(), "exactly at the budget is within it");
    }

    #[test]
    fn expired_ones_count_before_the_budget_and_are_not_chosen_twice() {
        let now = 100 * DAY;
        let bundles = [listed("ancient", now - 30 * DAY, 500), listed("a", now - 2, 60), listed("b", now - 1, 60)];
        let policy = Policy { ttl: DEFAULT_TTL, budget: 100 };
        assert_eq!(
            names(&bundles, &choose(&bundles, policy, now)),
            [("ancient".into(), Why::Expired), ("a".into(), Why::OverBudget)]
        );
    }

    #[test]
    fn neither_one_being_written_nor_the_newest_goes_for_size() {
        let now = 100 * DAY;
        let mut bundles =
            [listed("writing", now - 9 * DAY, 1000), listed("older", now - 5, 10), listed("newest", now, 900)];
        bundles[0].writing = true;
        let policy = Policy { ttl: DEFAULT_TTL, budget: 100 };
        assert_eq!(
            names(&bundles, &choose(&bundles, policy, now)),
            [("older".into(), Why::OverBudget)],
            "still over the budget, but what is left is being written or the newest"
        );
        let policy = Policy { ttl: Duration::from_secs(60), budget: u64::MAX };
        let expired = names(&bundles, &choose(&bundles, policy, now + 3600));
        assert_eq!(
            expired,
            [("older".into(), Why::Expired), ("newest".into(), Why::Expired)],
            "the TTL has no exception"
        );
    }

    /// A bundles directory as writers leave it: finished bundles, one being written by this process, and what
    /// a writer killed half-way left.
    #[test]
    fn listing_and_pruning_a_real_directory_never_touches_a_bundle_being_written() {
        let home = tempfile::tempdir().unwrap();
        let paths = Paths::under(home.path().to_path_buf());
        let dir = bundles_dir(&paths);
        std::fs::create_dir_all(&dir).unwrap();
        let now = unix_now();
        let make = |name: &str, created: u64, archive: bool| {
            let d = dir.join(name);
            std::fs::create_dir_all(d.join("nodes")).unwrap();
            let manifest = serde_json::json!({
                "format": 1, "harness_version": "0", "cluster": "lab", "cluster_id": "c0ffee", "created": created,
                "reason": "on demand", "image_key": "k", "file_cap": 1, "total_cap": 1, "steps": [], "excluded": [],
            });
            std::fs::write(d.join(MANIFEST), manifest.to_string()).unwrap();
            std::fs::write(d.join("nodes/console.log"), vec![b'x'; 1000]).unwrap();
            if archive {
                std::fs::write(dir.join(format!("{name}.tar.gz")), vec![0u8; 300]).unwrap();
            }
        };
        make("lab-old", now - 10 * DAY, true);
        make("lab-new", now - 60, true);
        make("lab-writing", now - 10 * DAY, false);
        let me = Owner::current();
        std::fs::write(dir.join(format!(".lab-writing{WRITING_SUFFIX}")), format!("{} {}\n", me.pid, me.start))
            .unwrap();
        // Killed while archiving: a partial archive and a marker whose writer is gone.
        make("lab-killed", now - 10 * DAY, false);
        std::fs::write(dir.join(".lab-killed.tar.gz.partial"), vec![0u8; 50]).unwrap();
        std::fs::write(dir.join(format!(".lab-killed{WRITING_SUFFIX}")), "4194304 1\n").unwrap();

        let listed = list(&paths).unwrap();
        let by = |n: &str| listed.iter().find(|b| b.name == n).unwrap_or_else(|| panic!("{n} in {listed:?}"));
        assert!(by("lab-writing").writing && !by("lab-killed").writing);
        assert_eq!(
            by("lab-old").bytes,
            1000 + by("lab-old").dir.as_ref().map(|d| disk_bytes(&d.join(MANIFEST))).unwrap() + 300
        );
        assert_eq!(by("lab-killed").leftovers.len(), 2, "{:?}", by("lab-killed"));
        assert_eq!(by("lab-new").created, now - 60, "the manifest's time, not the files'");

        let pruned = prune(&paths, Policy { ttl: DEFAULT_TTL, budget: DEFAULT_BUDGET }).unwrap();
        let mut removed: Vec<&str> = pruned.removed.iter().map(|(b, _)| b.name.as_str()).collect();
        removed.sort();
        assert_eq!(removed, ["lab-killed", "lab-old"]);
        assert_eq!(pruned.freed, by("lab-killed").bytes + by("lab-old").bytes);
        assert_eq!(pruned.kept, 2);
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(
            left,
            [format!(".lab-writing{WRITING_SUFFIX}"), "lab-new".into(), "lab-new.tar.gz".into(), "lab-writing".into()]
        );
    }

    #[test]
    fn sizes_and_ttls_parse_and_bad_ones_say_how() {
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("3KiB").unwrap(), 3072);
        for bad in ["", "G", "2 GiB", "1.5G", "2GB", "-1", "99999999999T"] {
            assert!(parse_size(bad).unwrap_err().starts_with("invalid size"), "{bad:?}");
        }
        assert_eq!(parse_ttl("7d").unwrap(), DEFAULT_TTL);
        assert_eq!(parse_ttl("36h").unwrap(), Duration::from_secs(36 * 3600));
        assert!(parse_ttl("30s").unwrap_err().contains("at least 1m"));
        assert!(parse_ttl("a week").unwrap_err().starts_with("bundle time to live: invalid duration"));
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
