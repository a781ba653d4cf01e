//! libvirt's QEMU save image: a fixed header, the domain XML (and a cookie) in a data block, then QEMU's
//! migration stream. libvirt refuses a restore whose XML names another UUID than the image's, and two
//! domains cannot share a UUID, so each copy of a golden node gets its own image: a header and data block
//! written here, with the copy's XML, followed by the golden image's stream (copied in the kernel with
//! copy_file_range, and deleted once QEMU has read it).
//!
//! The layout is libvirt's `virQEMUSaveHeader` (src/qemu/qemu_saveimage.h), stable since libvirt 0.9 because
//! old images must stay restorable: 16 bytes of magic, then 19 native-endian u32 (version, data_len,
//! was_running, compressed/format, cookieOffset, 14 unused), then `data_len` bytes holding the NUL-terminated
//! XML and, at `cookieOffset`, the NUL-terminated cookie.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const MAGIC: &[u8; 16] = b"LibvirtQemudSave";
const FIELDS: usize = 19;
pub const HEADER_LEN: u64 = 16 + 4 * FIELDS as u64;
const VERSION: usize = 0;
const DATA_LEN: usize = 1;
const FORMAT: usize = 3;
const COOKIE_OFFSET: usize = 4;

/// What precedes the migration stream in a save image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveImage {
    fields: [u32; FIELDS],
    pub xml: String,
    /// The cookie, NUL included; empty when the image has none.
    cookie: Vec<u8>,
    /// Where the migration stream starts in the file.
    pub stream_offset: u64,
}

impl SaveImage {
    pub fn read(path: &Path) -> io::Result<SaveImage> {
        let mut f = File::open(path)?;
        let mut head = [0u8; HEADER_LEN as usize];
        f.read_exact(&mut head)?;
        if &head[..16] != MAGIC {
            return Err(invalid("not a complete libvirt save image (wrong magic)"));
        }
        let mut fields = [0u32; FIELDS];
        for (i, v) in fields.iter_mut().enumerate() {
            *v = u32::from_ne_bytes(head[16 + 4 * i..20 + 4 * i].try_into().expect("4 bytes"));
        }
        if fields[VERSION] != 2 {
            return Err(invalid(&format!("save image version {} (kthw knows version 2)", fields[VERSION])));
        }
        if fields[FORMAT] != 0 {
            return Err(invalid("a compressed save image (kthw saves raw ones)"));
        }
        let mut data = vec![0u8; fields[DATA_LEN] as usize];
        f.read_exact(&mut data)?;
        let xml_end = data.iter().position(|b| *b == 0).ok_or_else(|| invalid("the domain XML is not terminated"))?;
        let xml = String::from_utf8(data[..xml_end].to_vec()).map_err(|_| invalid("the domain XML is not UTF-8"))?;
        let cookie = match fields[COOKIE_OFFSET] as usize {
            0 => Vec::new(),
            at if at < data.len() => {
                let end = data[at..].iter().position(|b| *b == 0).map_or(data.len(), |n| at + n + 1);
                data[at..end].to_vec()
            }
            _ => return Err(invalid("the cookie offset lies beyond the data")),
        };
        Ok(SaveImage { fields, xml, cookie, stream_offset: HEADER_LEN + u64::from(fields[DATA_LEN]) })
    }

    /// The header and data block for `xml` in place of this image's XML.
    pub fn with_xml(&self, xml: &str) -> Vec<u8> {
        let mut data = xml.as_bytes().to_vec();
        data.push(0);
        let mut fields = self.fields;
        fields[COOKIE_OFFSET] = if self.cookie.is_empty() { 0 } else { data.len() as u32 };
        data.extend_from_slice(&self.cookie);
        fields[DATA_LEN] = data.len() as u32;
        let mut out = MAGIC.to_vec();
        for v in fields {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        out.extend_from_slice(&data);
        out
    }

    /// Writes `to`: this image's header and data with `xml`, then the migration stream of `from` (this image's
    /// file). Returns the bytes written.
    pub fn write_copy(&self, from: &Path, xml: &str, to: &Path) -> io::Result<u64> {
        let mut src = File::open(from)?;
        src.seek(SeekFrom::Start(self.stream_offset))?;
        let mut dst = File::options().write(true).create_new(true).open(to)?;
        let head = self.with_xml(xml);
        dst.write_all(&head)?;
        // std::io::copy between two files is copy_file_range on Linux: no pass through user space.
        let stream = io::copy(&mut src, &mut dst)?;
        Ok(head.len() as u64 + stream)
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(xml: &str, cookie: &[u8], stream: &[u8]) -> Vec<u8> {
        let mut data = xml.as_bytes().to_vec();
        data.push(0);
        let cookie_at = data.len() as u32;
        data.extend_from_slice(cookie);
        data.resize(data.len() + 100, 0); // libvirt pads the block so the XML can grow in place
        let mut out = MAGIC.to_vec();
        let fields: [u32; FIELDS] =
            std::array::from_fn(|i| [2, data.len() as u32, 1, 0, cookie_at].get(i).copied().unwrap_or(0));
        fields.iter().for_each(|v| out.extend_from_slice(&v.to_ne_bytes()));
        out.extend_from_slice(&data);
        out.extend_from_slice(stream);
        out
    }

    #[test]
    fn a_copy_carries_the_new_xml_the_cookie_and_the_whole_stream() {
        let dir = tempfile::tempdir().unwrap();
        let golden = dir.path().join("golden.save");
        let stream: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&golden, image("<domain><uuid>a</uuid></domain>", b"<cookie/>\0", &stream)).unwrap();
        let read = SaveImage::read(&golden).unwrap();
        assert_eq!(read.xml, "<domain><uuid>a</uuid></domain>");
        let copy = dir.path().join("copy.save");
        let written = read.write_copy(&golden, "<domain><uuid>b-longer</uuid></domain>", &copy).unwrap();
        assert_eq!(written, std::fs::metadata(&copy).unwrap().len());
        let again = SaveImage::read(&copy).unwrap();
        assert_eq!(again.xml, "<domain><uuid>b-longer</uuid></domain>");
        assert_eq!(again.cookie, b"<cookie/>\0");
        let bytes = std::fs::read(&copy).unwrap();
        assert_eq!(&bytes[again.stream_offset as usize..], &stream[..]);
        assert!(read.write_copy(&golden, "<x/>", &copy).is_err(), "an existing copy is never overwritten");
    }

    #[test]
    fn a_partial_or_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.save");
        let mut partial = image("<domain/>", b"", b"stream");
        partial[..16].copy_from_slice(b"LibvirtQemudPart"); // what libvirt writes until a save completes
        std::fs::write(&path, &partial).unwrap();
        assert!(SaveImage::read(&path).unwrap_err().to_string().contains("wrong magic"));
        std::fs::write(&path, &image("<domain/>", b"", b"")[..50]).unwrap();
        assert!(SaveImage::read(&path).is_err());
    }
}
