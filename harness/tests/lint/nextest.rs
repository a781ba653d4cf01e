//! The nightly's timeouts (issue 29): what nextest applies to each tier under each profile, read from
//! .config/nextest.toml by nextest's own precedence, and a scenario's deadlines ending before nextest's.

use super::*;

/// A `slow-timeout`: its period in seconds and how many periods before nextest terminates the test (None:
/// never), and where it came from.
#[derive(Debug, PartialEq, Eq)]
struct SlowTimeout {
    period: u64,
    terminate_after: Option<u64>,
    from: String,
}

impl SlowTimeout {
    fn terminates_after(&self) -> Option<u64> {
        self.terminate_after.map(|n| n * self.period)
    }
}

fn seconds(text: &str) -> u64 {
    let (n, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("a duration lint.rs cannot read: {text:?}"));
    match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("a duration unit lint.rs cannot read: {text:?}"),
    }
}

fn slow_timeout(value: &toml::Value, from: String) -> SlowTimeout {
    match value {
        toml::Value::String(period) => SlowTimeout { period: seconds(period), terminate_after: None, from },
        toml::Value::Table(t) => SlowTimeout {
            period: seconds(t["period"].as_str().expect("slow-timeout.period")),
            terminate_after: t.get("terminate-after").map(|n| n.as_integer().expect("an integer") as u64),
            from,
        },
        other => panic!("slow-timeout {other:?}"),
    }
}

/// Whether an override's filterset selects the tests of binary `binary`. Only what our config uses is read
/// (`binary(NAME)` terms joined by `|`): anything else fails here rather than being guessed.
fn filter_selects(filter: &str, binary: &str) -> bool {
    filter.split('|').map(str::trim).any(|term| {
        let name = term
            .strip_prefix("binary(")
            .and_then(|t| t.strip_suffix(')'))
            .unwrap_or_else(|| panic!("lint.rs reads only `binary(NAME) | ...` filters, not {filter:?}: extend it"));
        name == binary
    })
}

/// The setting `key` nextest applies to the tests of binary `binary` under `profile`, by the rules of
/// nexte.st docs/configuration/per-test-overrides, "Override precedence": the first matching override of the
/// profile that sets it, then the first matching override of `profile.default`, then the profile's own
/// setting, then the default profile's. None: nextest's built-in default applies.
fn effective<'a>(config: &'a toml::Value, profile: &str, binary: &str, key: &str) -> Option<(&'a toml::Value, String)> {
    let p = |name: &str| config.get("profile").and_then(|ps| ps.get(name));
    let from_overrides = |name: &str| {
        p(name)?.get("overrides")?.as_array()?.iter().enumerate().find_map(|(i, o)| {
            let filter = o.get("filter")?.as_str()?;
            (filter_selects(filter, binary) && o.get(key).is_some())
                .then(|| (&o[key], format!("profile.{name}.overrides[{i}] ({filter})")))
        })
    };
    from_overrides(profile)
        .or_else(|| from_overrides("default"))
        .or_else(|| p(profile)?.get(key).map(|v| (v, format!("profile.{profile}"))))
        .or_else(|| p("default")?.get(key).map(|v| (v, "profile.default".to_string())))
}

fn nextest_config() -> toml::Value {
    let path = repo().join(".config/nextest.toml");
    toml::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))).unwrap()
}

fn effective_slow_timeout(config: &toml::Value, profile: &str, binary: &str) -> SlowTimeout {
    let (value, from) = effective(config, profile, binary, "slow-timeout")
        .unwrap_or_else(|| panic!("no slow-timeout for {binary} under {profile}: nextest's default never terminates"));
    slow_timeout(value, from)
}

/// Example from the docs' own rules, written by hand: a profile whose override sets only the test group
/// inherits the default profile's override's timeout, not its own global one (the nightly's bug, issue 29).
#[test]
fn the_precedence_reader_follows_nextests_rules() {
    let config: toml::Value = toml::from_str(
        "[profile.default]\nslow-timeout = \"60s\"\n[[profile.default.overrides]]\nfilter = 'binary(vm)'\n\
         slow-timeout = { period = \"120s\", terminate-after = 8 }\n[profile.n]\n\
         slow-timeout = { period = \"300s\", terminate-after = 6 }\n[[profile.n.overrides]]\n\
         filter = 'binary(vm) | binary(cluster)'\ntest-group = \"vm\"\n",
    )
    .unwrap();
    let vm = effective_slow_timeout(&config, "n", "vm");
    assert_eq!(
        (vm.period, vm.terminate_after, vm.from.as_str()),
        (120, Some(8), "profile.default.overrides[0] (binary(vm))")
    );
    let cluster = effective_slow_timeout(&config, "n", "cluster");
    assert_eq!((cluster.period, cluster.terminate_after, cluster.from.as_str()), (300, Some(6), "profile.n"));
    assert_eq!(effective_slow_timeout(&config, "default", "lint").terminate_after, None);
    assert_eq!(effective(&config, "n", "vm", "test-group").map(|(v, _)| v.as_str()), Some(Some("vm")));
}

