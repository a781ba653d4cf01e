//! Faults on purpose: make a node's cluster link, its network quality, its VM or one of its units misbehave,
//! the way `kthw fault NAME NODE FAULT` and tests do. Every fault is parsed and checked (the node, the unit, the
//! domain's state) before anything is touched, so a mistyped fault changes nothing.
//!
//! NIC faults act on the node's cluster NIC only: the management NIC carries SSH, and losing it would take the
//! harness's own way in with it. Link state is libvirt's (the guest sees its carrier drop); delay and loss are
//! netem on the guest's side of that NIC, so they shape what the node sends (a ping's reply, not its request).

use std::fmt;
use std::time::Duration;

use virt::domain::{Domain, DomainState};
use virt::enumutil::Enum;

use super::{Cluster, ClusterError};
use crate::identity::{Mac, Nic};
use crate::ssh::{shell_quote, SshError};
use crate::virt::{self as kvirt, libvirt_error, VirtError};

/// The faults and their arguments, as `kthw fault` takes them.
pub const VALID_FAULTS: &str =
    "link-down, link-up, delay MS, loss PERCENT, pause, resume, reset, stop-unit UNIT, kill-unit UNIT";

/// netem delays beyond this are no longer "a slow network" but a cut link; `link-down` says that better.
pub const MAX_DELAY_MS: u32 = 60_000;

/// `tc` and `systemctl` answer in well under a second; this covers a loaded TCG guest.
const GUEST_COMMAND: Duration = Duration::from_secs(30);

/// Where the guest keeps the netem settings in force, so `delay` and `loss` combine instead of replacing each
/// other. Under /run: a reset clears it together with the qdisc.
const NETEM_STATE: &str = "/run/kthw-netem";

/// One fault on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The cluster NIC loses its carrier (libvirt's `<link state='down'/>`).
    LinkDown,
    LinkUp,
    /// Every packet the node sends on its cluster NIC waits this long; 0 removes the delay.
    Delay {
        ms: u32,
    },
    /// This share of the packets the node sends on its cluster NIC is dropped; 0 removes the loss.
    Loss {
        percent: u8,
    },
    /// The VM stops running (libvirt suspend): it answers nothing, its clock stops.
    Pause,
    Resume,
    /// A hard reset, as the reset button: no shutdown, the guest's unwritten page cache is lost.
    Reset,
    /// `systemctl stop UNIT`.
    StopUnit(String),
    /// `systemctl kill -s KILL UNIT`: a crash, which the unit's `Restart=` policy sees.
    KillUnit(String),
}

/// Why a fault was not injected. Nothing was changed unless the variant says the injection itself failed.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("no fault given; valid faults: {VALID_FAULTS}")]
    Missing,
    #[error("unknown fault {given:?}; valid faults: {VALID_FAULTS}")]
    Unknown { given: String },
    #[error("fault `{fault}`: {why}; usage: {usage}")]
    Argument { fault: &'static str, why: String, usage: &'static str },
    #[error(transparent)]
    Cluster(Box<ClusterError>),
    #[error("cannot {fault} node {node}: {why}; nothing was changed")]
    Refused { node: String, fault: String, why: String },
    #[error("{fault} on node {node} failed")]
    Virt {
        node: String,
        fault: String,
        #[source]
        source: Box<VirtError>,
    },
    #[error("{fault} on node {node} failed")]
    Ssh {
        node: String,
        fault: String,
        #[source]
        source: Box<SshError>,
    },
}

impl From<ClusterError> for FaultError {
    fn from(e: ClusterError) -> FaultError {
        FaultError::Cluster(Box::new(e))
    }
}

