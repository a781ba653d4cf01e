//! A golden node's domain XML as a template: what libvirt wrote into the save image, with everything that
//! belongs to one cluster (its id in object names, its run directory, its forward port, its UUID and
//! ownership metadata) replaced by placeholders, and the disk's recorded backing chain dropped so that libvirt
//! probes the copy's own chain (copy overlay → frozen golden disk → base image).

use crate::virt::xml::escape;
use crate::virt::Ownership;

const ID: &str = "@KTHW_ID@";
const RUN_DIR: &str = "@KTHW_RUN_DIR@";
const PORT: &str = "@KTHW_PORT@";
const METADATA: &str = "@KTHW_METADATA@";

/// What a template is made from: the saved cluster's own values.
pub struct Source<'a> {
    pub id: &'a str,
    pub run_dir: &'a str,
    pub ssh_port: u16,
}

/// What one copy puts in the placeholders.
pub struct Copy<'a> {
    pub id: &'a str,
    pub run_dir: &'a str,
    pub ssh_port: u16,
    pub uuid: &'a str,
    pub ownership: &'a Ownership,
}

/// Turns a saved domain's XML into a template; an error names what was not where kthw puts it.
pub fn make(xml: &str, source: &Source) -> Result<String, String> {
    let fwd = |port: &str| format!("hostfwd=tcp:127.0.0.1:{port}-:22");
    for (what, needle) in [
        ("the forward port", fwd(&source.ssh_port.to_string())),
        ("the run directory", source.run_dir.to_string()),
        ("the cluster id", format!("kthw-{}", source.id)),
    ] {
        if !xml.contains(&needle) {
            return Err(format!("the saved domain XML does not contain {what} ({needle})"));
        }
    }
    let mut t = strip_element(xml, "uuid");
    t = strip_element(&t, "backingStore");
    t = replace_element_content(&t, "metadata", METADATA).ok_or("the saved domain XML has no <metadata>")?;
    t = t.replace(&fwd(&source.ssh_port.to_string()), &fwd(PORT));
    t = t.replace(source.run_dir, RUN_DIR);
    Ok(t.replace(&format!("kthw-{}", source.id), &format!("kthw-{ID}")))
}

/// The domain XML of one copy.
pub fn fill(template: &str, copy: &Copy) -> String {
    let xml = template
        .replace(ID, copy.id)
        .replace(RUN_DIR, &escape(copy.run_dir))
        .replace(PORT, &copy.ssh_port.to_string())
        .replace(METADATA, &copy.ownership.to_xml());
    match xml.find("</name>") {
        Some(at) => {
            let at = at + "</name>".len();
            format!("{}\n  <uuid>{}</uuid>{}", &xml[..at], copy.uuid, &xml[at..])
        }
        None => xml,
    }
}

/// A random version-4 UUID, so no two copies (nor a copy and its golden source) ever share one.
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Removes every `<tag ...>...</tag>` and `<tag .../>`, nested ones included, and the line break before each.
fn strip_element(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut out = xml.to_string();
    while let Some(start) = find_tag(&out, &open) {
        let mut depth = 0usize;
        let mut at = start;
        let end = loop {
            let next_open = find_tag(&out[at..], &open).map(|i| i + at);
            let next_close = out[at..].find(&close).map(|i| i + at);
            match (next_open, next_close) {
                (Some(o), c) if c.is_none_or(|c| o < c) => {
                    let tag_end = out[o..].find('>').map(|i| i + o).unwrap_or(out.len() - 1);
                    if out[..tag_end].ends_with('/') {
                        if depth == 0 {
                            break tag_end + 1;
                        }
                    } else {
                        depth += 1;
                    }
                    at = tag_end + 1;
                }
                (_, Some(c)) => {
                    depth = depth.saturating_sub(1);
                    at = c + close.len();
                    if depth == 0 {
                        break at;
                    }
                }
                _ => break out.len(),
            }
        };
        let start = out[..start].trim_end_matches([' ', '\n']).len();
        out.replace_range(start..end, "");
    }
    out
}

