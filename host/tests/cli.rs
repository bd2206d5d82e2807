//! The `kmodinit` host tool as a user runs it: every subcommand's `--help`,
//! `build` giving the bytes of the image builder's own entry point, and
//! `plan` strict against `plan --at-boot` on a fake module tree.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::Parser;

const BIN: &str = env!("CARGO_BIN_EXE_kmodinit");

fn kmodinit(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A fake tree: `a` needs `b`; a manifest whose chain names `a` and a
/// module the tree lacks; a `proc` with `b` loaded and a command line.
struct Tree {
    tmp: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let t = Tree { tmp };
        let d = t.modules_dir();
        fs::create_dir_all(d.join("kernel")).unwrap();
        fs::write(d.join("kernel/a.ko"), b"module a").unwrap();
        fs::write(d.join("kernel/b.ko"), b"module b").unwrap();
        fs::write(
            d.join("modules.dep"),
            "kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n",
        )
        .unwrap();
        for f in ["modules.alias", "modules.softdep", "modules.builtin"] {
            fs::write(d.join(f), "").unwrap();
        }
        fs::create_dir_all(t.path("proc")).unwrap();
        fs::write(t.path("proc/modules"), "b 16384 1 a, Live 0x0\n").unwrap();
        fs::write(t.path("proc/cmdline"), "quiet a.x=1\n").unwrap();
        fs::write(t.path("init"), b"#!/bin/sh\n").unwrap();
        t
    }
    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
    fn modules_dir(&self) -> PathBuf {
        self.path("lib/modules/6.1.0-fake")
    }
    fn manifest(&self, json: &str) -> PathBuf {
        let p = self.path("manifest.json");
        fs::write(&p, json).unwrap();
        p
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_subcommand_has_its_help() {
    let top = stdout(&kmodinit(&["--help"], &[]));
    for sub in ["build", "plan", "report", "manifest-from-host"] {
        assert!(top.contains(sub), "{sub} missing from:\n{top}");
    }
    for (sub, flags) in [
        (
            "build",
            &["--manifest", "--kernel-release", "--output", "--coldplug"][..],
        ),
        (
            "plan",
            &["--manifest", "--modules-dir", "--cmdline", "--at-boot"],
        ),
        ("report", &["--svg", "REPORT.json"]),
        (
            "manifest-from-host",
            &["--output", "--modules-root", "--sysroot"],
        ),
    ] {
        let help = stdout(&kmodinit(&[sub, "--help"], &[]));
        for f in flags {
            assert!(help.contains(f), "kmodinit {sub} --help lacks {f}:\n{help}");
        }
    }
    let out = kmodinit(&["frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"));
}

/// `kmodinit-mkimage`'s `main` is its parser around
/// `kmodinit_mkimage::cli::run`; the same flags through `kmodinit build`
/// give the same bytes.
#[derive(Debug, Parser)]
struct Mkimage {
    #[command(flatten)]
    args: kmodinit_mkimage::cli::BuildArgs,
}

#[test]
fn build_writes_the_image_builders_bytes() {
    let t = Tree::new();
    let m = t.manifest(r#"{"version":1,"chains":[{"name":"s","modules":["a"]}]}"#);
    let args = |out: &Path| -> Vec<String> {
        [
            "--manifest",
            s(&m),
            "--kernel-release",
            "6.1.0-fake",
            "--modules-root",
            s(t.tmp.path()),
            "--init",
            s(&t.path("init")),
            "--output",
            s(out),
        ]
        .map(String::from)
        .to_vec()
    };
    let by_tool = t.path("tool.img");
    let mut argv = vec!["build".to_owned()];
    argv.extend(args(&by_tool));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let summary = stdout(&kmodinit(&argv, &[("SOURCE_DATE_EPOCH", "1")]));
    assert!(summary.contains("modules:      2 files"), "{summary}");

    let by_lib = t.path("lib.img");
    let mut argv = vec!["kmodinit-mkimage".to_owned()];
    argv.extend(args(&by_lib));
    let parsed = Mkimage::try_parse_from(argv).unwrap();
    std::env::set_var("SOURCE_DATE_EPOCH", "1");
    kmodinit_mkimage::cli::run(parsed.args).unwrap();
    assert_eq!(fs::read(&by_tool).unwrap(), fs::read(&by_lib).unwrap());
}

#[test]
fn plan_is_strict_and_at_boot_plans_as_the_boot_does() {
    let t = Tree::new();
    let m = t.manifest(r#"{"version":1,"chains":[{"name":"s","modules":["a","nosuch"]}]}"#);
    let dir = t.modules_dir();
    // Strict: the module the tree lacks stops the plan, naming it.
    let out = kmodinit(
        &["plan", "--manifest", s(&m), "--modules-dir", s(&dir)],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nosuch") && err.contains("does not plan"),
        "{err}"
    );

    // At boot: it fails alone, `b` is already loaded per /proc/modules,
    // and /proc/cmdline's a.x=1 reaches `a`.
    let proc = t.path("proc");
    let text = stdout(&kmodinit(
        &[
            "plan",
            "--manifest",
            s(&m),
            "--modules-dir",
            s(&dir),
            "--at-boot",
            "--proc",
            s(&proc),
        ],
        &[],
    ));
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{text}"))
            .to_owned()
    };
    assert!(line("b").contains("already loaded"), "{text}");
    assert!(line("a").contains("params: x=1"), "{text}");
    assert!(line("nosuch").contains("cannot be planned"), "{text}");

    // A given --cmdline replaces /proc/cmdline.
    let text = stdout(&kmodinit(
        &[
            "plan",
            "--manifest",
            s(&m),
            "--modules-dir",
            s(&dir),
            "--at-boot",
            "--proc",
            s(&proc),
            "--cmdline",
            "a.x=2",
        ],
        &[],
    ));
    assert!(text.contains("params: x=2"), "{text}");
}

/// An image's module directory holds only the compiled index: `plan` reads
/// it and plans as it does from the tree's depmod text.
#[test]
fn plan_reads_an_images_compiled_index() {
    let t = Tree::new();
    let m = t.manifest(r#"{"version":1,"chains":[{"name":"s","modules":["a"]}]}"#);
    let img = t.path("image.img");
    stdout(&kmodinit(
        &[
            "build",
            "--manifest",
            s(&m),
            "--kernel-release",
            "6.1.0-fake",
            "--modules-root",
            s(t.tmp.path()),
            "--init",
            s(&t.path("init")),
            "--output",
            s(&img),
            "--compress",
            "none",
        ],
        &[],
    ));
    let unpacked = t.path("unpacked");
    fs::create_dir_all(&unpacked).unwrap();
    for member in kmodinit_mkimage::cpio::read(&fs::read(&img).unwrap()).unwrap() {
        let path = unpacked.join(&member.header.name);
        if !member.data.is_empty() {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &member.data).unwrap();
        }
    }
    let image_dir = unpacked.join("lib/modules/6.1.0-fake");
    assert!(image_dir.join("kmodinit.index").is_file());
    assert!(!image_dir.join("modules.dep").exists());
    let plan_of = |dir: &Path| {
        stdout(&kmodinit(
            &["plan", "--manifest", s(&m), "--modules-dir", s(dir)],
            &[],
        ))
    };
    assert_eq!(plan_of(&image_dir), plan_of(&t.modules_dir()));
}
