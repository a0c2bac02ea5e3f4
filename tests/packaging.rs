//! Packaging checks that need no cluster: the Helm chart renders (with
//! `packaging/render-chart.py`, helm's template subset, as helm is not packaged here) to
//! the committed manifests and they hold what the driver needs, every sidecar flag and
//! lvmd-csi flag the chart passes included; the Debian package builds with dpkg-deb and
//! contains the daemon, lvmd-ctl, the units and the config; the Containerfile agrees
//! with packaging/build-image.sh (the image CI builds and runs: packaging/check-image.sh
//! from tests/run.sh), and lvmd-csi links nothing beyond glibc and libgcc_s.

mod tools;

use std::path::Path;
use std::process::Command;

fn have_pyyaml(test: &str) -> bool {
    tools::require(
        test,
        "python3 with PyYAML",
        "python3-yaml",
        tools::runs("python3", &["-c", "import yaml"]),
    )
}

#[test]
fn helm_chart_renders_to_the_committed_manifests() {
    if !have_pyyaml("helm_chart_renders_to_the_committed_manifests") {
        return;
    }
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/render-chart.py"
        ))
        .arg("--check")
        // lvmd-csi's --help: every flag the chart passes the plugin must be there.
        .env("LVMD_CSI", env!("CARGO_BIN_EXE_lvmd-csi"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("ok: "), "{text}");
    assert!(!text.contains("not checked"), "{text}");
}

/// What a chart edit or a sidecar bump that nobody checked looks like to `--check`:
/// each mutation of the rendered chart must be refused, naming the problem.
#[test]
fn chart_check_refuses_unchecked_flags_pins_and_rules() {
    if !have_pyyaml("chart_check_refuses_unchecked_flags_pins_and_rules") {
        return;
    }
    let script = r#"
import importlib.util, os, sys, yaml
spec = importlib.util.spec_from_file_location("rc", sys.argv[1])
rc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rc)
values = yaml.safe_load(open(os.path.join(rc.CHART, "values.yaml")))
text = rc.render_chart()
rc.check(text, values)
cases = [
    ("- --capacity-ownerref-level=1", "- --capacity-ownerref-level=1\n            - --feature-gates=Topology=true", "no flag --feature-gates"),
    ("csi-provisioner:v6.3.0", "csi-provisioner:v6.9.0", "checked against v6.3.0"),
    ("- --leader-election\n", "- --leader-election\n            - --leader-elect-namespace=x\n", "no flag --leader-elect-namespace"),
    ('resources: ["volumeattributesclasses"]', 'resources: ["none"]', "volumeattributesclasses"),
    ("- --max-volumes=", "- --max-volume=", "lvmd-csi has no flag --max-volume"),
    # The encrypted class: one Secret per PVC, in its namespace, for every operation
    # kubelet passes the key in, with templates the provisioner resolves; no sidecar
    # reads Secrets (kubelet does).
    ('"${pvc.name}-luks"', '"shared-luks"', "is not per PVC"),
    ('node-stage-secret-namespace: "${pvc.namespace}"', 'node-stage-secret-namespace: "kube-system"', "is not the PVC's"),
    ('node-expand-secret-name: "${pvc.name}-luks"', 'node-expand-secret-name: "${pvc.name}-other"', "name different secrets"),
    ('"${pvc.name}-luks"', '"${pvc.uid}-luks"', "resolves no ${pvc.uid}"),
    ('  csi.storage.k8s.io/node-publish-secret-name: "${pvc.name}-luks"\n', "", "no node-publish secret"),
    ('resources: ["nodes", "pods"]', 'resources: ["nodes", "pods", "secrets"]', "on secrets"),
    ('  encryption: "true"\n', "", "not encrypted but references secrets"),
]
for old, new, want in cases:
    bad = text.replace(old, new)
    assert bad != text, old
    try:
        rc.check(bad, values)
    except AssertionError as e:
        assert want in str(e), (want, str(e))
    else:
        raise SystemExit(f"--check accepted {new!r}")
