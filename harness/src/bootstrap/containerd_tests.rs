//! containerd's config, per the containerd that reads it, read back at the tables upstream's own documents
//! put each setting in.

use super::configs::{containerd_config, ContainerdConfig, CriSettings, REGISTRY_HOSTS_DIR};
use super::node_files::worker_files;
use super::Layout;
use crate::spec::{ClusterSpec, Origin, Release, VersionSet, VersionSpec};

const PAUSE: &str = "registry.k8s.io/pause:3.10";

/// Lines of containerd/containerd@v1.7.27:docs/cri/config.md ("Full configuration", config version 2), cut
/// to the tables and keys kthw sets, comments dropped; values as upstream writes them.
const V2_DOC: &str = r#"
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.7"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
"#;

/// Lines of containerd/containerd@v2.1.9:docs/cri/config.md ("Full configuration", config version 3), cut the
/// same way.
const V3_DOC: &str = r#"
version = 3
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'registry.k8s.io/pause:3.10'
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = ''
  [plugins.'io.containerd.cri.v1.runtime']
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
          runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dir = ''
      bin_dirs = ['/opt/cni/bin']
      conf_dir = '/etc/cni/net.d'
"#;

/// What we set, as [`CriSettings`] reads it.
fn ours(format: ContainerdConfig) -> CriSettings {
    CriSettings::read(&containerd_config(format, PAUSE)).unwrap()
}

#[test]
fn upstreams_documents_read_where_our_reader_looks() {
    // Every key the reader takes is where each version's document has it: none is read as missing.
    let v2 = CriSettings::read(V2_DOC).unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.sandbox_image.as_deref(), Some("registry.k8s.io/pause:3.7"));
    assert_eq!(v2.cni_bin_dirs, ["/opt/cni/bin"]);
    assert_eq!(v2.registry_config_path.as_deref(), Some(""));
    let v3 = CriSettings::read(V3_DOC).unwrap();
    assert_eq!(v3.version, 3);
    assert_eq!(v3.sandbox_image.as_deref(), Some(PAUSE));
    assert_eq!(v3.cni_bin_dirs, ["/opt/cni/bin"], "an empty bin_dir is unset");
    assert_eq!(v3.registry_config_path.as_deref(), Some(""));
    for doc in [&v2, &v3] {
        assert_eq!(doc.default_runtime.as_deref(), Some("runc"));
        assert_eq!(doc.runc_runtime_type.as_deref(), Some("io.containerd.runc.v2"));
        assert_eq!(doc.cni_conf_dir.as_deref(), Some("/etc/cni/net.d"));
        assert!(!doc.systemd_cgroup, "the documented default");
    }
}

#[test]
fn each_config_version_sets_the_same_cri_settings_in_its_own_tables() {
    for format in [ContainerdConfig::V2, ContainerdConfig::V3, ContainerdConfig::V3BinDirs] {
        let text = containerd_config(format, PAUSE);
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["version"].as_integer(), Some(format.version()), "{text}");
        let got = ours(format);
        assert_eq!(got.sandbox_image.as_deref(), Some(PAUSE), "{text}");
        assert!(got.systemd_cgroup, "{text}");
        assert_eq!(got.default_runtime.as_deref(), Some("runc"), "{text}");
        assert_eq!(got.runc_runtime_type.as_deref(), Some("io.containerd.runc.v2"), "{text}");
        assert_eq!(got.cni_bin_dirs, ["/opt/cni/bin"], "{text}");
        assert_eq!(got.cni_conf_dir.as_deref(), Some("/etc/cni/net.d"), "{text}");
        assert_eq!(got.registry_config_path.as_deref(), Some(REGISTRY_HOSTS_DIR), "{text}");
        let plugins: Vec<&String> = v["plugins"].as_table().unwrap().keys().collect();
        match format {
            ContainerdConfig::V2 => assert_eq!(plugins, ["io.containerd.grpc.v1.cri"]),
            _ => assert_eq!(plugins, ["io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"]),
        }
        // 2.0 has only `bin_dir`; 2.1 deprecates it for `bin_dirs` and refuses both at once.
        let cni = if format == ContainerdConfig::V2 {
            &v["plugins"]["io.containerd.grpc.v1.cri"]["cni"]
        } else {
            &v["plugins"]["io.containerd.cri.v1.runtime"]["cni"]
        };
        assert_eq!(cni.get("bin_dirs").is_some(), format == ContainerdConfig::V3BinDirs, "{text}");
        assert_eq!(cni.get("bin_dir").is_some(), format != ContainerdConfig::V3BinDirs, "{text}");
    }
}

#[test]
fn the_config_version_follows_the_containerd_release() {
    let of = |v: &str| ContainerdConfig::for_release(Release::parse(v).unwrap());
    // containerd RELEASES.md at v2.1.9, "Daemon Configuration": version 3 from v2.0.0.
    assert_eq!(of("1.6.20"), ContainerdConfig::V2);
    assert_eq!(of("1.7.27"), ContainerdConfig::V2);
    assert_eq!(of("2.0.0"), ContainerdConfig::V3);
    assert_eq!(of("2.0.6"), ContainerdConfig::V3);
    assert_eq!(of("2.1.0"), ContainerdConfig::V3BinDirs);
    assert_eq!(of("2.2.7"), ContainerdConfig::V3BinDirs);

    let spec =
        |versions: VersionSpec, from: Origin| ClusterSpec { versions, containerd_from: from, ..Default::default() };
    assert_eq!(ContainerdConfig::for_spec(&spec(VersionSet::Seed.into(), Origin::Upstream)), ContainerdConfig::V2);
    assert_eq!(
        ContainerdConfig::for_spec(&spec(VersionSet::Current.into(), Origin::Upstream)),
        ContainerdConfig::V3BinDirs
    );
    // The node image's Debian 12 containerd is 1.6, whatever the spec's upstream pin.
    assert_eq!(ContainerdConfig::for_spec(&spec(VersionSet::Current.into(), Origin::Debian)), ContainerdConfig::V2);
    let mut custom = VersionSpec::from(VersionSet::Seed);
    custom.named.insert(crate::spec::VersionKey::Containerd, "2.0.4".to_string());
    assert_eq!(ContainerdConfig::for_spec(&spec(custom, Origin::Upstream)), ContainerdConfig::V3);
}

#[test]
fn the_workers_phase_renders_the_config_of_the_containerd_its_spec_runs() {
    let layout = Layout::default();
    for (set, version) in [(VersionSet::Seed, 2), (VersionSet::Current, 3)] {
        let spec = ClusterSpec { versions: set.into(), ..Default::default() };
        let files = worker_files(&spec, "worker-node-1", &layout, PAUSE);
        let config = files.iter().find(|f| f.path == layout.containerd_config).unwrap();
        assert_eq!(CriSettings::read(&config.contents).unwrap().version, version, "{set}");
    }
}
