//! The checksum files publishers put beside their releases, in the forms each has used, and nothing else: a
//! file in another form is refused rather than guessed at, since a sum read wrongly verifies the wrong bytes.

use crate::artifacts::{Algorithm, Checksum};

/// How a publisher writes its checksum file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SumForm {
    /// Only the hex digest (dl.k8s.io's `<file>.sha256` and `.sha512`; kubernetes/website's kubectl install
    /// page checks one with `echo "$(cat kubectl.sha256)  kubectl" | sha256sum --check`).
    BareHex,
    /// `sha256sum`'s output, `<hex>  <file>` per line (a `*` before the name in binary mode), naming the file:
    /// etcd's `SHA256SUMS`, runc's `runc.sha256sum`, and the `<file>.sha256sum` or `.sha256` of the cilium
    /// CLI (its Makefile: `sha256sum $(TARGET)-$$OS-$$ARCH.tar.gz > ....sha256sum`), containerd and the CNI
    /// plugins.
    Coreutils,
}

impl SumForm {
    pub fn describe(self) -> &'static str {
        match self {
            SumForm::BareHex => "the bare hex digest",
            SumForm::Coreutils => "sha256sum's `<hex>  <file>` lines",
        }
    }
}

fn hex_of(len: usize, s: &str) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The sum of `file` that `text` (a checksum file in `form`, of `algorithm`) publishes, or what is wrong with
/// it for a person to read: which form was expected and what the file holds instead.
pub fn parse_sum_file(text: &str, form: SumForm, algorithm: Algorithm, file: &str) -> Result<Checksum, String> {
    let (name, len) = match algorithm {
        Algorithm::Sha256 => ("sha256", 64),
        Algorithm::Sha512 => ("sha512", 128),
    };
    let checksum = |hex: &str| Checksum::parse(&format!("{name}:{}", hex.to_ascii_lowercase()));
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let shown: String = first.chars().take(100).collect();
    match form {
        SumForm::BareHex => {
            let mut tokens = text.split_whitespace();
            match (tokens.next(), tokens.next()) {
                (Some(hex), None) if hex_of(len, hex) => checksum(hex),
                _ => Err(format!(
                    "expected {} ({len} hex digits of {name}) and nothing else, found {shown:?}",
                    form.describe()
                )),
            }
        }
        SumForm::Coreutils => {
            let mut found = Vec::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let parsed = line
                    .split_once("  ")
                    .or_else(|| line.split_once(" *"))
                    .filter(|(hex, named)| hex_of(len, hex) && !named.is_empty());
                let Some((hex, named)) = parsed else {
                    return Err(format!(
                        "expected {} with {len}-digit {name} digests, found {:?}",
                        form.describe(),
                        line.chars().take(100).collect::<String>()
                    ));
                };
                // `sha256sum` writes the name it was given: publishers run it inside their release directory, but
                // a path before the name (`./`, `release/`) still names the same file.
                if named.trim_end().rsplit('/').next() == Some(file) {
                    found.push(hex);
                }
            }
            match found.as_slice() {
                [hex] => checksum(hex),
                [] => Err(format!("it has no line for {file} (first line {shown:?})")),
                _ => Err(format!("it has {} lines for {file}", found.len())),
            }
        }
    }
}
