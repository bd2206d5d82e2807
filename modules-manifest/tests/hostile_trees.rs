//! Hostile module trees, manifests and command lines (issue 8): each is
//! refused (or bounded) with a message that names the file, line, path,
//! module or cycle. Run with `--nocapture` to see every message.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeSet;
use std::fs;

use modules_manifest::cmdline::MAX_CMDLINE_BYTES;
use modules_manifest::depmod::{IndexError, IndexErrorKind as K, MAX_INDEX_FILE_BYTES};
use modules_manifest::manifest::MAX_MANIFEST_BYTES;
use modules_manifest::{plan, DepIndex, KernelCmdline, Manifest, ModuleName, PlanInput};

fn show(case: &str, message: &str) {
    eprintln!("[{case}] {message}");
}

/// The error and its message (the message is what the user reads; the
/// kind is what code matches).
fn dep_error(dep: &str) -> (IndexError, String) {
    let e = DepIndex::parse(dep, "", "", "").unwrap_err();
    let m = e.to_string();
    (e, m)
}

fn plan_error(dep: &str, softdep: &str, alias: &str, chain: &[&str]) -> String {
    let index = DepIndex::parse(dep, "", softdep, alias).unwrap();
    let json = serde_json::json!({
        "version": 1,
        "chains": [{ "name": "boot", "modules": chain, "required": true }],
    });
    let manifest = Manifest::from_json(json.to_string().as_bytes()).unwrap();
    let cmdline = KernelCmdline::parse("");
    let loaded = BTreeSet::new();
    plan(PlanInput {
        manifest: &manifest,
        index: &index,
        cmdline: &cmdline,
        loaded: &loaded,
    })
    .unwrap_err()
    .to_string()
}

#[test]
fn a_dot_dot_path_in_modules_dep_is_refused_naming_file_line_and_path() {
    let (e, m) = dep_error("kernel/a.ko:\nkernel/../../../etc/shadow.ko:\n");
    show("modules.dep ..", &m);
    assert_eq!(
        e.kind,
        K::ParentComponent {
            path: "kernel/../../../etc/shadow.ko".into()
        }
    );
    assert!(m.starts_with("modules.dep:2: "), "{m}");
    assert!(m.contains("\"kernel/../../../etc/shadow.ko\""), "{m}");
    assert!(m.contains("\"..\""), "{m}");

    // Also as a dependency, and at the start.
    let (e, m) = dep_error("kernel/a.ko: ../b.ko\n");
    show("modules.dep .. dependency", &m);
    assert!(
        matches!(&e.kind, K::Dependency { of, error } if of.as_str() == "a"
            && matches!(**error, K::ParentComponent { .. })),
        "{e:?}"
    );
    assert!(m.starts_with("modules.dep:1: dependency of a: "), "{m}");
    assert!(m.contains("\"../b.ko\""), "{m}");
}

#[test]
fn an_absolute_path_in_modules_dep_is_refused() {
    let (e, m) = dep_error("/etc/shadow.ko:\n");
    show("modules.dep absolute", &m);
    assert!(matches!(e.kind, K::AbsolutePath { .. }), "{e:?}");
    assert!(m.starts_with("modules.dep:1: "), "{m}");
    assert!(
        m.contains("\"/etc/shadow.ko\"") && m.contains("absolute"),
        "{m}"
    );

    let e = DepIndex::parse("", "/lib/x.ko\n", "", "").unwrap_err();
    let m = e.to_string();
    show("modules.builtin absolute", &m);
    assert!(matches!(e.kind, K::AbsolutePath { .. }), "{e:?}");
    assert!(
        m.starts_with("modules.builtin:1: ") && m.contains("absolute"),
        "{m}"
    );
}

#[test]
fn a_file_that_is_not_a_module_is_refused() {
    let (e, m) = dep_error("kernel/a.ko:\nkernel/shadow:\n");
    show("modules.dep not a module", &m);
    assert!(matches!(e.kind, K::NotModuleFile { .. }), "{e:?}");
    assert!(
        m.starts_with("modules.dep:2: ") && m.contains("\"kernel/shadow\""),
        "{m}"
    );
}

#[test]
fn a_self_dependency_is_a_cycle_naming_the_module() {
    let m = plan_error("kernel/a.ko: kernel/a.ko\n", "", "", &["a"]);
    show("self-dependency", &m);
    assert!(m.contains("dependency cycle: a → a"), "{m}");
    assert!(m.contains("modules.dep"), "{m}");
}

#[test]
fn a_dependency_cycle_in_modules_dep_is_named() {
    let dep = "kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/c.ko\nkernel/c.ko: kernel/a.ko\n";
    let m = plan_error(dep, "", "", &["a"]);
    show("modules.dep cycle", &m);
    assert!(m.starts_with("dependency cycle: "), "{m}");
    for n in ["a", "b", "c"] {
        assert!(m.contains(&format!("{n} needs ")), "{m}");
    }
}

#[test]
fn a_softdep_cycle_is_named() {
    let dep = "kernel/a.ko:\nkernel/b.ko:\n";
    let softdep = "softdep a pre: b\nsoftdep b pre: crypto-a\n";
    let alias = "alias crypto-a a\n";
    let m = plan_error(dep, softdep, alias, &["a"]);
    show("softdep cycle", &m);
    assert!(m.starts_with("dependency cycle: "), "{m}");
    assert!(m.contains("a has softdep pre: b"), "{m}");
    assert!(m.contains("b has softdep pre: a"), "{m}");
}

