//! Keeping clusters for a person: `KTHW_KEEP` (`never`, `on-failure`, `always`) and `KTHW_KEEP_TTL` as the
//! library's callers (tests, scenarios, `kthw up --keep/--ttl`) read them, and how a kept cluster's time to
//! live reads in `kthw list`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::cluster::{ClusterState, DEFAULT_KEEP_TTL};

/// Whether the cluster outlives the process that brought it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// Torn down when the handle of the running cluster is dropped (tests).
    #[default]
    Never,
    /// Kept when a phase fails, for a person to look at; torn down otherwise.
    OnFailure,
    /// Kept from the moment every node answers, until `kthw down` (`kthw up`).
    Always,
}

/// A time to live longer than this is a typo (`240h` for `24h`), not a plan: `kthw down` is the way to keep
/// a cluster indefinitely... by not running it.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

impl FromStr for Keep {
    type Err = String;

    fn from_str(s: &str) -> Result<Keep, String> {
        match s.trim() {
            "never" => Ok(Keep::Never),
            "on-failure" => Ok(Keep::OnFailure),
            "always" => Ok(Keep::Always),
            other => Err(format!("keep {other:?}: valid values are never, on-failure, always")),
        }
    }
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Keep::Never => "never",
            Keep::OnFailure => "on-failure",
            Keep::Always => "always",
        })
    }
}

/// A time to live as people write it ("24h", "2h30m", "90m"): at least a minute, at most [`MAX_TTL`].
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = crate::spec::parse_duration(text).map_err(|e| format!("time to live: {e}"))?;
    if ttl < Duration::from_secs(60) || ttl > MAX_TTL {
        return Err(format!("time to live {text:?}: give one from 1m to {}h", MAX_TTL.as_secs() / 3600));
    }
    Ok(ttl)
}

/// `KTHW_KEEP` (unset or empty: never) and `KTHW_KEEP_TTL` (unset or empty: 24 h); an invalid value is an
/// error naming the variable, never silently the default.
pub fn from_env() -> Result<(Keep, Duration), String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let keep = var("KTHW_KEEP").map(|v| v.parse().map_err(|e| format!("KTHW_KEEP: {e}"))).transpose()?;
    let ttl = var("KTHW_KEEP_TTL").map(|v| parse_ttl(&v).map_err(|e| format!("KTHW_KEEP_TTL: {e}"))).transpose()?;
    Ok((keep.unwrap_or_default(), ttl.unwrap_or(DEFAULT_KEEP_TTL)))
}

/// How `kthw list` shows a cluster's ownership and time to live, at `now`.
pub fn describe(state: &ClusterState, now: u64) -> String {
    match (state.kept, state.keep_until) {
        (true, Some(until)) if until <= now => format!("kept, expired {} ago (kthw gc removes)", span(now - until)),
        (true, Some(until)) => format!("kept, {} left", span(until - now)),
        (true, None) => "kept (kthw down removes)".to_string(),
        (false, _) if state.owner.is_alive() => format!("owned by pid {}", state.owner.pid),
        (false, _) => "owner gone (kthw gc removes)".to_string(),
    }
}

/// "3 h 20 min", "12 min", "40 s".
pub fn span(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_values_parse_and_bad_ones_name_the_valid() {
        for k in [Keep::Never, Keep::OnFailure, Keep::Always] {
            assert_eq!(k.to_string().parse::<Keep>().unwrap(), k);
        }
        let err = "onfailure".parse::<Keep>().unwrap_err();
        assert_eq!(err, "keep \"onfailure\": valid values are never, on-failure, always");
    }

    #[test]
    fn ttls_parse_within_bounds() {
        assert_eq!(parse_ttl("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_ttl("1h30m").unwrap(), Duration::from_secs(5400));
        for bad in ["", "2", "2 days", "30s", "721h", "-1h"] {
            let err = parse_ttl(bad).unwrap_err();
            assert!(err.starts_with("time to live"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn list_shows_the_time_left_or_that_it_ran_out() {
        let mut state: ClusterState = serde_json::from_value(serde_json::json!({
            "name": "lab", "id": "c0ffee", "uri": "test:///default", "accel": crate::accel::Accel::Tcg,
            "owner": crate::virt::Owner::current(), "kept": false, "created": 0, "harness_version": "0",
            "image_key": "k", "network": "n", "bridge": "b", "spec": crate::ClusterSpec::default(), "nodes": [],
        }))
        .unwrap();
        assert_eq!(state.keep_until, None, "state files from before the time to live still read");
        assert_eq!(describe(&state, 1_000), format!("owned by pid {}", std::process::id()));
        state.kept = true;
        state.keep_until = Some(1_000 + 3 * 3600 + 20 * 60);
        assert_eq!(describe(&state, 1_000), "kept, 3 h 20 min left");
        assert!(!state.keep_expired(1_000) && state.keep_expired(1_000 + 4 * 3600));
        assert_eq!(describe(&state, 1_000 + 3 * 3600 + 32 * 60), "kept, expired 12 min ago (kthw gc removes)");
        state.keep_until = None;
        assert_eq!(describe(&state, 1_000), "kept (kthw down removes)");
        assert!(!state.keep_expired(u64::MAX), "no time to live: kept until kthw down");
    }
}
