//! Which kernel file a node boots, and extracting the uncompressed one.
//!
//! Debian's kernel is an x86 bzImage whose payload is XZ-compressed. Under TCG its decompressor runs
//! emulated: on this host's kind the first console line came 8.1 to 8.7 s after QEMU started, against 1.0 to
//! 1.1 s for the same kernel as an ELF (one node, `-kernel` either file, same initrd and disk). The boot cut
//! in images/debian/boot-cuts/kernel.toml has the image build extract that ELF (what the kernel tree's
//! scripts/extract-vmlinux does) and nodes boot it through its PVH entry point.

use std::ops::Range;
use std::path::Path;
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use super::ImageError;

/// The file in an image directory that `<kernel>` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum KernelFile {
    /// The bzImage as Debian ships it; what the recipe without its boot cuts boots.
    #[default]
    #[serde(rename = "vmlinuz")]
    Compressed,
    /// Its payload decompressed: an ELF that QEMU's `-kernel` boots through the PVH entry point.
    #[serde(rename = "vmlinux")]
    Uncompressed,
}

impl KernelFile {
    pub fn file_name(self) -> &'static str {
        match self {
            KernelFile::Compressed => "vmlinuz",
            KernelFile::Uncompressed => "vmlinux",
        }
    }
}

/// boot-cuts/kernel.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KernelCut {
    pub boot: KernelFile,
}