/// `<tag` followed by the end of the name (so `<uuid` does not match `<uuidx`).
fn find_tag(s: &str, open: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find(open).map(|i| i + from) {
        if matches!(s.as_bytes().get(i + open.len()), Some(b' ' | b'>' | b'/' | b'\n')) {
            return Some(i);
        }
        from = i + open.len();
    }
    None
}

fn replace_element_content(xml: &str, tag: &str, with: &str) -> Option<String> {
    let start = find_tag(xml, &format!("<{tag}"))?;
    let body = xml[start..].find('>')? + start + 1;
    let end = xml[body..].find(&format!("</{tag}>"))? + body;
    Some(format!("{}{with}{}", &xml[..body], &xml[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virt::Owner;

    /// Written by hand to exercise the template, in the shape of the domain XML libvirt saves with a snapshot.
    const SAVED: &str = "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>kthw-0a1b2c3d-worker-node-1</name>
  <uuid>11ad2d17-0075-4f2e-adbe-196f794d4df6</uuid>
  <metadata>
    <kthw:cluster xmlns:kthw='https://kthw.dev/xmlns/cluster/1'><kthw:id>0a1b2c3d</kthw:id></kthw:cluster>
  </metadata>
  <devices>
    <disk type='file' device='disk'>
      <source file='/s/runs/a/nodes/worker-node-1/disk.qcow2'/>
      <backingStore type='file'>
        <format type='qcow2'/>
        <source file='/c/images/k/disk.qcow2'/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'><source network='kthw-0a1b2c3d'/></interface>
    <serial type='file'><source path='/s/runs/a/nodes/worker-node-1/console.log'/></serial>
  </devices>
  <qemu:commandline>
    <qemu:arg value='user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:40001-:22'/>
  </qemu:commandline>
</domain>";

    fn source() -> Source<'static> {
        Source { id: "0a1b2c3d", run_dir: "/s/runs/a", ssh_port: 40001 }
    }

    #[test]
    fn a_copy_gets_its_own_names_paths_port_uuid_and_owner_and_no_stale_backing_chain() {
        let t = make(SAVED, &source()).unwrap();
        for gone in ["0a1b2c3d", "/s/runs/a", "40001", "11ad2d17", "backingStore", "/c/images"] {
            assert!(!t.contains(gone), "{gone} left in the template:\n{t}");
        }
        let ownership = Ownership {
            cluster_id: "99887766".into(),
            cluster_name: "copy".into(),
            node: Some("worker-node-1".into()),
            run_dir: "/s/runs/copy".into(),
            owner: Owner { pid: 1, start: 2 },
            created: 3,
            harness_version: "0".into(),
        };
        let uuid = new_uuid();
        let copy =
            Copy { id: "99887766", run_dir: "/s/runs/copy", ssh_port: 40777, uuid: &uuid, ownership: &ownership };
        let xml = fill(&t, &copy);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let text = |tag: &str| doc.descendants().find(|n| n.has_tag_name(tag)).and_then(|n| n.text()).unwrap();
        assert_eq!(text("name"), "kthw-99887766-worker-node-1");
        assert_eq!(text("uuid"), uuid);
        assert!(xml.contains("<source file='/s/runs/copy/nodes/worker-node-1/disk.qcow2'/>"), "{xml}");
        assert!(xml.contains("<source network='kthw-99887766'/>"));
        assert!(xml.contains("hostfwd=tcp:127.0.0.1:40777-:22"));
        assert_eq!(Ownership::from_object_xml(&xml), Some(ownership));
    }

    #[test]
    fn xml_that_kthw_did_not_write_is_refused_with_what_is_missing() {
        let err = make("<domain><metadata/></domain>", &source()).unwrap_err();
        assert!(err.contains("forward port"), "{err}");
    }

    #[test]
    fn uuids_are_fresh_and_well_formed() {
        let (a, b) = (new_uuid(), new_uuid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
