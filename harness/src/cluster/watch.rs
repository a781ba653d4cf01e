//! Watching a node boot by its serial console, and what a stall costs: a node whose console shows nothing
//! new for a while, in a stage before sshd ([`BootStage`]), is stopped and started again on a fresh overlay,
//! a bounded number of times ([`StallPolicy`]), each retry told as an [`Event::NodeStalled`] and marked in the
//! console itself. A node that stalls every time fails with [`ClusterError::NodeStalled`], naming the stage.
//!
//! Why (issue 30, images/README.md "Boots that stall"): about one node boot in a hundred under TCG stopped in
//! the initrd right after virtio_blk printed the disk's size, QEMU idle; before this, `up` waited its whole
//! SSH deadline (179 s) and failed.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::virt::connect::Connect;

use super::state::console_tail;
use super::teardown::Gate;
use super::{ClusterError, CONSOLE_LINES};
use crate::accel::Accel;
use crate::boot_stage::{self, BootStage};
use crate::events::{Event, Events};
use crate::ssh::{self, Session, SshError};
use crate::virt::domain::DomainDef;
use crate::virt::{self, disk, domain, VirtError};

/// How long a booting node may show nothing new on its console, written for KVM and scaled by the
/// accelerator (24 s under TCG). The longest quiet gap in the evidence's good boots under TCG, three nodes on
/// two cores, was 2.4 s (systemd starting its units); the stalled one stayed quiet for 175 s.
pub const STALL_QUIET: Duration = Duration::from_secs(4);
/// Boots after the first that a stalled node gets: a lost boot costs the run one quiet period, not the run.
pub const STALL_RETRIES: u32 = 2;
/// How often the console is read.
const POLL: Duration = Duration::from_millis(500);
/// A forward port can be taken between choosing it and QEMU binding it.
pub(super) const PORT_ATTEMPTS: usize = 5;

/// When a booting node counts as stalled, and how many times it is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallPolicy {
    /// Nothing new on the console for this long, in a stage that should progress, is a stall.
    pub quiet: Duration,
    /// Boots after the first.
    pub retries: u32,
}

/// What the policy says of a stalled boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Start the node again (this is boot `attempt`, 1-based, of `attempts`).
    Retry { attempt: u32, attempts: u32 },
    /// That was the last boot: the node fails.
    GiveUp { attempts: u32 },
}

impl StallPolicy {
    pub fn for_accel(accel: Accel) -> StallPolicy {
        StallPolicy { quiet: accel.scale(STALL_QUIET), retries: STALL_RETRIES }
    }

    /// Whether a node in `stage` whose console has been quiet for `quiet` has stalled.
    pub fn stalled(&self, stage: BootStage, quiet: Duration) -> bool {
        stage.should_progress() && quiet >= self.quiet
    }

    /// What follows a stall of boot `attempt` (1-based).
    pub fn after_stall(&self, attempt: u32) -> Verdict {
        let attempts = self.retries + 1;
        if attempt < attempts {
            Verdict::Retry { attempt, attempts }
        } else {
            Verdict::GiveUp { attempts }
        }
    }

    pub fn attempts(&self) -> u32 {
        self.retries + 1
    }
}

/// One boot's console, read as it grows from where this boot began (a restarted domain appends to the same
/// file): the furthest stage shown and when it last grew.
#[derive(Debug)]
pub struct ConsoleWatch {
    path: PathBuf,
    /// Where this boot's output begins in the file.
    from: u64,
    text: String,
    stage: BootStage,
    grew: Instant,
}

impl ConsoleWatch {
    /// Watches what is written to `path` from byte `from` on.
    pub fn from_offset(path: &Path, from: u64) -> ConsoleWatch {
        ConsoleWatch {
            path: path.to_path_buf(),
            from,
            text: String::new(),
            stage: BootStage::Firmware,
            grew: Instant::now(),
        }
    }

    /// Reads what was appended since the last look.
    pub fn poll(&mut self) -> BootStage {
        let mut new = Vec::new();
        let read = std::fs::File::open(&self.path).and_then(|mut f| {
            f.seek(SeekFrom::Start(self.from + self.text.len() as u64))?;
            f.read_to_end(&mut new)
        });
        if read.is_ok() && !new.is_empty() {
            self.text.push_str(&String::from_utf8_lossy(&new));
            self.grew = Instant::now();
            self.stage = BootStage::reached(&self.text);
        }
        self.stage
    }