impl Fault {
    /// Parses a fault from its words, e.g. `["delay", "200"]`.
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<Fault, FaultError> {
        let words: Vec<&str> = words.iter().map(AsRef::as_ref).collect();
        let Some((&name, args)) = words.split_first() else { return Err(FaultError::Missing) };
        let usage = usage(name).ok_or_else(|| FaultError::Unknown { given: name.to_string() })?;
        let fault = usage.split(' ').next().expect("a usage starts with its name");
        let argument = |why: String| FaultError::Argument { fault, why, usage };
        let wants_argument = usage.contains(' ');
        match (wants_argument, args) {
            (false, []) => {}
            (false, extra) => return Err(argument(format!("takes no argument, got {:?}", extra.join(" ")))),
            (true, []) => return Err(argument("needs an argument".into())),
            (true, [_]) => {}
            (true, extra) => return Err(argument(format!("takes one argument, got {:?}", extra.join(" ")))),
        }
        let arg = args.first().copied().unwrap_or_default();
        Ok(match fault {
            "link-down" => Fault::LinkDown,
            "link-up" => Fault::LinkUp,
            "pause" => Fault::Pause,
            "resume" => Fault::Resume,
            "reset" => Fault::Reset,
            "delay" => {
                let ms = number(arg).filter(|ms| *ms <= u64::from(MAX_DELAY_MS)).ok_or_else(|| {
                    argument(format!("{arg:?} is not a whole number of milliseconds from 0 to {MAX_DELAY_MS}"))
                })?;
                Fault::Delay { ms: ms as u32 }
            }
            "loss" => {
                let percent = number(arg.strip_suffix('%').unwrap_or(arg))
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| argument(format!("{arg:?} is not a whole percentage from 0 to 100")))?;
                Fault::Loss { percent: percent as u8 }
            }
            "stop-unit" => Fault::StopUnit(unit_name(arg).map_err(argument)?),
            "kill-unit" => Fault::KillUnit(unit_name(arg).map_err(argument)?),
            _ => unreachable!("every usage has a parse"),
        })
    }

    /// The fault's name, as `kthw fault` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::LinkDown => "link-down",
            Fault::LinkUp => "link-up",
            Fault::Delay { .. } => "delay",
            Fault::Loss { .. } => "loss",
            Fault::Pause => "pause",
            Fault::Resume => "resume",
            Fault::Reset => "reset",
            Fault::StopUnit(_) => "stop-unit",
            Fault::KillUnit(_) => "kill-unit",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Delay { ms } => write!(f, "delay {ms}"),
            Fault::Loss { percent } => write!(f, "loss {percent}"),
            Fault::StopUnit(unit) | Fault::KillUnit(unit) => write!(f, "{} {unit}", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = FaultError;

    fn from_str(s: &str) -> Result<Fault, FaultError> {
        Fault::parse(&s.split_whitespace().collect::<Vec<_>>())
    }
}

/// Each fault's usage, found by its name.
fn usage(name: &str) -> Option<&'static str> {
    VALID_FAULTS.split(", ").find(|u| u.split(' ').next() == Some(name))
}

/// Plain decimal digits only: "+5", "1e3" and "0x10" are typos here, not numbers.
fn number(s: &str) -> Option<u64> {
    (!s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// systemd's unit name alphabet; a name without a type suffix means a service, as systemctl reads it.
fn unit_name(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 255
        && !s.starts_with(['-', '.'])
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b":-_.\\@".contains(&b));
    if valid {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a systemd unit name (letters, digits and \":-_.\\@\", e.g. etcd or etcd.service)"))
    }
}

impl Cluster {
    /// Injects `fault` on `node` and says what was done. The node, and for unit faults the unit, must exist,
    /// and the VM must be in a state the fault makes sense in; otherwise nothing is changed. Each fault is
    /// recorded in the run's timeline, so a bundle shows when the cluster was made to misbehave.
    pub async fn inject(&self, node: &str, fault: &Fault) -> Result<String, FaultError> {
        let domain = self.node(node)?.domain.clone();
        let virt_err =
            |source| FaultError::Virt { node: node.to_string(), fault: fault.to_string(), source: Box::new(source) };
        let refused = |why: String| FaultError::Refused { node: node.to_string(), fault: fault.to_string(), why };
        let state = self.domain_state(&domain).await.map_err(virt_err)?;
        let running = matches!(state, Enum::Known(DomainState::Running));
        let paused = matches!(state, Enum::Known(DomainState::Paused));
        let describe = match fault {
            Fault::Resume if !paused => return Err(refused(format!("it is not paused (libvirt says {state})"))),
            Fault::Pause | Fault::Reset if !running => {
                return Err(refused(format!("it is not running (libvirt says {state})")))
            }
            Fault::Resume | Fault::Pause | Fault::Reset => {
                let f = fault.clone();
                self.on_domain(&domain, move |d| match f {
                    Fault::Pause => d.suspend(),
                    Fault::Resume => d.resume(),
                    _ => d.reset(),
                })
                .await
                .map_err(virt_err)?;
                if *fault == Fault::Reset {
                    // The guest's end of the cached connection is gone; a new session is the only way back in.
                    self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(node);
                }
                format!("domain {domain}: {fault} done")
            }
            Fault::LinkDown | Fault::LinkUp => {
                let up = *fault == Fault::LinkUp;
                let xml = cluster_interface(&self.state.network, Mac::for_node(node, Nic::Cluster), up);
                self.on_domain(&domain, move |d| d.update_device_flags(&xml, AFFECT_LIVE)).await.map_err(virt_err)?;
                format!("domain {domain}: cluster NIC {} link {}", Mac::for_node(node, Nic::Cluster), fault_word(up))
            }
            _ if !running => {
                return Err(refused(format!("its guest does not run, so nothing answers SSH (libvirt says {state})")))
            }
            Fault::Delay { .. } | Fault::Loss { .. } | Fault::StopUnit(_) | Fault::KillUnit(_) => {
                let ssh_err = |source| FaultError::Ssh {
                    node: node.to_string(),
                    fault: fault.to_string(),
                    source: Box::new(source),
                };
                let session = self.session(node).await?.with_deadline(GUEST_COMMAND);
                if let Fault::StopUnit(unit) | Fault::KillUnit(unit) = fault {
                    let show = format!("systemctl show -p LoadState --value {}", shell_quote(unit));
                    let load = session.succeed(&show).await.map_err(ssh_err)?.stdout_lossy().trim().to_string();
                    if load != "loaded" {
                        return Err(refused(format!("it has no unit {unit} (LoadState={load})")));
                    }
                }
                let out = session.succeed(&guest_command(node, fault)).await.map_err(ssh_err)?;
                out.stdout_lossy().trim().to_string()
            }
        };
        self.run_dir.log_timeline(&format!("{} fault {node}: {fault}", kvirt::metadata::unix_now()));
        tracing::info!(node, %fault, "{describe}");
        Ok(describe)
    }

