//! Ed25519 keys made by the harness: one client key per cluster, one host key per node. Nothing here trusts a
//! key it did not make; the client pins each node's host key (see `session`).

use std::path::Path;

use rand::RngCore;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};

use super::SshError;

/// An ed25519 key pair.
#[derive(Clone)]
pub struct KeyPair {
    key: PrivateKey,
}

impl std::fmt::Debug for KeyPair {
    // Never print the private half.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("fingerprint", &self.fingerprint()).finish()
    }
}

impl KeyPair {
    /// A fresh key from the OS's random source, with `comment` as its OpenSSH comment.
    pub fn generate(comment: &str) -> KeyPair {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        key.set_comment(comment);
        KeyPair { key }
    }

    /// Parses an unencrypted OpenSSH private key.
    pub fn from_openssh(pem: &str) -> Result<KeyPair, String> {
        let key = PrivateKey::from_openssh(pem).map_err(|e| e.to_string())?;
        if key.is_encrypted() {
            return Err("the key is encrypted; the harness only uses keys it made, unencrypted".into());
        }
        Ok(KeyPair { key })
    }

    /// The OpenSSH private-key format, as sshd's HostKey and `ssh -i` read it.
    pub fn private_openssh(&self) -> String {
        self.key.to_openssh(LineEnding::LF).expect("an ed25519 key always encodes").to_string()
    }

    /// `ssh-ed25519 AAAA... comment`, as authorized_keys and known_hosts hold it.
    pub fn public_openssh(&self) -> String {
        self.key.public_key().to_openssh().expect("an ed25519 key always encodes")
    }

    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    pub(crate) fn private_key(&self) -> &PrivateKey {
        &self.key
    }
}

/// The SHA256 fingerprint of a public key in OpenSSH format.
pub fn fingerprint_of(public_openssh: &str) -> Result<String, String> {
    let key = PublicKey::from_openssh(public_openssh.trim()).map_err(|e| e.to_string())?;
    Ok(key.fingerprint(HashAlg::Sha256).to_string())
}

/// Writes the private key with mode 0600 (ssh and sshd refuse group- or world-readable keys), atomically.
pub fn write_private(path: &Path, key: &KeyPair) -> Result<(), SshError> {
    crate::files::write_atomic(path, key.private_openssh().as_bytes(), 0o600)
        .map_err(|e| SshError::Key { path: path.to_path_buf(), detail: format!("cannot write: {e}") })
}

/// Reads a private key written by [`write_private`].
pub fn read_private(path: &Path) -> Result<KeyPair, SshError> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| SshError::Key { path: path.to_path_buf(), detail: format!("cannot read: {e}") })?;
    KeyPair::from_openssh(&pem).map_err(|detail| SshError::Key { path: path.to_path_buf(), detail })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_round_trips_through_its_file_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        let key = KeyPair::generate("kthw test");
        write_private(&path, &key).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let back = read_private(&path).unwrap();
        assert_eq!(back.public_openssh(), key.public_openssh());
        assert!(key.public_openssh().starts_with("ssh-ed25519 AAAA"));
        assert!(key.public_openssh().ends_with(" kthw test"));
        assert!(key.private_openssh().starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert_eq!(fingerprint_of(&key.public_openssh()).unwrap(), key.fingerprint());
        assert!(key.fingerprint().starts_with("SHA256:"));
    }

    #[test]
    fn two_keys_differ_and_debug_hides_the_secret() {
        let (a, b) = (KeyPair::generate("a"), KeyPair::generate("b"));
        assert_ne!(a.fingerprint(), b.fingerprint());
        let shown = format!("{a:?}");
        assert!(shown.contains("SHA256:") && !shown.contains("PRIVATE"), "{shown}");
    }

    #[test]
    fn a_garbled_key_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad");
        std::fs::write(&path, "not a key").unwrap();
        let e = read_private(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
    }
}
