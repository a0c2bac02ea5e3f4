//! Packaging checks that need no cluster: the Helm chart renders (with
//! `packaging/render-chart.py`, helm's template subset, as helm is not packaged here) to
//! the committed manifests and they hold what the driver needs; the Debian package
//! builds with dpkg-deb and contains the daemon, lvmd-ctl, the units and the config.

use std::path::Path;
use std::process::Command;

fn have(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn helm_chart_renders_to_the_committed_manifests() {
    if !have("python3", &["-c", "import yaml"]) {
        eprintln!("SKIPPED: python3 with PyYAML (Debian: python3-yaml) is not installed");
        return;
    }
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/render-chart.py"
        ))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn debian_package_builds_and_holds_the_daemon() {
    if !have("dpkg-deb", &["--version"]) {
        eprintln!("SKIPPED: dpkg-deb is not installed");
        return;
    }
    let bins = Path::new(env!("CARGO_BIN_EXE_lvmd")).parent().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/debian/build-deb.sh"
    ))
    .arg(bins)
    .arg(out_dir.path())
    .env("DEB_COMPRESSION", "none")
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let info = Command::new("dpkg-deb")
        .args(["--info", &deb])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    for want in [
        "Package: lvmd",
        &format!("Version: {}", env!("CARGO_PKG_VERSION")),
        "conffiles",
        "postinst",
    ] {
        assert!(info.contains(want), "missing {want}:\n{info}");
    }
    let list = Command::new("dpkg-deb")
        .args(["--contents", &deb])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for want in [
        "./usr/bin/lvmd\n",
        "./usr/bin/lvmd-ctl\n",
        "./usr/lib/systemd/system/lvmd.service\n",
        "./usr/lib/systemd/system/lvmd.socket\n",
        "./etc/lvmd/lvmd.toml\n",
    ] {
        assert!(list.contains(want), "missing {want}:\n{list}");
    }
    assert!(list.starts_with("drwxr-xr-x root/root"), "{list}");
    assert!(
        !list.contains("lvmd-csi"),
        "the plugin ships as an image, not in the .deb"
    );
}