print("refused", len(cases))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/render-chart.py"
        ))
        .env("LVMD_CSI", env!("CARGO_BIN_EXE_lvmd-csi"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(text.trim(), "refused 12");
}

#[test]
fn debian_package_builds_and_holds_the_daemon() {
    if !tools::require(
        "debian_package_builds_and_holds_the_daemon",
        "dpkg-deb",
        "dpkg",
        tools::runs("dpkg-deb", &["--version"]),
    ) {
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

fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The packages under `install-deps.sh`'s `# build:` comment (up to the next comment).
fn build_packages(install_deps: &str) -> Vec<String> {
    let mut lines = install_deps.lines().map(str::trim);
    lines
        .find(|l| l.starts_with("# build"))
        .expect("install-deps.sh has no `# build:` group");
    let pkgs: Vec<String> = lines
        .take_while(|l| !l.starts_with('#') && *l != ")")
        .flat_map(str::split_whitespace)
        .map(String::from)
        .collect();
    assert!(!pkgs.is_empty(), "install-deps.sh's build group is empty");
    pkgs
}

/// The Containerfile's stages as (FROM line, instructions with continuations joined).
fn stages(containerfile: &str) -> Vec<(String, Vec<String>)> {
    let joined = containerfile.replace("\\\n", " ");
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    for line in joined.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("FROM ") {
            stages.push((line.to_string(), vec![]));
        } else {
            stages
                .last_mut()
                .expect("an instruction before FROM")
                .1
                .push(line.to_string());
        }
    }
    stages
}

/// What the `apt-get install` commands of these instructions install.
fn apt_installed(instructions: &[String]) -> Vec<String> {
    let mut pkgs = Vec::new();
    for i in instructions.iter().filter(|i| i.starts_with("RUN ")) {
        for cmd in i.split("&&") {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            if let Some(at) = words.windows(2).position(|w| w == ["apt-get", "install"]) {
                pkgs.extend(
                    words[at + 2..]
                        .iter()
                        .filter(|w| !w.starts_with('-'))
                        .map(|w| w.to_string()),
                );
            }
        }
    }
    pkgs
}

#[test]
fn parsers_read_install_deps_and_containerfile() {
    let deps = "packages=(\n  # build: x\n  a b\n  c\n  # tests\n  d\n)\n";
    assert_eq!(build_packages(deps), ["a", "b", "c"]);
    let cf = "# c\nFROM x AS build\nRUN apt-get update && apt-get install -y \\\n  p q \\\n  && rm -rf l\nCOPY . .\nFROM y\nENTRYPOINT [\"z\"]\n";
    let s = stages(cf);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].0, "FROM x AS build");
    assert_eq!(apt_installed(&s[0].1), ["p", "q"]);
    assert!(apt_installed(&s[1].1).is_empty());
}

