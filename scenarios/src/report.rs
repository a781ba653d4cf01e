//! What a scenario found: checks (asserted; any failing one fails the scenario) and facts (reported beside
//! them, never asserted: which node got which block, how long a cold install took, whether the seed's text
//! held).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    /// What was seen: the evidence when it holds, the explanation when it does not.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub what: String,
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario's name.
    pub scenario: &'static str,
    pub cluster: String,
    pub checks: Vec<Check>,
    pub facts: Vec<Fact>,
    /// On failure: what the cluster said about it (diagnosis of pods, events and outputs).
    pub explanation: Vec<String>,
    /// Where the scenario kept its outputs (`kthw_scenarios::outputs`).
    pub dir: PathBuf,
    /// On failure: the failure bundle of its cluster (`kthw repro` runs the scenario again from it).
    pub bundle: Option<PathBuf>,
    pub took: Duration,
}

impl Report {
    pub fn new(scenario: &'static str, cluster: &str, dir: PathBuf) -> Report {
        Report {
            scenario,
            cluster: cluster.to_string(),
            checks: Vec::new(),
            facts: Vec::new(),
            explanation: Vec::new(),
            dir,
            bundle: None,
            took: Duration::ZERO,
        }
    }

    /// Records a check; returns `ok` so that a scenario can stop acting on a broken premise.
    pub fn check(&mut self, what: impl Into<String>, ok: bool, detail: impl Into<String>) -> bool {
        self.checks.push(Check { what: what.into(), ok, detail: detail.into() });
        ok
    }

    pub fn fact(&mut self, what: impl Into<String>, value: impl Into<String>) {
        self.facts.push(Fact { what: what.into(), value: value.into() });
    }

    /// Passed: at least one check, and none failed. A scenario that checked nothing has shown nothing.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.failed().count();
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        writeln!(
            f,
            "scenario {} on cluster {}: {verdict} ({} checks, {failed} failed) in {:.1} s",
            self.scenario,
            self.cluster,
            self.checks.len(),
            self.took.as_secs_f64()
        )?;
        if self.checks.is_empty() {
            writeln!(f, "  (no check ran)")?;
        }
        for c in &self.checks {
            writeln!(f, "  {} {}", if c.ok { "ok  " } else { "FAIL" }, c.what)?;
            for line in c.detail.lines().filter(|l| !l.trim().is_empty()) {
                writeln!(f, "         {line}")?;
            }
        }
        for fact in &self.facts {
            writeln!(f, "  fact {}: {}", fact.what, fact.value)?;
        }
        if !self.explanation.is_empty() {
            writeln!(f, "  what the cluster says about it:")?;
            for e in &self.explanation {
                writeln!(f, "    {e}")?;
            }
        }
        if let Some(b) = &self.bundle {
            writeln!(
                f,
                "  failure bundle: {} (`kthw repro {}` stands it up again and reruns this)",
                b.display(),
                b.display()
            )?;
        }
        write!(f, "  outputs kept in {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_passes_only_with_checks_and_none_failed() {
        let mut r = Report::new("pod-cidr", "lab", PathBuf::from("/run/x"));
        assert!(!r.passed(), "nothing checked is not a pass");
        assert!(r.check("one", true, "seen"));
        assert!(r.passed());
        assert!(!r.check("two", false, "line 1\nline 2"));
        r.fact("block", "10.200.0.0/24");
        assert!(!r.passed());
        let text = r.to_string();
        assert!(text.starts_with("scenario pod-cidr on cluster lab: FAILED (2 checks, 1 failed)"), "{text}");
        assert!(text.contains("  FAIL two\n         line 1\n         line 2\n"), "{text}");
        assert!(text.contains("  fact block: 10.200.0.0/24"), "{text}");
    }
}
