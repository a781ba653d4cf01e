//! `just test` builds the example downstream crate (examples/downstream, a workspace of its own) in the
//! workspace's target directory, so that it compiles no dependency a second time: that holds only while its
//! dev profile is the workspace's. kthw itself is a member here and a dependency there, where
//! `[profile.dev.package."*"]` would optimise it, so the example gives kthw the members' settings by name.

use super::*;

/// The `[profile]` table of the manifest at `path` (relative to the root).
fn profile_of(path: &str) -> toml::Table {
    let file = repo().join(path);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    doc.get("profile").and_then(|p| p.as_table()).cloned().unwrap_or_default()
}

#[test]
fn the_example_downstream_crate_builds_in_the_workspaces_profile() {
    let ours = profile_of("Cargo.toml");
    let mut theirs = profile_of("examples/downstream/Cargo.toml");
    let dev = theirs.get_mut("dev").and_then(|d| d.as_table_mut()).expect("the example has [profile.dev]");
    let packages = dev.get_mut("package").and_then(|p| p.as_table_mut()).expect("per-package settings");
    let kthw = packages.remove("kthw").expect("the example names kthw's own settings");
    let members_debug = ours["dev"].get("debug").cloned().expect("the workspace's dev debug setting");
    let expected = toml::Table::from_iter([
        ("opt-level".to_string(), toml::Value::Integer(0)),
        ("debug".to_string(), members_debug),
    ]);
    assert_eq!(kthw.as_table(), Some(&expected), "kthw as the workspace builds its members");
    assert_eq!(theirs, ours, "examples/downstream/Cargo.toml's [profile] is the workspace's (plus kthw's line)");
}
