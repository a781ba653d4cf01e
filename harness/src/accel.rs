//! KVM when it works, TCG when it does not, decided by a real probe.
//!
//! `/dev/kvm` existing is not enough: nested KVM on some hosts opens fine, even runs a real-mode boot
//! sector, and then cannot run a Linux kernel (no console output, a vCPU spinning in the host kernel, or
//! "KVM internal error. Suberror: 1"). So the probe boots the node image's own kernel with no root disk and
//! `panic=-1`: under working KVM it reaches the "unable to mount root" panic and QEMU exits within a second
//! or two. The result is remembered per host boot, since it cannot change before a reboot.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How QEMU runs guests on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// The libvirt domain type for this accelerator.
    pub fn domain_type(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "qemu",
        }
    }

    /// Deadlines are written for KVM; software emulation is this many times slower to boot and run.
    pub fn slowdown(self) -> u32 {
        match self {
            Accel::Kvm => 1,
            Accel::Tcg => 6,
        }
    }

    /// A deadline written for KVM, scaled for this accelerator.
    pub fn scale(self, kvm_deadline: Duration) -> Duration {
        kvm_deadline * self.slowdown()
    }
}

/// The probe's verdict and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub accel: Accel,
    pub reason: String,
    /// The host boot this was measured in (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    /// Which probe gave the verdict: a remembered verdict of another probe is not trusted.
    #[serde(default)]
    pub method: u32,
    /// Set by `KTHW_ACCEL`: a forced KVM is never replaced by TCG when a domain fails to start under it.
    #[serde(default)]
    pub forced: bool,
    /// How long the probe ran, when it ran in this process (not for a remembered or forced verdict): the
    /// run's timeline draws it as a row of its own.
    #[serde(skip)]
    pub took: Option<Duration>,
}

/// Bumped whenever the probe changes what it proves. Version 1 booted a real-mode boot sector, which the
/// nested KVM of our CI hosts runs although it cannot run a Linux kernel.
const PROBE_METHOD: u32 = 2;

const PROBE_DEADLINE: Duration = Duration::from_secs(20);
const QEMU: &str = "qemu-system-x86_64";

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// The remembered probe for this host boot, or a fresh one with `kernel` (then remembered under `state_dir`).
/// Without a kernel nothing can be proven, so the answer is TCG, not remembered.
/// `KTHW_ACCEL=tcg|kvm` forces the choice, for hosts where the probe itself is unwanted.
pub fn detect(state_dir: &Path, kernel: Option<&Path>) -> Probe {
    detect_forced(std::env::var("KTHW_ACCEL").ok(), state_dir, kernel)
}

/// [`detect`] with `KTHW_ACCEL`'s value passed in, so that tests run the same on hosts that set it.
fn detect_forced(forced: Option<String>, state_dir: &Path, kernel: Option<&Path>) -> Probe {
    let boot_id = boot_id();
    if let Some(forced) = forced {
        let accel = if forced.eq_ignore_ascii_case("kvm") { Accel::Kvm } else { Accel::Tcg };
        return Probe {
            accel,
            reason: format!("forced by KTHW_ACCEL={forced}"),
            boot_id,
            method: PROBE_METHOD,
            forced: true,
            took: None,
        };
    }
    let cache = state_dir.join("accel.json");
    if let Some(p) = std::fs::read(&cache).ok().and_then(|b| serde_json::from_slice::<Probe>(&b).ok()) {
        if p.boot_id == boot_id && !boot_id.is_empty() && p.method == PROBE_METHOD {
            return p;
        }
    }
    let Some(kernel) = kernel else {
        return Probe {
            accel: Accel::Tcg,
            reason: "not probed yet: the probe boots the node image's kernel (`kthw image build` makes it)".into(),
            boot_id,
            method: PROBE_METHOD,
            forced: false,
            took: None,
        };
    };
    let probing = Instant::now();
    let probe = Probe { boot_id, ..probe_kvm(Path::new("/dev/kvm"), kernel) };
    let probe = Probe { took: Some(probing.elapsed()), ..probe };
    remember(state_dir, &probe);
    tracing::debug!(accel = ?probe.accel, reason = %probe.reason, "acceleration probed");
    probe
}

fn remember(state_dir: &Path, probe: &Probe) {
    if std::fs::create_dir_all(state_dir).is_ok() {
        let _ = std::fs::write(state_dir.join("accel.json"), serde_json::to_vec_pretty(probe).unwrap_or_default());
    }
}

/// A cluster failed to start under a KVM the probe had passed: the verdict for the rest of this host boot
/// becomes TCG with `reason`, so later runs (and golden snapshot keys, which include the accelerator) do not
/// pay for the failing KVM start again. Returns that verdict.
pub fn remember_kvm_failure(state_dir: &Path, reason: &str) -> Probe {
    let probe = Probe {
        accel: Accel::Tcg,
        reason: format!("KVM failed in this host boot: {reason}"),
        boot_id: boot_id(),
        method: PROBE_METHOD,
        forced: false,
        took: None,
    };
    remember(state_dir, &probe);
    probe
}

