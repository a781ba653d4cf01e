//! Who made a libvirt object: the `<metadata>` element kthw puts on every network and domain it defines, so a
//! reaper can tell a live run's objects from those a killed run left behind.

use std::path::PathBuf;

use super::xml::escape;

/// The project's XML namespace for libvirt `<metadata>`.
pub const NAMESPACE: &str = "https://kthw.dev/xmlns/cluster/1";
const ELEMENT: &str = "cluster";

/// A process, identified beyond its pid: pids are reused, the start time (in clock ticks since host boot,
/// from /proc/PID/stat) tells a recycled pid from the original owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub start: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        Owner::of(std::process::id()).unwrap_or(Owner { pid: std::process::id(), start: 0 })
    }

    /// The running process `pid`, with its start time; None when there is no such process.
    pub fn of(pid: u32) -> Option<Owner> {
        Some(Owner { pid, start: process_start(pid)? })
    }

    /// Is the owning process still running (the same process, not a later one with its pid)?
    pub fn is_alive(&self) -> bool {
        process_start(self.pid) == Some(self.start)
    }
}

/// Field 22 of /proc/PID/stat: when the process started. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last ')'.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// What kthw records on each object it creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// Unique per `up`; part of every libvirt name of the cluster.
    pub cluster_id: String,
    /// The name a person gave the cluster (`kthw up --name`).
    pub cluster_name: String,
    /// The node a domain runs; None on the network.
    pub node: Option<String>,
    /// The cluster's run directory: its state file says whether the cluster was kept past its owner.
    pub run_dir: PathBuf,
    pub owner: Owner,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub harness_version: String,
}

impl Ownership {
    /// The `<kthw:cluster>` element, ready to go inside `<metadata>`.
    pub fn to_xml(&self) -> String {
        let node = match &self.node {
            Some(n) => format!("\n      <kthw:node>{}</kthw:node>", escape(n)),
            None => String::new(),
        };
        format!(
            "<kthw:{ELEMENT} xmlns:kthw='{NAMESPACE}'>
      <kthw:id>{}</kthw:id>
      <kthw:name>{}</kthw:name>{node}
      <kthw:run-dir>{}</kthw:run-dir>
      <kthw:owner pid='{}' start='{}'/>
      <kthw:created>{}</kthw:created>
      <kthw:version>{}</kthw:version>
    </kthw:{ELEMENT}>",
            escape(&self.cluster_id),
            escape(&self.cluster_name),
            escape(&self.run_dir.to_string_lossy()),
            self.owner.pid,
            self.owner.start,
            self.created,
            escape(&self.harness_version),
        )
    }

    /// Reads our element out of a whole domain or network XML document; None when the object is not ours
    /// (no element in our namespace) or the element is incomplete.
    pub fn from_object_xml(xml: &str) -> Option<Ownership> {
        let doc = roxmltree::Document::parse(xml).ok()?;
        let el = doc.descendants().find(|n| n.tag_name().namespace() == Some(NAMESPACE) && n.has_tag_name(ELEMENT))?;
        let child =
            |name: &str| el.children().find(|c| c.tag_name().namespace() == Some(NAMESPACE) && c.has_tag_name(name));
        let text = |name: &str| child(name).map(|c| c.text().unwrap_or("").to_string());
        let owner = child("owner")?;
        Some(Ownership {
            cluster_id: text("id")?,
            cluster_name: text("name")?,
            node: text("node"),
            run_dir: PathBuf::from(text("run-dir")?),
            owner: Owner { pid: owner.attribute("pid")?.parse().ok()?, start: owner.attribute("start")?.parse().ok()? },
            created: text("created")?.parse().ok()?,
            harness_version: text("version")?,
        })
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ownership {
        Ownership {
            cluster_id: "0a1b2c3d".into(),
            cluster_name: "a<b&c".into(),
            node: Some("worker-node-1".into()),
            run_dir: "/tmp/runs/x y".into(),
            owner: Owner { pid: 42, start: 4242 },
            created: 1_700_000_000,
            harness_version: "0.1.0".into(),
        }
    }

    #[test]
    fn round_trips_through_an_object_document_with_escaping() {
        let m = sample();
        let doc = format!("<domain><name>x</name><metadata>{}</metadata></domain>", m.to_xml());
        assert_eq!(Ownership::from_object_xml(&doc), Some(m));
    }

    #[test]
    fn libvirt_may_rename_the_prefix_the_namespace_is_what_counts() {
        let m = Ownership { node: None, ..sample() };
        let doc = format!(
            "<network><metadata>{}</metadata></network>",
            m.to_xml().replace("kthw:", "other:").replace("xmlns:kthw", "xmlns:other")
        );
        assert_eq!(Ownership::from_object_xml(&doc), Some(m));
    }

    #[test]
    fn objects_without_our_element_are_not_ours() {
        let doc = "<domain><metadata><x:cluster xmlns:x='https://example.org/'><x:id>1</x:id></x:cluster></metadata></domain>";
        assert_eq!(Ownership::from_object_xml(doc), None);
        assert_eq!(Ownership::from_object_xml("<domain><name>test</name></domain>"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_recycled_pid_is_not_its_owner() {
        let me = Owner::current();
        assert!(me.start > 0);
        assert!(me.is_alive());
        assert!(!Owner { start: me.start + 1, ..me }.is_alive());
        assert!(!Owner { pid: u32::MAX, start: 1 }.is_alive());
    }
}
