//! Golden snapshots as a run uses them: what one would be keyed by, and restoring a copy of it.

use super::{Plan, Running, Up, UpError};
use crate::events::Event;
use crate::golden::{self, GoldenError, KeyInputs};
use crate::image::NodeImage;
use crate::phase::Phase;

impl Up {
    /// What a golden snapshot of this run's last phase ([`Up::until`]) on `image` is keyed by: for a caller
    /// that keys a state of its own on top of it (`kthw::testkit::Golden`).
    pub async fn golden_key_inputs(&self, image: &NodeImage) -> Result<KeyInputs, UpError> {
        self.golden_inputs(image, self.until).await
    }

    /// A copy of golden snapshot `key`, named, kept and armed for a panic as this builder says; None when
    /// there is no such snapshot or it must not be used (said in the events).
    pub async fn restore_copy(&self, key: &str) -> Result<Option<Running>, UpError> {
        let Some(mut cluster) = self.restore_golden(key, self.cluster_name()).await? else { return Ok(None) };
        self.keep_if_asked(&mut cluster)?;
        let plan = Plan { last: self.until, blocked: None };
        Ok(Some(self.running(cluster, plan, Vec::new(), self.bootstrap())))
    }

    /// What a golden snapshot of this run's last phase would be keyed by.
    pub(super) async fn golden_inputs(&self, image: &NodeImage, last: Phase) -> Result<KeyInputs, UpError> {
        let uri = self.uri.clone().unwrap_or_else(crate::virt::connect::uri);
        let hypervisor = crate::virt::blocking(move || {
            let conn = crate::virt::connect::open(&uri)?;
            conn.hyp_version().map_err(|e| crate::virt::libvirt_error("read the hypervisor version of", &uri, e))
        })
        .await
        .map_err(|e| self.golden_error(e.into()))?;
        let accel = crate::accel::detect(&self.paths.state, Some(&image.kernel)).accel;
        Ok(KeyInputs::new(&image.key, &self.spec, &self.bootstrap().manifest, last, accel, hypervisor))
    }

    /// A copy of snapshot `key`, or None when there is none or it must not be used (said, then rebuilt).
    pub(super) async fn restore_golden(
        &self,
        key: &str,
        name: &str,
    ) -> Result<Option<crate::cluster::Cluster>, UpError> {
        match golden::store::open(&self.paths, key) {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(None),
            Err(e) if e.is_unusable() => {
                self.events.emit(Event::Note(format!("golden: not using snapshot {key}: {e}")));
                return Ok(None);
            }
            Err(e) => return Err(self.golden_error(e)),
        }
        self.events.emit(Event::Note(format!("golden: restoring snapshot {key} instead of booting (`--fresh` boots)")));
        let uri = self.uri.clone().unwrap_or_else(crate::virt::connect::uri);
        match golden::restore(&self.paths, key, name, &uri, &self.events).await {
            Ok((cluster, restored)) => {
                let events = self.events.with_timeline(cluster.run_dir());
                events.emit(Event::Note(format!(
                    "golden: {} nodes restored from {key} in {:.1} s",
                    cluster.nodes().len(),
                    restored.took.as_secs_f64()
                )));
                Ok(Some(cluster))
            }
            Err(e) if e.is_unusable() => {
                self.events.emit(Event::Note(format!("golden: not using snapshot {key}: {e}")));
                Ok(None)
            }
            Err(e) => Err(self.golden_error(e)),
        }
    }

    pub(super) fn golden_error(&self, e: GoldenError) -> UpError {
        UpError::Golden { name: self.cluster_name().to_string(), source: Box::new(e) }
    }
}