/// Decompresses the XZ payload of the bzImage `bzimage` into the ELF `vmlinux`, and checks that the result
/// is the size the bzImage promises and has the entry point QEMU needs to boot it.
pub(super) async fn extract(bzimage: &Path, vmlinux: &Path) -> Result<(), ImageError> {
    let bytes = std::fs::read(bzimage).map_err(|e| ImageError::io("reading", bzimage, e))?;
    let payload = xz_payload(&bytes).map_err(|problem| ImageError::kernel(bzimage, problem))?;
    let expected = u32::from_le_bytes(bytes[payload.end - 4..payload.end].try_into().expect("4 bytes")) as u64;
    let output = std::fs::File::create(vmlinux).map_err(|e| ImageError::io("creating", vmlinux, e))?;
    // `--single-stream`: the payload ends with the 4-byte size after the XZ stream, which xz would refuse.
    let mut xz = tokio::process::Command::new("xz");
    xz.args(["--decompress", "--single-stream", "--stdout"])
        .stdin(Stdio::piped())
        .stdout(output)
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = xz.spawn().map_err(|e| ImageError::Tool {
        step: "xz",
        command: "xz --decompress --single-stream --stdout".into(),
        status: "could not start".into(),
        output: e.to_string(),
        fix: "sudo scripts/setup-host installs xz-utils; `kthw doctor` checks it".into(),
    })?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = bytes[payload].to_vec();
    let feed = tokio::spawn(async move {
        // xz stops reading after the stream; a broken pipe then is not an error.
        let _ = tokio::io::AsyncWriteExt::write_all(&mut stdin, &input).await;
    });
    let out = child.wait_with_output().await.map_err(|e| ImageError::io("running xz on", bzimage, e))?;
    let _ = feed.await;
    if !out.status.success() {
        return Err(ImageError::kernel(
            bzimage,
            format!("xz could not decompress its payload ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)),
        ));
    }
    let elf = std::fs::read(vmlinux).map_err(|e| ImageError::io("reading", vmlinux, e))?;
    if elf.len() as u64 != expected {
        return Err(ImageError::kernel(
            bzimage,
            format!("its payload decompressed to {} bytes; the bzImage says {expected}", elf.len()),
        ));
    }
    if !has_pvh_entry(&elf) {
        return Err(ImageError::kernel(
            bzimage,
            "its vmlinux has no PVH entry note (Xen note 18), so QEMU cannot boot it with -kernel; \
             the kernel needs CONFIG_PVH=y"
                .into(),
        ));
    }
    Ok(())
}

/// Where the compressed kernel lies in a bzImage, trailing size included.
///
/// Source: the kernel's Documentation/arch/x86/boot.rst, "The Real-Mode Kernel Header": `setup_sects` at
/// 0x1f1 (0 means 4), the magic `HdrS` at 0x202, the protocol version at 0x206 (2.08 added the payload
/// fields), `payload_offset` at 0x248 and `payload_length` at 0x24c, both counted from the protected-mode
/// code, which starts after the (setup_sects + 1) 512-byte sectors. The payload's last 4 bytes are the
/// uncompressed size, little-endian (scripts/Makefile.lib, `size_append`, used by `cmd_xzkern`).
pub fn xz_payload(bzimage: &[u8]) -> Result<Range<usize>, String> {
    if bzimage.get(0x202..0x206) != Some(b"HdrS") {
        return Err("it is not an x86 bzImage (no HdrS magic at 0x202)".into());
    }
    let version = le(bzimage, 0x206, 2).ok_or("its header is cut short")?;
    if version < 0x208 {
        return Err(format!(
            "its boot protocol is {}.{:02}; the payload fields need 2.08",
            version >> 8,
            version & 0xff
        ));
    }
    let setup_sects = match bzimage[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let (offset, length) = (le(bzimage, 0x248, 4).ok_or("cut short")?, le(bzimage, 0x24c, 4).ok_or("cut short")?);
    let start = (setup_sects + 1) * 512 + offset;
    let range = start..start + length;
    let payload = bzimage.get(range.clone()).ok_or_else(|| {
        format!("its payload ({length} bytes at {start}) runs past the end of the file ({} bytes)", bzimage.len())
    })?;
    // The XZ stream header magic (xz-file-format.txt, 2.1.1.1).
    if !payload.starts_with(b"\xfd7zXZ\0") || length < 4 + 6 {
        return Err("its payload is not XZ-compressed (Debian's amd64 kernels are)".into());
    }
    Ok(range)
}

/// Whether the ELF `elf` has the note QEMU's `-kernel` needs to boot it: name "Xen", type
/// XEN_ELFNOTE_PHYS32_ENTRY (18, Xen's public/elfnote.h). QEMU's `load_elfboot` (hw/i386/x86.c, since
/// QEMU 4.0) looks that note up and, without it, exits with "Error loading uncompressed kernel without PVH
/// ELF Note".
pub fn has_pvh_entry(elf: &[u8]) -> bool {
    const PT_NOTE: usize = 4;
    const XEN_ELFNOTE_PHYS32_ENTRY: usize = 18;
    let (u16_at, u32_at, u64_at) = (|o| le(elf, o, 2), |o| le(elf, o, 4), |o| le(elf, o, 8));
    // 64-bit, little-endian (e_ident[EI_CLASS] = 2, e_ident[EI_DATA] = 1).
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..phnum).any(|i| {
        let ph = phoff + i * phentsize;
        if u32_at(ph) != Some(PT_NOTE) {
            return false;
        }
        let (Some(mut at), Some(size)) = (u64_at(ph + 8), u64_at(ph + 32)) else { return false };
        let end = at.saturating_add(size).min(elf.len());
        let align4 = |n: usize| (n + 3) & !3;
        while at + 12 <= end {
            let (Some(namesz), Some(descsz), Some(kind)) = (u32_at(at), u32_at(at + 4), u32_at(at + 8)) else {
                return false;
            };
            let name = elf.get(at + 12..at + 12 + namesz);
            if name == Some(b"Xen\0") && kind == XEN_ELFNOTE_PHYS32_ENTRY {
                return true;
            }
            at += 12 + align4(namesz) + align4(descsz);
        }
        false
    })
}

/// The little-endian unsigned integer of `len` bytes (at most 8) at `at`, if `bytes` holds all of them.
fn le(bytes: &[u8], at: usize, len: usize) -> Option<usize> {
    let field = bytes.get(at..at.checked_add(len)?)?;
    Some(field.iter().rev().fold(0, |n, b| n << 8 | usize::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test double for the pure parsing: a bzImage header with a given payload, laid out as boot.rst says.
    fn bzimage(setup_sects: u8, version: u16, payload: &[u8]) -> Vec<u8> {
        let sects = if setup_sects == 0 { 4 } else { setup_sects as usize };
        let offset = 300usize;
        let mut b = vec![0u8; (sects + 1) * 512 + offset];
        b[0x1f1] = setup_sects;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        b[0x248..0x24c].copy_from_slice(&(offset as u32).to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(payload);
        b.extend_from_slice(b"trailing setup data");
        b
    }

    #[test]
    fn the_payload_is_found_from_the_setup_header_not_by_searching_for_the_magic() {
        let payload = b"\xfd7zXZ\0 stream bytes \x10\x00\x00\x00";
        let b = bzimage(39, 0x20f, payload);
        let r = xz_payload(&b).unwrap();
        assert_eq!(r.start, 40 * 512 + 300);
        assert_eq!(&b[r], payload);
        // setup_sects 0 means 4 (boot.rst).
        let b = bzimage(0, 0x20f, payload);
        assert_eq!(xz_payload(&b).unwrap().start, 5 * 512 + 300);
    }

    #[test]
    fn what_is_not_an_xz_bzimage_is_refused_saying_why() {
        let err = |b: &[u8]| xz_payload(b).unwrap_err();
        assert!(err(b"\x7fELF not a bzImage").contains("no HdrS magic"));
        assert!(err(&bzimage(39, 0x207, b"\xfd7zXZ\0 data")).contains("2.08"));
        assert!(err(&bzimage(39, 0x20f, b"\x28\xb5\x2f\xfd zstd frame")).contains("not XZ-compressed"));
        let mut cut = bzimage(39, 0x20f, b"\xfd7zXZ\0 stream bytes 1234");
        cut.truncate(40 * 512 + 310);
        assert!(err(&cut).contains("runs past the end"));
    }

    /// A test double for the pure parsing: an ELF64 with one PT_NOTE segment holding `notes`.
    fn elf_with_notes(notes: &[(&[u8], u32, &[u8])]) -> Vec<u8> {
        let mut section = Vec::new();
        for (name, kind, desc) in notes {
            section.extend_from_slice(&(name.len() as u32).to_le_bytes());
            section.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            section.extend_from_slice(&kind.to_le_bytes());
            for part in [*name, *desc] {
                section.extend_from_slice(part);
                section.resize(section.len().next_multiple_of(4), 0);
            }
        }
        let mut e = vec![0u8; 64 + 56];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        e[64..68].copy_from_slice(&4u32.to_le_bytes());
        e[64 + 8..64 + 16].copy_from_slice(&120u64.to_le_bytes());
        e[64 + 32..64 + 40].copy_from_slice(&(section.len() as u64).to_le_bytes());
        e.extend_from_slice(&section);
        e
    }

    #[test]
    fn the_pvh_entry_note_is_found_among_the_other_xen_notes() {
        // The notes `readelf -n` lists in Debian's 6.1.0-57-amd64 vmlinux, in order: GUEST_OS "linux",
        // GUEST_VERSION "2.6", XEN_VERSION "xen-3.0", VIRT_BASE, ... and PHYS32_ENTRY (0x12).
        let notes: [(&[u8], u32, &[u8]); 4] = [
            (b"Xen\0", 6, b"linux\0"),
            (b"Xen\0", 7, b"2.6\0"),
            (b"GNU\0", 3, b"build id bytes"),
            (b"Xen\0", 18, b"\x00\x10\x00\x01"),
        ];
        assert!(has_pvh_entry(&elf_with_notes(&notes)));
        assert!(!has_pvh_entry(&elf_with_notes(&notes[..3])), "no PHYS32_ENTRY");
        assert!(!has_pvh_entry(&elf_with_notes(&[(b"GNU\0", 18, b"abcd")])), "type 18 from another owner");
        let mut big_endian = elf_with_notes(&notes);
        big_endian[5] = 2;
        assert!(!has_pvh_entry(&big_endian));
        assert!(!has_pvh_entry(b"\x7fELF\x02\x01 cut short"));
    }

    #[test]
    fn the_cut_names_the_file_the_image_keeps() {
        let cut: KernelCut = toml::from_str("boot = \"vmlinux\"").unwrap();
        assert_eq!(cut.boot, KernelFile::Uncompressed);
        assert_eq!(cut.boot.file_name(), "vmlinux");
        assert!(toml::from_str::<KernelCut>("boot = \"bzImage\"").is_err());
        assert_eq!(KernelFile::default().file_name(), "vmlinuz");
    }
}
