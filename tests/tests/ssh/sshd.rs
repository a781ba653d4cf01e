//! A private OpenSSH server for one test: its own config, host key and authorized_keys in a temporary
//! directory, listening on a free loopback port, killed when the guard drops.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kthw::ssh::keys::{self, KeyPair};
use kthw::ssh::{Session, Target};

const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub host_key: KeyPair,
    pub client_key: Arc<KeyPair>,
}

/// The host prerequisite of this tier; `None` (and a SKIPPED line) when the test cannot run here.
pub fn available() -> Option<()> {
    let missing = (!std::path::Path::new(SSHD).exists())
        .then(|| format!("{SSHD} not found (fix: apt-get install openssh-server)"));
    kthw_tests::host_prerequisite("ssh", missing)
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    kthw::virt::free_port().expect("a free loopback port")
}

impl Sshd {
    /// A server with fresh keys on a free port, or `None` when sshd is missing here.
    pub fn start() -> Option<Sshd> {
        available()?;
        let host_key = KeyPair::generate("kthw-test host");
        Some(Sshd::start_on(free_port(), host_key, Arc::new(KeyPair::generate("kthw-test client"))))
    }

    /// A server on `port` with `host_key` that authorizes `client_key`.
    pub fn start_on(port: u16, host_key: KeyPair, client_key: Arc<KeyPair>) -> Sshd {
        // sshd insists on its privilege-separation directory even in debug mode.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd (the ssh tier runs as root)");
        let dir = tempfile::tempdir().unwrap();
        keys::write_private(&dir.path().join("host_key"), &host_key).unwrap();
        std::fs::write(dir.path().join("authorized_keys"), format!("{}\n", client_key.public_openssh())).unwrap();
        let config = dir.path().join("sshd_config");
        // Sessions get an empty HOME of their own (SetEnv overrides sshd's default environment, sshd_config(5)):
        // bash sources ~/.bashrc even for `ssh host cmd`, and a developer's or runner's root may run `pyenv init`
        // there, whose rehash lock serialises concurrent shells and, left stale by a killed shell, stalls each one
        // 60 s. Tests of the SSH client must not measure the host user's dotfiles. Nodes have Debian's own.
        std::fs::create_dir(dir.path().join("home")).unwrap();
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 StrictModes no\nUsePAM no\nPidFile none\nSubsystem sftp internal-sftp\nSetEnv HOME={dir}/home\n",
                dir = dir.path().display()
            ),
        )
        .unwrap();
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sshd");

        // Ready when sshd says it listens; its log goes to the test's stderr, shown when a test fails.
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("sshd:{port}: {line}");
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("Server listening on 127.0.0.1 port") => break,
                Ok(line) => seen.push(line),
                Err(_) => panic!("sshd on port {port} did not start listening within 10s; it said: {seen:?}"),
            }
        }
        Sshd { child, port, dir, host_key, client_key }
    }

    /// How the harness reaches this server: as it reaches a node, pinned to the server's host key.
    pub fn target(&self) -> Target {
        Target {
            log: Some(self.dir.path().join("node.log")),
            ..target(self.port, &self.host_key, self.client_key.clone())
        }
    }

    pub async fn connect(&self) -> Session {
        Session::connect(&self.target(), Duration::from_secs(10)).await.expect("connect to the test sshd")
    }

    /// A path in the test's directory, as the server side sees it (the same machine).
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the harness would reach a server on `port` with `host_key`, whether or not it runs yet.
pub fn target(port: u16, host_key: &KeyPair, client_key: Arc<KeyPair>) -> Target {
    Target {
        node: format!("sshd-{port}"),
        addr: ([127, 0, 0, 1], port).into(),
        user: current_user(),
        host_key: host_key.public_openssh(),
        client_key,
        log: None,
    }
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