    pub fn stage(&self) -> BootStage {
        self.stage
    }

    /// How long the console has shown nothing new.
    pub fn quiet(&self) -> Duration {
        self.grew.elapsed()
    }

    /// This boot's last non-blank console line.
    pub fn last_line(&self) -> String {
        boot_stage::last_lines(&self.text, 1).pop().unwrap_or_default()
    }
}

/// A boot that stalled: where, and how long the console had been quiet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    pub stage: BootStage,
    pub quiet: Duration,
    pub last: String,
}

/// Returns once this boot stalls by `policy` (never, once it reached sshd: SSH's own deadline rules then).
pub async fn stalled(watch: &mut ConsoleWatch, policy: StallPolicy) -> Stall {
    loop {
        tokio::time::sleep(POLL).await;
        let stage = watch.poll();
        if policy.stalled(stage, watch.quiet()) {
            return Stall { stage, quiet: watch.quiet(), last: watch.last_line() };
        }
    }
}

/// Everything one node's boot needs to be watched, and started again.
pub(super) struct NodeBoot {
    pub target: ssh::Target,
    pub def: DomainDef,
    pub base: PathBuf,
    pub conn: Arc<Connect>,
    pub gate: Gate,
    pub started: Instant,
    pub deadline: Duration,
    pub policy: StallPolicy,
    pub events: Events,
}

/// A node that answered SSH: its session, its forward port (a retry may have moved it), the time from its
/// first domain start, and how many times it was started again.
pub(super) struct Booted {
    pub node: String,
    pub session: Session,
    pub ssh_port: u16,
    pub took: Duration,
    pub retries: u32,
}

/// Waits until the node answers SSH, starting it again when its boot stalls; fails early if its domain stops
/// (a kernel panic with on_crash=destroy, QEMU dying).
pub(super) async fn boot_node(mut b: NodeBoot) -> Result<Booted, ClusterError> {
    let node = b.target.node.clone();
    let console = b.def.console.clone();
    let first_start = b.started;
    let mut watch = ConsoleWatch::from_offset(&console, 0);
    for attempt in 1.. {
        let left = b.deadline.saturating_sub(b.started.elapsed());
        let failed = |why: String| {
            b.events.emit(Event::NodeFailed { node: node.clone(), took: b.started.elapsed(), why });
        };
        let stall = tokio::select! {
            connected = Session::connect(&b.target, left) => return match connected {
                Ok(session) => Ok(Booted {
                    node,
                    session,
                    ssh_port: b.def.management.ssh_port,
                    took: first_start.elapsed(),
                    retries: attempt - 1,
                }),
                Err(SshError::Connect { last_error, waited, .. }) => {
                    failed(format!(
                        "no SSH within {:.0} s ({last_error}); last seen {}",
                        waited.as_secs_f64(),
                        watch.poll().describe()
                    ));
                    Err(ClusterError::NodeDidNotAnswer {
                        node,
                        waited,
                        reason: last_error,
                        console_tail: console_tail(&console, CONSOLE_LINES),
                        console,
                    })
                }
                Err(e) => Err(e.into()),
            },
            () = stopped(b.conn.clone(), b.def.name.clone()) => {
                failed(format!("its domain stopped; last seen {}", watch.poll().describe()));
                return Err(ClusterError::NodeStopped {
                    node,
                    domain: b.def.name.clone(),
                    console_tail: console_tail(&console, CONSOLE_LINES),
                    console,
                });
            }
            stall = stalled(&mut watch, b.policy) => stall,
        };
        let verdict = b.policy.after_stall(attempt);
        let attempts = b.policy.attempts();
        b.events.emit(Event::NodeStalled {
            node: node.clone(),
            stage: stall.stage,
            quiet: stall.quiet,
            took: b.started.elapsed(),
            attempt,
            attempts,
            last: stall.last.clone(),
        });
        tracing::warn!(node = %node, stage = %stall.stage, attempt, attempts, last = %stall.last, "boot stalled");
        let (conn, def) = (b.conn.clone(), b.def.clone());
        let _ = virt::blocking(move || {
            keep_qemu_view(&conn, &def, attempt);
            Ok(())
        })
        .await;
        if let Verdict::GiveUp { attempts } = verdict {
            return Err(ClusterError::NodeStalled {
                node,
                stage: stall.stage,
                attempts,
                quiet: stall.quiet,
                console_tail: console_tail(&console, CONSOLE_LINES),
                console,
            });
        }
        let mark = format!(
            "\r\n---- kthw: boot {attempt} of {attempts} of {node} stalled {}: nothing new on this console for \
             {:.1} s; starting boot {} on a fresh overlay ----\r\n",
            stall.stage.describe(),
            stall.quiet.as_secs_f64(),
            attempt + 1
        );
        let (conn, gate, base, def, n) = (b.conn.clone(), b.gate.clone(), b.base.clone(), b.def.clone(), node.clone());
        let (def, from) = virt::blocking(move || Ok(restart(&conn, &gate, &base, &n, def, &mark)))
            .await
            .map_err(ClusterError::from)??;
        b.target.addr = ([127, 0, 0, 1], def.management.ssh_port).into();
        b.def = def;
        b.started = Instant::now();
        watch = ConsoleWatch::from_offset(&console, from);
        b.events.emit(Event::NodeBooting { node: node.clone() });
    }
    unreachable!("the attempts end in a return")
}

