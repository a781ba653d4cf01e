//! How far a node's boot got, read from its serial console: the stage (firmware, kernel, our initrd, root
//! mounted, systemd, sshd) and, while it boots, whether it still makes progress. Pure: the cluster's boot
//! watch ([`crate::cluster`]) feeds it the console's bytes and decides what a stall costs.
//!
//! The markers are what this image prints on `console=ttyS0` (a Debian 6.1 kernel, `images/debian/initrd/init`,
//! systemd 252): each is one line's text, with systemd's colour escapes removed first.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's boot, in the order it happens. Ordered: a later stage is greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootStage {
    /// Nothing on the console yet: the firmware loads the kernel and initrd (direct kernel boot prints nothing).
    Firmware,
    /// The kernel runs (`Linux version ...`).
    Kernel,
    /// Our initrd runs (`Run /init as init process`): loading virtio and ext4, waiting for the root disk.
    Initrd,
    /// The root filesystem is mounted (`EXT4-fs (vda): mounted`).
    RootMounted,
    /// systemd runs (`systemd[1]: systemd 252... running`, `Welcome to Debian`).
    Systemd,
    /// sshd was started (`Started ssh.service`), or the login prompt is up: SSH should answer now.
    Sshd,
}

impl BootStage {
    /// The stage a console line says was reached, if it marks one.
    pub fn of_line(line: &str) -> Option<BootStage> {
        // Kernel lines carry a "[    3.927573] " stamp; systemd's status lines colour escapes.
        let line = strip_escapes(line);
        let text = match line.trim_start().strip_prefix('[') {
            Some(rest) if rest.trim_start().starts_with(|c: char| c.is_ascii_digit()) => {
                rest.split_once("] ").map_or(rest, |(_, t)| t)
            }
            _ => line.trim(),
        };
        if text.starts_with("Linux version ") {
            Some(BootStage::Kernel)
        } else if text.starts_with("Run /init as init process") {
            Some(BootStage::Initrd)
        } else if text.starts_with("EXT4-fs (vda): mounted") {
            Some(BootStage::RootMounted)
        } else if (text.starts_with("systemd[1]: systemd ") && text.contains(" running in system mode"))
            || text.starts_with("Welcome to ")
        {
            Some(BootStage::Systemd)
        } else if (text.contains("Started ") && text.contains("ssh.service")) || text.ends_with(" login:") {
            Some(BootStage::Sshd)
        } else {
            None
        }
    }

    /// The furthest stage `console` shows (its whole text, or what it grew by).
    pub fn reached(console: &str) -> BootStage {
        console.lines().filter_map(BootStage::of_line).max().unwrap_or(BootStage::Firmware)
    }

    /// Whether a node in this stage should still show progress on its console: before sshd it prints as it
    /// goes; once sshd runs the console may rightly stay quiet (a login prompt), and SSH is what is waited on.
    pub fn should_progress(self) -> bool {
        self < BootStage::Sshd
    }

    pub fn name(self) -> &'static str {
        match self {
            BootStage::Firmware => "firmware",
            BootStage::Kernel => "kernel",
            BootStage::Initrd => "initrd",
            BootStage::RootMounted => "root-mounted",
            BootStage::Systemd => "systemd",
            BootStage::Sshd => "sshd",
        }
    }

    /// Where a boot stopped, for a person: "in the initrd (loading virtio and ext4, waiting for /dev/vda)".
    pub fn describe(self) -> &'static str {
        match self {
            BootStage::Firmware => "in the firmware (nothing on the console yet: no kernel output)",
            BootStage::Kernel => "in the kernel, before the initrd",
            BootStage::Initrd => "in the initrd (loading virtio and ext4 modules, then mounting /dev/vda)",
            BootStage::RootMounted => "after mounting the root disk, before systemd",
            BootStage::Systemd => "in systemd, before sshd",
            BootStage::Sshd => "with sshd started",
        }
    }
}