    /// libvirt's view of a node's domain: running, paused, shut off...
    pub async fn domain_state(&self, domain: &str) -> Result<Enum<DomainState, u32>, VirtError> {
        self.on_domain(domain, |d| d.state().map(|(s, _)| s)).await
    }

    /// Runs one blocking libvirt call on the named domain.
    async fn on_domain<T: Send + 'static>(
        &self,
        domain: &str,
        call: impl FnOnce(&Domain) -> Result<T, virt::error::Error> + Send + 'static,
    ) -> Result<T, VirtError> {
        let (uri, domain) = (self.state.uri.clone(), domain.to_string());
        kvirt::blocking(move || {
            let conn = kvirt::connect::open(&uri)?;
            let dom = conn.lookup_domain_by_name(&domain).map_err(|e| libvirt_error("look up domain", &domain, e))?;
            call(&dom).map_err(|e| libvirt_error("change domain", &domain, e))
        })
        .await
    }
}

/// VIR_DOMAIN_AFFECT_LIVE: the running domain only; the definition (and so the next boot) keeps its link up.
const AFFECT_LIVE: u32 = 1;

fn fault_word(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

/// The cluster NIC as libvirt's update-device wants it: found by its MAC, with only the link state changed.
fn cluster_interface(network: &str, mac: Mac, up: bool) -> String {
    format!(
        "<interface type='network'><mac address='{mac}'/><source network='{network}'/><model type='virtio'/>\
         <link state='{}'/></interface>",
        fault_word(up)
    )
}

/// The shell command that injects a guest-side fault. The cluster NIC is found by its MAC, so the guest's
/// interface naming does not matter.
fn guest_command(node: &str, fault: &Fault) -> String {
    let mac = Mac::for_node(node, Nic::Cluster);
    let netem = |file: &str, value: u32| {
        format!(
            "set -e; dev=$(ip -o link | awk '/link\\/ether {mac} /{{sub(\":$\",\"\",$2); print $2; exit}}'); \
             [ -n \"$dev\" ] || {{ echo 'no interface has the cluster MAC {mac}' >&2; exit 3; }}; \
             mkdir -p {NETEM_STATE}; echo {value} > {NETEM_STATE}/{file}; \
             d=$(cat {NETEM_STATE}/delay 2>/dev/null || echo 0); l=$(cat {NETEM_STATE}/loss 2>/dev/null || echo 0); \
             if [ \"$d\" = 0 ] && [ \"$l\" = 0 ]; then tc qdisc del dev \"$dev\" root 2>/dev/null || true; \
             else tc qdisc replace dev \"$dev\" root netem delay \"${{d}}ms\" loss \"${{l}}%\"; fi; \
             echo \"$dev ($(cat /sys/class/net/$dev/address)): $(tc qdisc show dev \"$dev\" root)\""
        )
    };
    match fault {
        Fault::Delay { ms } => netem("delay", *ms),
        Fault::Loss { percent } => netem("loss", u32::from(*percent)),
        Fault::StopUnit(unit) => {
            let u = shell_quote(unit);
            format!("systemctl stop {u} && echo \"{unit}: $(systemctl is-active {u} || true)\"")
        }
        Fault::KillUnit(unit) => {
            let u = shell_quote(unit);
            format!("systemctl kill -s KILL {u} && echo \"{unit}: sent SIGKILL to its processes\"")
        }
        other => unreachable!("{other} is not a guest-side fault"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Fault, FaultError> {
        s.parse()
    }

    #[test]
    fn every_fault_parses_and_prints_back_the_same() {
        for (text, fault) in [
            ("link-down", Fault::LinkDown),
            ("link-up", Fault::LinkUp),
            ("delay 250", Fault::Delay { ms: 250 }),
            ("delay 0", Fault::Delay { ms: 0 }),
            ("loss 30", Fault::Loss { percent: 30 }),
            ("pause", Fault::Pause),
            ("resume", Fault::Resume),
            ("reset", Fault::Reset),
            ("stop-unit etcd", Fault::StopUnit("etcd".into())),
            ("kill-unit containerd.service", Fault::KillUnit("containerd.service".into())),
        ] {
            assert_eq!(parse(text).unwrap(), fault, "{text}");
            assert_eq!(fault.to_string(), text);
        }
        assert_eq!(parse("loss 5%").unwrap(), Fault::Loss { percent: 5 });
        assert_eq!(parse(&format!("delay {MAX_DELAY_MS}")).unwrap(), Fault::Delay { ms: MAX_DELAY_MS });
    }

    #[test]
    fn bad_faults_say_what_was_wrong_and_what_is_valid() {
        let cases = [
            ("", "no fault given; valid faults: link-down, link-up, delay MS"),
            ("unplug", "unknown fault \"unplug\"; valid faults: link-down, link-up, delay MS, loss PERCENT"),
            ("delay", "fault `delay`: needs an argument; usage: delay MS"),
            ("delay fast", "fault `delay`: \"fast\" is not a whole number of milliseconds from 0 to 60000"),
            ("delay -5", "\"-5\" is not a whole number"),
            ("delay 1.5", "\"1.5\" is not a whole number"),
            ("delay 60001", "\"60001\" is not a whole number of milliseconds from 0 to 60000"),
            ("delay 99999999999999", "is not a whole number"),
            ("delay 5 10", "fault `delay`: takes one argument, got \"5 10\"; usage: delay MS"),
            ("loss 101", "fault `loss`: \"101\" is not a whole percentage from 0 to 100; usage: loss PERCENT"),
            ("loss", "usage: loss PERCENT"),
            ("pause now", "fault `pause`: takes no argument, got \"now\"; usage: pause"),
            ("stop-unit", "fault `stop-unit`: needs an argument; usage: stop-unit UNIT"),
            ("kill-unit etcd;reboot", "\"etcd;reboot\" is not a systemd unit name"),
            ("kill-unit -etcd", "is not a systemd unit name"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_link_xml_names_the_cluster_nic_by_its_mac_and_only_sets_the_link() {
        let mac = Mac::for_node("worker-node-2", Nic::Cluster);
        let xml = cluster_interface("kthw-abc", mac, false);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let nic = doc.root_element();
        let child = |tag: &str, attr: &str| {
            nic.children().find(|c| c.has_tag_name(tag)).and_then(|c| c.attribute(attr)).map(str::to_string)
        };
        assert_eq!(nic.attribute("type"), Some("network"));
        assert_eq!(child("mac", "address"), Some(mac.to_string()));
        assert_eq!(child("source", "network").as_deref(), Some("kthw-abc"));
        assert_eq!(child("link", "state").as_deref(), Some("down"));
        assert!(cluster_interface("kthw-abc", mac, true).contains("<link state='up'/>"));
        assert_ne!(mac, Mac::for_node("worker-node-2", Nic::Management), "never the SSH NIC");
    }

    #[test]
    fn guest_commands_find_the_nic_by_mac_and_quote_units() {
        let mac = Mac::for_node("worker-node-1", Nic::Cluster).to_string();
        let delay = guest_command("worker-node-1", &Fault::Delay { ms: 200 });
        assert!(delay.contains(&format!("/link\\/ether {mac} /")), "{delay}");
        assert!(delay.contains("echo 200 > /run/kthw-netem/delay"), "{delay}");
        assert!(delay.contains("netem delay \"${d}ms\" loss \"${l}%\""), "{delay}");
        let loss = guest_command("worker-node-1", &Fault::Loss { percent: 0 });
        assert!(loss.contains("echo 0 > /run/kthw-netem/loss") && loss.contains("tc qdisc del"), "{loss}");
        let kill = guest_command("n", &Fault::KillUnit("getty@tty1.service".into()));
        assert!(kill.starts_with("systemctl kill -s KILL getty@tty1.service && "), "{kill}");
        let stop = guest_command("n", &Fault::StopUnit("a\\x2db".into()));
        assert!(stop.starts_with("systemctl stop 'a\\x2db' && "), "{stop}");
    }
}