/// The virtio disk as libvirt names it (`<alias name='virtio-disk0'/>`), in QEMU's object tree.
const DISK: &str = "/machine/peripheral/virtio-disk0/virtio-backend";

/// Keeps what QEMU itself says of a stalled node beside its console (`stall-<attempt>.qemu.txt`, which the
/// failure bundle carries): each of the disk's virtqueues (a used index ahead of what the guest took is a
/// request completed whose interrupt the guest never saw; an available index ahead of the used one, a request
/// QEMU still holds), the interrupt controllers, and each vCPU's state and registers (halted: waiting for an
/// interrupt). Best effort: a stall is retried whether or not QEMU answers.
fn keep_qemu_view(conn: &Connect, def: &DomainDef, attempt: u32) {
    let mut commands: Vec<String> =
        ["info status", "info virtio", &format!("info virtio-status {DISK}")].map(String::from).to_vec();
    commands.extend((0..def.vcpus).map(|q| format!("info virtio-queue-status {DISK} {q}")));
    commands.extend(["info irq", "info pic", "info cpus"].map(String::from));
    commands.extend((0..def.vcpus).map(|cpu| format!("info lapic {cpu}")));
    commands.push("info registers -a".into());
    let path = def.console.with_file_name(format!("stall-{attempt}.qemu.txt"));
    let text = match domain::monitor(conn, &def.name, &commands) {
        Ok(text) => text,
        Err(e) => format!("QEMU's monitor did not answer: {e}\n"),
    };
    if let Err(e) = std::fs::write(&path, text) {
        tracing::warn!(path = %path.display(), error = %e, "cannot keep QEMU's view of the stalled node");
    }
}

/// Stops the node's domain, gives it a fresh overlay, marks the console and starts it again; the definition
/// comes back with the forward port it got, and where the new boot's output begins in the console.
fn restart(
    conn: &Connect,
    gate: &Gate,
    base: &Path,
    node: &str,
    mut def: DomainDef,
    mark: &str,
) -> Result<(DomainDef, u64), ClusterError> {
    domain::remove(conn, &def.name)?;
    match std::fs::remove_file(&def.disk) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(ClusterError::io("remove the stalled node's overlay", &def.disk, e))
        }
        _ => {}
    }
    disk::create_overlay(base, &def.disk)?;
    // QEMU appends to the console file; nothing else writes it while the domain is down.
    let marked = std::fs::OpenOptions::new().append(true).open(&def.console).and_then(|mut f| {
        use std::io::Write;
        f.write_all(mark.as_bytes())
    });
    if let Err(e) = marked {
        tracing::warn!(console = %def.console.display(), error = %e, "cannot mark the retry in the console");
    }
    let from = std::fs::metadata(&def.console).map(|m| m.len()).unwrap_or(0);
    start_domain(conn, gate, node, &mut def)?;
    Ok((def, from))
}