impl fmt::Display for BootStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A console line without ANSI escape sequences (`ESC [ ... letter`) and carriage returns.
fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The last `n` non-blank lines of `console`, escapes removed: what a person reads to see where it stopped.
pub fn last_lines(console: &str, n: usize) -> Vec<String> {
    let lines: Vec<String> =
        console.lines().map(strip_escapes).filter(|l| !l.trim().is_empty()).map(|l| l.trim_end().to_string()).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node that stopped in the initrd: the whole console of worker-node-1 from the 2026-12-07 evidence
    /// (tests/fixtures/README.md).
    const STALLED: &str = include_str!("../tests/fixtures/console-stalled-in-initrd-2026-12-07.log");
    /// Its neighbour in the same `up`, which booted to the login prompt (tests/fixtures/README.md).
    const BOOTED: &str = include_str!("../tests/fixtures/console-booted-to-login-2026-12-07.log");

    #[test]
    fn the_stalled_node_of_the_evidence_stopped_in_the_initrd_after_the_vda_line() {
        assert_eq!(BootStage::reached(STALLED), BootStage::Initrd);
        let last = last_lines(STALLED, 2);
        assert!(last[1].contains("virtio_blk virtio1: [vda] 16777216 512-byte logical blocks"), "{last:?}");
        assert!(BootStage::Initrd.should_progress());
    }

    #[test]
    fn its_neighbour_reached_every_stage_in_order() {
        assert_eq!(BootStage::reached(BOOTED), BootStage::Sshd);
        let mut seen: Vec<BootStage> = Vec::new();
        for s in BOOTED.lines().filter_map(BootStage::of_line) {
            if seen.last().is_none_or(|l| *l < s) {
                seen.push(s);
            }
            assert!(s >= *seen.last().unwrap(), "stage {s} after {seen:?}: the markers go backwards");
        }
        use BootStage::*;
        assert_eq!(seen, [Kernel, Initrd, RootMounted, Systemd, Sshd]);
        assert!(!Sshd.should_progress(), "a login prompt may rightly stay quiet");
    }

    #[test]
    fn each_stage_begins_where_the_evidence_shows_it() {
        // The line that first marks each stage in the booted console, escapes removed.
        let first = |stage: BootStage| {
            BOOTED.lines().find(|l| BootStage::of_line(l) == Some(stage)).map(strip_escapes).unwrap_or_default()
        };
        assert!(first(BootStage::Kernel).contains("Linux version 6.1.0-"));
        assert!(first(BootStage::Initrd).ends_with("Run /init as init process"));
        assert!(first(BootStage::RootMounted).contains("EXT4-fs (vda): mounted filesystem"));
        assert!(first(BootStage::Systemd).contains("systemd 252"));
        assert_eq!(first(BootStage::Sshd).trim(), "[  OK  ] Started ssh.service - OpenBSD Secure Shell server.");
    }

    #[test]
    fn an_empty_console_is_the_firmware_and_lookalikes_mark_nothing() {
        assert_eq!(BootStage::reached(""), BootStage::Firmware);
        // Written by hand to exercise the matcher: "Starting ssh.service" is not sshd running, and a
        // journal line quoting a marker mid-line is not the marker.
        for line in [
            "         Starting \u{1b}[0;1;39mssh.service\u{1b}[0m - OpenBSD Secure Shell server...",
            "[    9.1] kthw-identity[312]: Run /init as init process",
            "[    3.1] virtio_blk virtio1: [vda] 16777216 512-byte logical blocks (8.59 GB/8.00 GiB)",
        ] {
            assert_eq!(BootStage::of_line(line), None, "{line}");
        }
    }

    #[test]
    fn escapes_and_carriage_returns_are_gone_from_last_lines() {
        let text = "a\r\n\u{1b}[0;32m  OK  \u{1b}[0m] Reached target\r\n\r\n";
        assert_eq!(last_lines(text, 5), ["a", "  OK  ] Reached target"]);
    }
}
