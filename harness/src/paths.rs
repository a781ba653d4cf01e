//! Where kthw keeps things: a cache (images, artifacts) and a state directory (one run directory per
//! cluster). `KTHW_HOME` puts both under one directory, which tests use to stay out of the user's home.

use std::path::PathBuf;

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