/// Podman users build the image CI builds: the Containerfile's build stage installs
/// what install-deps.sh says building lvmd needs (devicemapper-sys runs bindgen against
/// libdevmapper, protoc for tonic) and assembles the root with build-image.sh's own
/// `--root`, and its runtime stage is that root alone, run as build-image.sh's user.
#[test]
fn containerfile_agrees_with_build_image() {
    let want = build_packages(&read("packaging/install-deps.sh"));
    for p in [
        "libdevmapper-dev",
        "libclang-dev",
        "pkg-config",
        "protobuf-compiler",
    ] {
        assert!(
            want.contains(&p.to_string()),
            "install-deps.sh's build group lost {p}"
        );
    }
    let stages = stages(&read("packaging/Containerfile"));
    let (from, build) = stages
        .iter()
        .find(|(from, _)| from.ends_with(" AS build"))
        .expect("a build stage");
    assert!(from.contains("rust:"), "{from}");
    let have = apt_installed(build);
    let missing: Vec<&String> = want.iter().filter(|p| !have.contains(p)).collect();
    assert!(
        missing.is_empty(),
        "packaging/Containerfile's build stage lacks {missing:?} (install-deps.sh's build group)"
    );
    assert!(
        build
            .iter()
            .any(|i| i.contains("packaging/build-image.sh --root /out target/release/lvmd-csi")),
        "the build stage must assemble the root with build-image.sh --root: {build:?}"
    );
    let (runtime, run) = stages.last().unwrap();
    assert_eq!(
        runtime, "FROM scratch",
        "the runtime stage is build-image.sh's root alone"
    );
    let script = read("packaging/build-image.sh");
    let id = |key: &str| {
        script
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("build-image.sh sets no {key}"))
            .to_string()
    };
    let user = format!("USER {}:{}", id("IMAGE_UID"), id("IMAGE_GID"));
    assert_eq!(
        run,
        &vec![
            "COPY --from=build /out/ /".to_string(),
            user,
            r#"ENTRYPOINT ["/usr/bin/lvmd-csi"]"#.to_string()
        ]
    );
    // The build context: sources, not the host's target directory.
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l == "/target"), "{ignore}");
}

/// The image holds the Debian packages of what lvmd-csi links (build-image.sh asks
/// ldd), so each library it links grows the image: glibc and libgcc_s are all it may
/// need (e.g. no libdevmapper from devicemapper-sys's link line, no libudev, no
/// libcryptsetup: those belong to lvmd on the host).
#[test]
fn lvmd_csi_needs_only_glibc_and_libgcc() {
    if !tools::require(
        "lvmd_csi_needs_only_glibc_and_libgcc",
        "ldd",
        "libc-bin",
        tools::runs("ldd", &["--version"]),
    ) {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_lvmd-csi");
    let out = Command::new("ldd").arg(bin).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ldd {bin}: {text}");
    // glibc's libraries (libpthread, libdl, librt are stubs since 2.34 but older
    // toolchains still name them), libgcc_s, the dynamic loader and the vDSO.
    let glibc = [
        "libc.so.6",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libgcc_s.so.1",
    ];
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let name = line.split_whitespace().next().unwrap();
        let base = name.rsplit('/').next().unwrap();
        let ok = glibc.contains(&base)
            || base.starts_with("ld-linux")
            || base.starts_with("linux-vdso")
            || base.starts_with("linux-gate");
        assert!(
            ok,
            "lvmd-csi needs {name}, beyond glibc and libgcc_s:\n{text}"
        );
        libs.push(base.to_string());
    }
    assert!(libs.iter().any(|l| l == "libc.so.6"), "{text}");
}

/// Every StorageClass the chart ships is one lvmd-csi takes: its parameters pass the
/// plugin's own checks (a class the plugin refused would fail every PVC of it), and
/// the integrity mirror class asks for a raid1 with integrity.
#[test]
fn the_charts_storage_classes_are_ones_lvmd_csi_takes() {
    if !have_pyyaml("the_charts_storage_classes_are_ones_lvmd_csi_takes") {
        return;
    }
    let script = "import json, sys, yaml\n\
                  docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]\n\
                  print(json.dumps({d['metadata']['name']: d['parameters'] for d in docs \
                  if d.get('kind') == 'StorageClass'}))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/manifests/lvmd-csi.yaml"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let classes: std::collections::HashMap<String, std::collections::HashMap<String, String>> =
        serde_json::from_slice(&out.stdout).unwrap();
    assert!(classes.len() >= 4, "{classes:?}");
    for (name, params) in &classes {
        let p = lvmd::csi::params::parse(params)
            .unwrap_or_else(|e| panic!("{name}: refused: {}", e.message()));
        if name == "lvmd-mirror-integrity" {
            assert_eq!(
                (p.layout, p.mirrors, p.integrity),
                (lvmd::csi::params::Layout::Raid1, 1, Some(true))
            );
        }
    }
    assert!(classes.contains_key("lvmd-mirror-integrity"), "{classes:?}");
}