/// Defines and starts the domain through the gate, choosing another forward port when QEMU finds the one
/// chosen taken.
pub(super) fn start_domain(conn: &Connect, gate: &Gate, node: &str, def: &mut DomainDef) -> Result<(), ClusterError> {
    let mut attempt = 1;
    loop {
        match gate.create(|| Ok(domain::create(conn, def)?)) {
            Ok(()) => return Ok(()),
            Err(ClusterError::Virt(VirtError::Libvirt { message, .. }))
                if message.contains("host forwarding") && attempt < PORT_ATTEMPTS =>
            {
                tracing::debug!(domain = %def.name, port = def.management.ssh_port, "forward port taken; another");
                def.management.ssh_port = virt::free_port()?;
                attempt += 1;
            }
            Err(ClusterError::Virt(source)) => {
                return Err(ClusterError::StartFailed { node: node.to_string(), accel: def.accel, source });
            }
            Err(e) => return Err(e),
        }
    }
}

/// Returns once libvirt says the domain is no longer running; polls once a second.
async fn stopped(conn: Arc<Connect>, domain: String) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (c, d) = (conn.clone(), domain.clone());
        if let Ok(Ok(false)) = tokio::task::spawn_blocking(move || domain::is_active(&c, &d)).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_console_is_a_stall_only_before_sshd_and_only_after_the_scaled_quiet() {
        let tcg = StallPolicy::for_accel(Accel::Tcg);
        assert_eq!(tcg.quiet, Duration::from_secs(24));
        assert_eq!(StallPolicy::for_accel(Accel::Kvm).quiet, Duration::from_secs(4));
        assert!(tcg.stalled(BootStage::Initrd, Duration::from_secs(24)));
        assert!(!tcg.stalled(BootStage::Initrd, Duration::from_secs(23)));
        assert!(tcg.stalled(BootStage::Firmware, Duration::from_secs(30)), "no output at all is a stall too");
        assert!(!tcg.stalled(BootStage::Sshd, Duration::from_secs(600)), "a login prompt stays quiet");
    }

    #[test]
    fn a_node_is_started_again_twice_then_fails_well_before_the_old_deadline() {
        let p = StallPolicy::for_accel(Accel::Tcg);
        assert_eq!(p.after_stall(1), Verdict::Retry { attempt: 1, attempts: 3 });
        assert_eq!(p.after_stall(2), Verdict::Retry { attempt: 2, attempts: 3 });
        assert_eq!(p.after_stall(3), Verdict::GiveUp { attempts: 3 });
        // The evidence's node went quiet 3.9 s after its start; stalling like that every time, it fails after
        // three boots of about 28 s each, where `up` used to wait 179 s.
        let worst = (Duration::from_millis(3900) + p.quiet) * p.attempts();
        assert!(worst < Duration::from_secs(90), "{worst:?}");
    }

    #[test]
    fn the_watch_reads_only_its_own_boot_and_sees_growth() {
        let dir = tempfile::tempdir().unwrap();
        let console = dir.path().join("console.log");
        let stalled = include_str!("../../tests/fixtures/console-stalled-in-initrd-2026-12-07.log");
        std::fs::write(&console, stalled).unwrap();
        let mut first = ConsoleWatch::from_offset(&console, 0);
        assert_eq!(first.poll(), BootStage::Initrd);
        assert!(first.last_line().contains("[vda] 16777216 512-byte logical blocks"), "{}", first.last_line());
        let mut second = ConsoleWatch::from_offset(&console, stalled.len() as u64);
        assert_eq!(second.poll(), BootStage::Firmware, "the previous boot's lines are not this boot's");
        std::thread::sleep(Duration::from_millis(20));
        let before = second.quiet();
        let mut f = std::fs::OpenOptions::new().append(true).open(&console).unwrap();
        std::io::Write::write_all(&mut f, b"[    0.000000] Linux version 6.1.0-57-amd64\r\n").unwrap();
        assert_eq!(second.poll(), BootStage::Kernel);
        assert!(second.quiet() < before, "growth resets the quiet time");
        assert_eq!(first.poll(), BootStage::Initrd, "a stage never goes back");
    }
}
