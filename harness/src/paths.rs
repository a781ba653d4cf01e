//! Where kthw keeps things: a cache (images, artifacts) and a state directory (one run directory per
//! cluster). `KTHW_HOME` puts both under one directory, which tests use to stay out of the user's home.

use std::path::PathBuf;

/// The test home's directory name inside a target directory ([`Paths::for_tests`]).
pub const TEST_HOME: &str = "kthw-test-home";

/// Root of everything kthw writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub cache: PathBuf,
    pub state: PathBuf,
}

impl Paths {
    /// `$KTHW_HOME/{cache,state}` when set, else the user's XDG cache and state directories.
    pub fn from_env() -> Paths {
        match std::env::var_os("KTHW_HOME").filter(|v| !v.is_empty()) {
            Some(home) => Paths::under(PathBuf::from(home)),
            None => {
                let home = dirs::home_dir().unwrap_or_else(|| PathBuf::from("/tmp"));
                Paths {
                    cache: dirs::cache_dir().unwrap_or_else(|| home.join(".cache")).join("kthw"),
                    state: dirs::state_dir().unwrap_or_else(|| home.join(".local/state")).join("kthw"),
                }
            }
        }
    }

    /// Where tests keep their images and clusters: `$KTHW_HOME` when set, else `kthw-test-home` in the target
    /// directory of the running test binary ([`crate::testing::target_dir`]), never the user's home. Every test
    /// binary built into one target directory (a workspace's, or another repository's sharing its
    /// `CARGO_TARGET_DIR`) shares one home, and with it the node image and the golden snapshots.
    pub fn for_tests() -> Result<Paths, String> {
        match std::env::var_os("KTHW_HOME").filter(|v| !v.is_empty()) {
            Some(home) => Ok(Paths::under(PathBuf::from(home))),
            None => Ok(Paths::under(crate::testing::target_dir()?.join(TEST_HOME))),
        }
    }

    pub fn under(root: PathBuf) -> Paths {
        Paths { cache: root.join("cache"), state: root.join("state") }
    }

    pub fn images(&self) -> PathBuf {
        self.cache.join("images")
    }

    pub fn artifacts(&self) -> PathBuf {
        self.cache.join("artifacts")
    }

    /// One directory per cluster: overlays, consoles, keys, logs.
    pub fn runs(&self) -> PathBuf {
        self.state.join("runs")
    }

    pub fn run(&self, cluster: &str) -> PathBuf {
        self.runs().join(cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_keep_their_home_in_the_target_directory_of_their_binary() {
        // nextest runs each test in its own process; KTHW_HOME is unset here unless the caller set it.
        let paths = Paths::for_tests().unwrap();
        match std::env::var_os("KTHW_HOME").filter(|v| !v.is_empty()) {
            Some(home) => assert_eq!(paths, Paths::under(PathBuf::from(home))),
            None => {
                let target = crate::testing::target_dir().unwrap();
                assert_eq!(paths, Paths::under(target.join(TEST_HOME)));
                assert!(std::env::current_exe().unwrap().starts_with(&target));
            }
        }
    }
}
