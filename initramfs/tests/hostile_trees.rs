//! Hostile module trees against the `kmodinit-mkimage` binary (issue 8): a
//! module file that is a symlink to `/etc/shadow`, a `modules.dep` path with
//! `..` or an absolute path, and a dependency cycle. Each build fails, names
//! the offending path or cycle, and writes no image. Run with `--nocapture`
//! to see the messages.
#![allow(clippy::unwrap_used)] // tests may unwrap (BRIEF)

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kmodinit-mkimage");
const RELEASE: &str = "6.1.0-hostile";

struct Tree {
    tmp: tempfile::TempDir,
}

impl Tree {
    /// `a.ko` and `b.ko` (empty files) with the given `modules.dep`, a
    /// manifest whose one chain loads `a`, and a fake `/init`.
    fn new(dep: &str) -> Tree {
        let t = Tree {
            tmp: tempfile::tempdir().unwrap(),
        };
        let d = t.moddir();
        fs::create_dir_all(d.join("kernel")).unwrap();
        fs::write(d.join("kernel/a.ko"), b"").unwrap();
        fs::write(d.join("kernel/b.ko"), b"").unwrap();
        fs::write(d.join("modules.dep"), dep).unwrap();
        fs::write(t.path("init"), b"#!/bin/sh\n").unwrap();
        fs::write(
            t.path("manifest.json"),
            r#"{"version": 1, "chains": [{"name": "boot", "modules": ["a"], "required": true}]}"#,
        )
        .unwrap();
        t
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn moddir(&self) -> PathBuf {
        self.path("root/lib/modules").join(RELEASE)
    }

    /// Runs the builder; returns its stderr, asserting that it failed and
    /// wrote nothing.
    fn build_fails(&self) -> String {
        let out_path = self.path("out.img");
        let out = Command::new(BIN)
            .args(["--manifest", &disp(&self.path("manifest.json"))])
            .args(["--kernel-release", RELEASE])
            .args(["--modules-root", &disp(&self.path("root"))])
            .args(["--init", &disp(&self.path("init"))])
            .args(["--output", &disp(&out_path), "--compress", "none"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "built an image from a hostile tree");
        assert!(!out_path.exists(), "an image was written: {stderr}");
        stderr
    }
}

fn disp(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_module_that_is_a_symlink_to_etc_shadow_is_refused() {
    let t = Tree::new("kernel/a.ko: kernel/evil.ko\nkernel/evil.ko:\n");
    symlink("/etc/shadow", t.moddir().join("kernel/evil.ko")).unwrap();
    let e = t.build_fails();
    eprintln!("[symlink to /etc/shadow] {e}");
    assert!(e.contains("kernel/evil.ko"), "{e}");
    assert!(e.contains("outside the module directory"), "{e}");
}

#[test]
fn a_symlinked_directory_leading_out_of_the_tree_is_refused() {
    let t = Tree::new("kernel/a.ko: kernel/etc/shadow.ko\nkernel/etc/shadow.ko:\n");
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("shadow.ko"), b"secret").unwrap();
    symlink(outside.path(), t.moddir().join("kernel/etc")).unwrap();
    let e = t.build_fails();
    eprintln!("[symlinked directory] {e}");
    assert!(
        e.contains("kernel/etc/shadow.ko") && e.contains("outside"),
        "{e}"
    );
}

#[test]
fn dot_dot_and_absolute_paths_in_modules_dep_are_refused() {
    for (dep, bad) in [
        (
            "kernel/a.ko: kernel/../../../../etc/shadow.ko\n",
            "kernel/../../../../etc/shadow.ko",
        ),
        ("kernel/a.ko: /etc/shadow.ko\n", "/etc/shadow.ko"),
    ] {
        let t = Tree::new(dep);
        let e = t.build_fails();
        eprintln!("[modules.dep {bad}] {e}");
        assert!(e.contains(bad), "{e}");
        assert!(e.contains("modules.dep"), "{e}");
    }
}

#[test]
fn a_dependency_cycle_is_refused_naming_it() {
    let t = Tree::new("kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n");
    let e = t.build_fails();
    eprintln!("[cycle] {e}");
    assert!(e.contains("dependency cycle"), "{e}");
    assert!(e.contains("a needs b") && e.contains("b needs a"), "{e}");
}
