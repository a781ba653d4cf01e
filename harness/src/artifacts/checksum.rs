//! Published sums: `sha256:<hex>` or `sha512:<hex>`, and hashing a file to compare against one.

use std::fmt;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256, Sha512};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: Algorithm,
    /// Lower-case hex.
    pub hex: String,
}

impl Checksum {
    pub fn parse(text: &str) -> Result<Checksum, String> {
        let (alg, hex) = text.split_once(':').ok_or_else(|| format!("{text:?} is not <algorithm>:<hex>"))?;
        let (algorithm, len) = match alg {
            "sha256" => (Algorithm::Sha256, 64),
            "sha512" => (Algorithm::Sha512, 128),
            other => return Err(format!("unsupported checksum algorithm {other:?} (sha256 or sha512)")),
        };
        if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(format!("{text:?} is not {len} lower-case hex digits after {alg}:"));
        }
        Ok(Checksum { algorithm, hex: hex.to_string() })
    }

    /// The same algorithm's sum of the file at `path`.
    pub fn of_file(algorithm: Algorithm, path: &Path) -> std::io::Result<Checksum> {
        let mut f = std::fs::File::open(path)?;
        let mut buf = vec![0u8; 1 << 20];
        let hex = match algorithm {
            Algorithm::Sha256 => hash_reader::<Sha256>(&mut f, &mut buf)?,
            Algorithm::Sha512 => hash_reader::<Sha512>(&mut f, &mut buf)?,
        };
        Ok(Checksum { algorithm, hex })
    }
}

fn hash_reader<D: Digest>(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<String> {
    let mut d = D::new();
    loop {
        let n = r.read(buf)?;
        if n == 0 {
            return Ok(hex::encode(d.finalize()));
        }
        d.update(&buf[..n]);
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alg = match self.algorithm {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        };
        write!(f, "{alg}:{}", self.hex)
    }
}