/// Boots `kernel` under KVM. Never fails: anything that goes wrong is a reason to use TCG.
pub fn probe_kvm(dev: &Path, kernel: &Path) -> Probe {
    let tcg = |reason: String| Probe {
        accel: Accel::Tcg,
        reason,
        boot_id: String::new(),
        method: PROBE_METHOD,
        forced: false,
        took: None,
    };
    if !dev.exists() {
        return tcg(format!("{} does not exist", dev.display()));
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        return tcg(format!("{} cannot be opened: {e}", dev.display()));
    }
    let console = std::env::temp_dir().join(format!("kthw-accel-probe-{}.log", std::process::id()));
    let verdict = run_probe(kernel, &console);
    let _ = std::fs::remove_file(&console);
    match verdict {
        Ok(elapsed) => Probe {
            accel: Accel::Kvm,
            reason: format!("a KVM guest booted the node kernel to its root-disk panic in {} ms", elapsed.as_millis()),
            boot_id: String::new(),
            method: PROBE_METHOD,
            forced: false,
            took: None,
        },
        Err(reason) => tcg(reason),
    }
}

fn run_probe(kernel: &Path, console: &Path) -> Result<Duration, String> {
    let start = Instant::now();
    let mut child = Command::new(QEMU)
        .args(["-accel", "kvm", "-machine", "pc", "-m", "256", "-display", "none", "-monitor", "none"])
        .args(["-no-reboot", "-append", "console=ttyS0 panic=-1 quiet"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {QEMU}: {e}"))?;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                let out = std::fs::read_to_string(console).unwrap_or_default();
                return if status.success() && out.contains("Kernel panic") {
                    Ok(start.elapsed())
                } else {
                    let last = stderr.lines().rfind(|l| !l.contains("warning")).unwrap_or("").to_string();
                    Err(format!("the KVM probe guest did not boot ({status}): {last}"))
                };
            }
            Ok(None) if start.elapsed() > PROBE_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "/dev/kvm opens, but a KVM guest did not boot the node kernel in {} s (nested KVM that cannot run it)",
                    PROBE_DEADLINE.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for the KVM probe: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_means_tcg_with_the_reason() {
        let p = probe_kvm(Path::new("/nonexistent/kvm"), Path::new("/nonexistent/vmlinuz"));
        assert_eq!(p.accel, Accel::Tcg);
        assert!(p.reason.contains("does not exist"), "{}", p.reason);
    }

    #[test]
    fn without_a_kernel_nothing_is_claimed_or_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let p = detect_forced(None, dir.path(), None);
        assert_eq!(p.accel, Accel::Tcg);
        assert!(p.reason.contains("not probed"), "{}", p.reason);
        assert!(!dir.path().join("accel.json").exists());
    }

    #[test]
    fn a_verdict_of_another_probe_method_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let stale = Probe {
            accel: Accel::Kvm,
            reason: "boot sector ran".into(),
            boot_id: boot_id(),
            method: 1,
            forced: false,
            took: None,
        };
        std::fs::write(dir.path().join("accel.json"), serde_json::to_vec(&stale).unwrap()).unwrap();
        let p = detect_forced(None, dir.path(), None);
        assert_eq!(p.accel, Accel::Tcg, "{p:?}");
        let current = Probe { method: PROBE_METHOD, ..stale };
        std::fs::write(dir.path().join("accel.json"), serde_json::to_vec(&current).unwrap()).unwrap();
        assert_eq!(detect_forced(None, dir.path(), None), current, "a verdict of this method and boot is remembered");
        // A cluster that then fails to start under that KVM turns the remembered verdict into TCG, with why.
        let after = remember_kvm_failure(dir.path(), "node a did not answer SSH within 30 s");
        assert_eq!(detect_forced(None, dir.path(), None), after);
        assert_eq!(after.accel, Accel::Tcg);
        assert!(after.reason.contains("did not answer SSH"), "{}", after.reason);
    }

    #[test]
    fn kthw_accel_forces_the_choice_over_a_remembered_verdict() {
        let dir = tempfile::tempdir().unwrap();
        remember_kvm_failure(dir.path(), "node a did not answer SSH within 30 s");
        let p = detect_forced(Some("KVM".into()), dir.path(), None);
        assert_eq!((p.accel, p.forced), (Accel::Kvm, true), "{p:?}");
        assert!(p.reason.contains("KTHW_ACCEL=KVM"), "{}", p.reason);
        assert_eq!(detect_forced(Some("tcg".into()), dir.path(), None).accel, Accel::Tcg);
    }

    #[test]
    fn tcg_deadlines_are_longer() {
        let d = Duration::from_secs(30);
        assert_eq!(Accel::Kvm.scale(d), d);
        assert!(Accel::Tcg.scale(d) > d);
    }
}