#[test]
fn a_cycle_through_chain_order_and_a_dependency_is_named() {
    // The chain loads b after a, but a needs b.
    let m = plan_error(
        "kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n",
        "",
        "",
        &["a", "b"],
    );
    show("chain order vs modules.dep", &m);
    assert!(m.starts_with("dependency cycle: "), "{m}");
    assert!(
        m.contains("chain \"boot\" lists b after a") && m.contains("a needs b"),
        "{m}"
    );
}

#[test]
fn an_oversized_manifest_is_refused_before_parsing() {
    let mut big =
        br#"{"version": 1, "chains": [], "init": {"path": "/sbin/init", "args": [""#.to_vec();
    big.resize(MAX_MANIFEST_BYTES + 1, b'x');
    let m = Manifest::from_json(&big).unwrap_err().to_string();
    show("manifest > 1 MiB", &m);
    assert!(
        m.contains(&format!("{} bytes", MAX_MANIFEST_BYTES + 1)),
        "{m}"
    );
    assert!(m.contains("limit"), "{m}");
}

#[test]
fn an_oversized_depmod_file_is_refused_naming_it() {
    let dir = std::env::temp_dir().join(format!("kmodinit-hostile-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("modules.dep"), "kernel/a.ko:\n").unwrap();
    // A sparse file one byte over the bound: no disk space, same read path.
    let f = fs::File::create(dir.join("modules.alias")).unwrap();
    f.set_len(MAX_INDEX_FILE_BYTES + 1).unwrap();
    let e = DepIndex::load(&dir).unwrap_err();
    let m = e.to_string();
    fs::remove_dir_all(&dir).unwrap();
    show("modules.alias > 64 MiB", &m);
    assert_eq!((e.kind, e.line), (K::TooLarge, 0));
    assert!(m.contains("modules.alias"), "{m}");
    assert!(m.contains("larger than"), "{m}");
}

#[test]
fn an_oversized_or_malformed_builtin_modinfo_is_refused_naming_it() {
    let dir = std::env::temp_dir().join(format!("kmodinit-modinfo-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("modules.dep"), "kernel/a.ko:\n").unwrap();
    let f = fs::File::create(dir.join("modules.builtin.modinfo")).unwrap();
    f.set_len(MAX_INDEX_FILE_BYTES + 1).unwrap();
    let big_err = DepIndex::load(&dir).unwrap_err();
    assert_eq!(big_err.kind, K::TooLarge);
    let big = big_err.to_string();
    fs::write(
        dir.join("modules.builtin.modinfo"),
        b"dh_generic.alias=crypto-dh\0etc/shadow.alias=x\0",
    )
    .unwrap();
    let bad_err = DepIndex::load(&dir).unwrap_err();
    assert!(matches!(bad_err.kind, K::ModinfoName(_)), "{bad_err:?}");
    let bad = bad_err.to_string();
    fs::remove_dir_all(&dir).unwrap();
    show("modules.builtin.modinfo > 64 MiB", &big);
    assert!(big.contains("modules.builtin.modinfo"), "{big}");
    assert!(big.contains("larger than"), "{big}");
    show("modules.builtin.modinfo with a path as a module", &bad);
    assert!(bad.contains("modules.builtin.modinfo:2: "), "{bad}");
}

#[test]
fn an_oversized_command_line_is_cut_with_a_warning() {
    let mut line = String::from("root=/dev/vda1 ");
    while line.len() <= MAX_CMDLINE_BYTES {
        line.push_str("virtio_blk.x=1 ");
    }
    line.push_str("ext4.late=1");
    let c = KernelCmdline::parse(&line);
    let w = c.warnings.join("; ");
    show("cmdline > 64 KiB", &w);
    assert_eq!(c.root.as_deref(), Some("/dev/vda1"));
    assert!(w.contains("only the first"), "{w}");
    assert!(!c
        .module_params
        .contains_key(&ModuleName::new("ext4").unwrap()));
}

#[test]
fn a_manifest_naming_a_path_instead_of_a_module_is_refused() {
    for bad in ["../../etc/shadow", "/etc/shadow", "a/b"] {
        let json =
            format!(r#"{{"version": 1, "chains": [{{"name": "x", "modules": ["{bad}"]}}]}}"#);
        let m = Manifest::from_json(json.as_bytes())
            .unwrap_err()
            .to_string();
        show(&format!("manifest module {bad:?}"), &m);
        assert!(m.contains("chains[0].modules[0]"), "{m}");
        assert!(m.contains("not a plain module name"), "{m}");
    }
}

#[test]
fn a_depmod_file_that_is_not_text_is_refused_naming_the_line() {
    let dir = std::env::temp_dir().join(format!("kmodinit-hostile-bin-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("modules.dep"),
        b"kernel/a.ko:\nkernel/\xff\xfe.ko:\n",
    )
    .unwrap();
    let e = DepIndex::load(&dir).unwrap_err();
    let m = e.to_string();
    fs::remove_dir_all(&dir).unwrap();
    show("modules.dep not UTF-8", &m);
    assert_eq!((e.kind, e.line), (K::NotUtf8, 2));
    assert!(m.contains("modules.dep:2: ") && m.contains("UTF-8"), "{m}");
}