/// Every tier that boots VMs takes its timeouts and its one-thread group from each profile's own settings,
/// and shows what it gets (`cargo nextest run -p kthw --test lint -- --nocapture` prints the table).
#[test]
fn each_profile_gives_the_vm_tiers_its_own_timeouts_and_the_vm_group() {
    let config = nextest_config();
    for profile in ["default", "ci", "nightly"] {
        for binary in ["lint", "cli", "libvirt", "ssh", "vm", "cluster", "scenarios"] {
            let t = effective_slow_timeout(&config, profile, binary);
            println!("{profile:8} {binary:10} {:>4} s x {:?} from {}", t.period, t.terminate_after, t.from);
            assert!(t.terminate_after.is_some(), "{profile} {binary}: a hung test must be ended: {t:?}");
            if ["vm", "cluster", "scenarios"].contains(&binary) {
                assert!(
                    t.from.starts_with(&format!("profile.{profile}")),
                    "{profile} {binary}: the timeout comes from {}, not from the {profile} profile",
                    t.from
                );
                let group = effective(&config, profile, binary, "test-group").map(|(v, _)| v.as_str());
                assert_eq!(group, Some(Some("vm")), "{profile} {binary}: one VM test at a time");
            }
        }
    }
    let nightly = effective_slow_timeout(&config, "nightly", "cluster");
    let ci = effective_slow_timeout(&config, "ci", "cluster");
    assert!(nightly.terminates_after() >= ci.terminates_after(), "the nightly's clusters get at least CI's time");
}

/// The deadlines a scenario's module writes (`Duration::from_secs(N)`, before its tests), summed: each wait
/// can run to its deadline one after the other. By file name.
fn scenario_deadlines() -> Vec<(String, u64)> {
    let mut found = Vec::new();
    for file in files_in(&repo().join("scenarios/src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let total: u64 = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .flat_map(|l| l.split("Duration::from_secs(").skip(1))
            .filter_map(|rest| rest.split(')').next()?.trim().parse::<u64>().ok())
            .sum();
        found.push((file.file_name().unwrap().to_string_lossy().into_owned(), total));
    }
    found
}

/// A fresh cluster of the seed through `ready` (or a golden copy of one) before a scenario starts: an
/// allowance for a KVM runner, not a measurement (no KVM runner has run the cluster tier yet).
const BRING_UP: u64 = 900;

/// Why a scenario module whose waits add up to `waits` seconds cannot leave its bundle under `config`'s nightly
/// profile: its waits, the bring-up before them and the bundle of the seed's cluster must all end before
/// nextest's terminate-after. None when they do.
fn scenario_overruns(config: &toml::Value, module: &str, waits: u64) -> Option<String> {
    let bundle = kthw::bundle::collect_budget(kthw::spec::ClusterSpec::default().nodes.len()).as_secs();
    let need = waits + BRING_UP + bundle;
    let nightly = effective_slow_timeout(config, "nightly", "scenarios");
    let given = nightly.terminates_after().unwrap_or(u64::MAX);
    println!(
        "{module}: {waits} s of waits + {BRING_UP} s to bring up + {bundle} s of bundle = {need} s; nextest: {given} s"
    );
    (need >= given).then(|| {
        format!(
            "under the nightly profile nextest ends a scenario after {given} s ({}), but {module} may wait {waits} s, \
             bring-up {BRING_UP} s and its bundle {bundle} s: raise terminate-after in .config/nextest.toml",
            nightly.from
        )
    })
}

/// A scenario that times out must still leave its bundle (scenarios/src/run.rs makes one for a command past its
/// deadline): every scenario module's waits fit under the nightly's timeout with room for it.
#[test]
fn a_timed_out_scenario_still_has_time_for_its_bundle() {
    let deadlines = scenario_deadlines();
    let connectivity = deadlines.iter().find(|(f, _)| f == "connectivity.rs").expect("connectivity.rs").1;
    assert!(connectivity >= 1800, "connectivity's `cilium connectivity test` deadline is read: {deadlines:?}");
    let config = nextest_config();
    let overruns: Vec<String> =
        deadlines.iter().filter_map(|(module, waits)| scenario_overruns(&config, module, *waits)).collect();
    assert!(overruns.is_empty(), "{overruns:#?}");
}

#[test]
fn a_scenario_longer_than_nextest_allows_is_caught() {
    let config: toml::Value = toml::from_str(
        "[[profile.nightly.overrides]]\nfilter = 'binary(scenarios)'\nslow-timeout = { period = \"300s\", terminate-after = 6 }\n",
    )
    .unwrap();
    let said = scenario_overruns(&config, "connectivity.rs", 1830).expect("1830 s of waits do not fit 30 min");
    assert!(said.contains("1800 s (profile.nightly.overrides[0]") && said.contains("connectivity.rs"), "{said}");
    assert_eq!(scenario_overruns(&config, "pod_cidr.rs", 60), None, "a minute of waits fits");
}
