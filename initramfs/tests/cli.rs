//! The `kmodinit-mkimage` binary end to end, against a fake module tree
//! (empty `.ko` files, hand-written depmod files) and the host's Debian
//! module tree (read only; the newest `/lib/modules/*` with a `modules.dep`,
//! a failure under `CI=true` and a printed skip otherwise when there is none).
#![allow(clippy::unwrap_used)] // tests may unwrap (BRIEF)

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kmodinit_mkimage::compress::Compress;
use kmodinit_mkimage::cpio::{self, Member};

#[path = "../../modules-manifest/tests/support/prerequisites.rs"]
mod prerequisites;

const BIN: &str = env!("CARGO_BIN_EXE_kmodinit-mkimage");
const FAKE_RELEASE: &str = "6.1.0-fake";

/// A temp dir holding a fake module tree at `root/lib/modules/FAKE_RELEASE`,
/// a fake `/init` and a manifest file.
struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    /// Modules: `a` depends on `b`; `a` has a `pre:` softdep on the alias
    /// `crypto-crc`, which only `crc_x` provides; `c` and `unused` are not
    /// needed by the manifest (chain `storage`: `a`).
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let f = Fixture { tmp };
        let d = f.moddir();
        fs::create_dir_all(d.join("kernel/drivers")).unwrap();
        fs::create_dir_all(d.join("kernel/crypto")).unwrap();
        for m in [
            "drivers/a.ko",
            "drivers/b.ko",
            "drivers/c.ko",
            "drivers/unused.ko",
        ] {
            fs::write(d.join("kernel").join(m), b"").unwrap();
        }
        fs::write(d.join("kernel/crypto/crc_x.ko"), b"crc module bytes").unwrap();
        fs::write(
            d.join("modules.dep"),
            "kernel/drivers/a.ko: kernel/drivers/b.ko\n\
             kernel/drivers/b.ko:\n\
             kernel/drivers/c.ko: kernel/drivers/b.ko\n\
             kernel/drivers/unused.ko:\n\
             kernel/crypto/crc_x.ko:\n",
        )
        .unwrap();
        fs::write(
            d.join("modules.softdep"),
            "# Soft dependencies extracted from modules themselves.\n\
             softdep a pre: crypto-crc\n\
             softdep c pre: unused\n",
        )
        .unwrap();
        fs::write(
            d.join("modules.alias"),
            "# Aliases extracted from modules themselves.\n\
             alias crypto-crc crc_x\n\
             alias pci:v00001AF4d00001001sv*sd*bc*sc*i* a\n\
             alias fs-cfs c\n",
        )
        .unwrap();
        fs::write(d.join("modules.builtin"), "kernel/lib/crc16.ko\n").unwrap();
        fs::write(f.init(), b"#!/bin/sh\necho fake init\n").unwrap();
        f.write_manifest(r#"{"version": 1, "chains": [{"name": "storage", "modules": ["a"], "required": true}]}"#);
        f
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }
    fn moddir(&self) -> PathBuf {
        self.root().join("lib/modules").join(FAKE_RELEASE)
    }
    fn init(&self) -> PathBuf {
        self.tmp.path().join("init-bin")
    }
    fn manifest(&self) -> PathBuf {
        self.tmp.path().join("manifest.json")
    }
    fn out(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn write_manifest(&self, json: &str) {
        fs::write(self.manifest(), json).unwrap();
    }

    /// The standard arguments plus `extra`.
    fn args(&self, output: &Path, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--manifest".into(),
            self.manifest().display().to_string(),
            "--kernel-release".into(),
            FAKE_RELEASE.into(),
            "--modules-root".into(),
            self.root().display().to_string(),
            "--init".into(),
            self.init().display().to_string(),
            "--output".into(),
            output.display().to_string(),
            // These tests read the pruned depmod text; the compiled index
            // of the default image: `the_image_holds_the_compiled_index…`.
            "--depmod-text".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    fn build(&self, output: &Path, extra: &[&str]) -> Output {
        run(&self.args(output, extra), &[])
    }
}

fn run(args: &[String], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KMODINIT_INIT");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "kmodinit-mkimage failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got success:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Decompresses by magic number, then parses the cpio with our reader
/// (after the early microcode archive, which `--microcode auto` prepends
/// when a test builds for the running kernel on a machine with microcode).
fn members(image: &Path) -> BTreeMap<String, Member> {
    let raw = fs::read(image).unwrap();
    let early = kmodinit_mkimage::microcode::early_archive_len(&raw)
        .filter(|&n| n < raw.len())
        .unwrap_or(0);
    let raw = &raw[early..];
    let cpio_bytes = Compress::detect(raw).decompress(raw).unwrap();
    cpio::read(&cpio_bytes)
        .unwrap()
        .into_iter()
        .map(|m| (m.header.name.clone(), m))
        .collect()
}

fn module_files(m: &BTreeMap<String, Member>, release: &str) -> BTreeSet<String> {
    let prefix = format!("lib/modules/{release}/");
    m.keys()
        .filter_map(|k| k.strip_prefix(&prefix))
        .filter(|k| k.contains(".ko"))
        .map(str::to_owned)
        .collect()
}

fn text(m: &BTreeMap<String, Member>, name: &str) -> String {
    String::from_utf8(m[name].data.clone()).unwrap()
}

// ---------------------------------------------------------------- CLI surface

#[test]
fn help_documents_every_option() {
    let out = run(&["--help".into()], &[]);
    let help = ok(&out);
    for opt in [
        "--manifest <FILE>",
        "--kernel-release <RELEASE>",
        "--output <FILE>",
        "--modules-root <DIR>",
        "--init <FILE>",
        "--add <SRC:DST>",
        "--compress <FORMAT>",
        "--module-compression <MODE>",
        "--modprobe-d <DIR>",
        "--no-modprobe-d",
        "--allow-unknown-params",
        "--coldplug <SOURCE>",
        "--coldplug-modules <SUBTREE>",
        "--extra-modules <NAMES>",
        "SOURCE_DATE_EPOCH",
        "KMODINIT_INIT",
        "make init",
    ] {
        assert!(help.contains(opt), "--help lacks {opt:?}:\n{help}");
    }
    for format in ["zstd", "xz", "gzip", "none"] {
        assert!(help.contains(format), "--help lacks {format}");
    }
}

#[test]
fn missing_default_init_says_run_make_init() {
    // A copy of the binary in a fresh directory: its <workspace>/build/init
    // cannot exist, whatever `make init` did in this checkout.
    let dir = tempfile::tempdir().unwrap();
    let exe_dir = dir.path().join("target/release");
    fs::create_dir_all(&exe_dir).unwrap();
    let exe = exe_dir.join("kmodinit-mkimage");
    fs::copy(BIN, &exe).unwrap();
    let f = Fixture::new();
    let out_path = f.out("img");
    let mut args = f.args(&out_path, &[]);
    let i = args.iter().position(|a| a == "--init").unwrap();
    args.drain(i..i + 2);
    let out = Command::new(&exe)
        .args(&args)
        .env_remove("KMODINIT_INIT")
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(err.contains("run `make init` first"), "{err}");
    assert!(
        err.contains(&dir.path().join("build/init").display().to_string()),
        "{err}"
    );
    assert!(!out_path.exists());

    // $KMODINIT_INIT supplies the default instead; and build/init next to
    // target/ is found on its own.
    let out = Command::new(&exe)
        .args(&args)
        .env("KMODINIT_INIT", f.init())
        .output()
        .unwrap();
    ok(&out);
    fs::remove_file(&out_path).unwrap();
    fs::create_dir_all(dir.path().join("build")).unwrap();
    fs::write(dir.path().join("build/init"), b"workspace init").unwrap();
    let out = Command::new(&exe)
        .args(&args)
        .env_remove("KMODINIT_INIT")
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(members(&out_path)["init"].data, b"workspace init");
}

#[test]
fn bad_add_and_epoch_arguments_are_refused_before_anything_is_written() {
    let f = Fixture::new();
    let out_path = f.out("img");
    for (extra, needle) in [
        (vec!["--add", "/bin/sh:/bin/../etc/x"], "\"..\""),
        (vec!["--add", "/bin/sh:bin/sh"], "not absolute"),
        (vec!["--add", "nocolon"], "SRC:DST"),
        (vec!["--compress", "lz4"], "lz4"),
    ] {
        let err = failed(&f.build(&out_path, &extra));
        assert!(err.contains(needle), "{extra:?}: {err}");
        assert!(!out_path.exists());
    }
    let err = failed(&run(
        &f.args(&out_path, &[]),
        &[("SOURCE_DATE_EPOCH", "yesterday")],
    ));
    assert!(err.contains("SOURCE_DATE_EPOCH"), "{err}");
    assert!(!out_path.exists());
}

// ------------------------------------------------------- contents and pruning

#[test]
fn fake_tree_image_holds_exactly_what_the_plan_needs() {
    let f = Fixture::new();
    let img = f.out("img.cpio");
    let stdout = ok(&f.build(&img, &["--compress", "none"]));
    let m = members(&img);

    let mods = module_files(&m, FAKE_RELEASE);
    let want: BTreeSet<String> = [
        "kernel/drivers/a.ko",
        "kernel/drivers/b.ko",
        "kernel/crypto/crc_x.ko",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(mods, want);
    let md = format!("lib/modules/{FAKE_RELEASE}");
    assert_eq!(
        text(&m, &format!("{md}/modules.dep")),
        "kernel/drivers/a.ko: kernel/drivers/b.ko\nkernel/drivers/b.ko:\nkernel/crypto/crc_x.ko:\n"
    );
    assert_eq!(
        text(&m, &format!("{md}/modules.softdep")),
        "softdep a pre: crypto-crc\n"
    );
    assert_eq!(
        text(&m, &format!("{md}/modules.alias")),
        "alias crypto-crc crc_x\nalias pci:v00001AF4d00001001sv*sd*bc*sc*i* a\n"
    );
    assert_eq!(
        text(&m, &format!("{md}/modules.builtin")),
        "kernel/lib/crc16.ko\n"
    );
    assert_eq!(
        m[&format!("{md}/kernel/crypto/crc_x.ko")].data,
        b"crc module bytes"
    );

    // Fixed members.
    let init = &m["init"];
    assert_eq!(init.header.mode, cpio::S_IFREG | 0o755);
    assert_eq!(init.data, fs::read(f.init()).unwrap());
    assert_eq!(
        m["etc/kmodinit/manifest.json"].data,
        fs::read(f.manifest()).unwrap()
    );
    let console = &m["dev/console"].header;
    assert_eq!(
        (console.mode, console.rdev_major, console.rdev_minor),
        (cpio::S_IFCHR | 0o600, 5, 1)
    );
    let null = &m["dev/null"].header;
    assert_eq!(
        (null.mode, null.rdev_major, null.rdev_minor),
        (cpio::S_IFCHR | 0o666, 1, 3)
    );
    for d in [
        "dev",
        "proc",
        "sys",
        "run",
        "root",
        "etc",
        "etc/kmodinit",
        "lib",
        "lib/modules",
    ] {
        assert_eq!(m[d].header.mode & cpio::S_IFMT, cpio::S_IFDIR, "{d}");
    }
    // Every member's parent directory is in the archive, before it.
    let names: Vec<&String> = m.keys().collect();
    for n in &names {
        if let Some((parent, _)) = n.rsplit_once('/') {
            assert!(m.contains_key(parent), "{n} has no parent entry");
        }
    }
    for mem in m.values() {
        assert_eq!(
            (mem.header.uid, mem.header.gid, mem.header.mtime),
            (0, 0, 0)
        );
    }

    assert!(stdout.contains("modules:      3 files"), "{stdout}");
    assert!(stdout.contains("largest files"), "{stdout}");
    assert!(stdout.contains("uncompressed"), "{stdout}");
}

#[test]
fn coldplug_modules_adds_a_subtree_with_what_it_needs() {
    let f = Fixture::new();
    let img = f.out("img.cpio");
    let stdout = ok(&f.build(
        &img,
        &[
            "--compress",
            "none",
            "--coldplug-modules",
            "kernel/drivers/",
        ],
    ));
    let m = members(&img);
    let mods = module_files(&m, FAKE_RELEASE);
    for want in [
        "kernel/drivers/a.ko",
        "kernel/drivers/b.ko",
        "kernel/drivers/c.ko",
        "kernel/drivers/unused.ko",
        "kernel/crypto/crc_x.ko",
    ] {
        assert!(mods.contains(want), "{want} not in {mods:?}");
    }
    let md = format!("lib/modules/{FAKE_RELEASE}");
    // The pruned index covers what the image holds: coldplug can match c.
    assert!(text(&m, &format!("{md}/modules.alias")).contains("alias fs-cfs c\n"));
    assert!(text(&m, &format!("{md}/modules.dep"))
        .contains("kernel/drivers/c.ko: kernel/drivers/b.ko\n"));
    assert!(
        stdout.contains("coldplug: 4 module(s) under kernel/drivers"),
        "{stdout}"
    );
    // The manifest's plan is unchanged: c is not a chain module.
    assert!(!text(&m, "etc/kmodinit/manifest.json").contains("\"c\""));

    // One file, not a directory: c, with its softdep `unused`.
    let img = f.out("one.cpio");
    ok(&f.build(
        &img,
        &[
            "--compress",
            "none",
            "--coldplug-modules",
            "kernel/drivers/c.ko",
        ],
    ));
    let mods = module_files(&members(&img), FAKE_RELEASE);
    assert!(
        mods.contains("kernel/drivers/c.ko") && mods.contains("kernel/drivers/unused.ko"),
        "{mods:?}"
    );
}

#[test]
fn coldplug_modules_outside_the_tree_are_refused_and_nothing_is_written() {
    let f = Fixture::new();
    let img = f.out("img.cpio");
    for (arg, says) in [
        ("../../etc", "\"..\""),
        ("/lib/modules", "absolute"),
        ("kernel/sound", "no module of the tree is under it"),
    ] {
        let err = failed(&f.build(&img, &["--coldplug-modules", arg]));
        assert!(err.contains(arg) && err.contains(says), "{arg}: {err}");
        assert!(!img.exists());
    }
    let err = failed(&f.build(&img, &["--coldplug", "everything"]));
    assert!(err.contains("--coldplug"), "{err}");
}

#[test]
fn coldplug_host_reads_the_machines_devices() {
    // Reads (never writes) the host's /sys: the note says what it found,
    // whatever the machine.
    let f = Fixture::new();
    let img = f.out("img.cpio");
    let stdout = ok(&f.build(&img, &["--compress", "none", "--coldplug", "host"]));
    assert!(stdout.contains("coldplug host: "), "{stdout}");
    assert!(stdout.contains("/sys/devices"), "{stdout}");
}

#[test]
fn extra_modules_go_into_the_image_but_not_into_its_manifest() {
    let f = Fixture::new();
    let img = f.out("extra.cpio");
    // `c` (with its dependency `b`), asked for by alias, and `unused` by
    // name; no chain of the image's manifest names them.
    ok(&f.build(
        &img,
        &["--compress", "none", "--extra-modules", "fs-cfs,unused"],
    ));
    let m = members(&img);
    let mods = module_files(&m, FAKE_RELEASE);
    for want in [
        "kernel/drivers/c.ko",
        "kernel/drivers/b.ko",
        "kernel/drivers/unused.ko",
        "kernel/drivers/a.ko",
    ] {
        assert!(mods.contains(want), "{want} missing: {mods:?}");
    }
    let md = format!("lib/modules/{FAKE_RELEASE}");
    assert!(text(&m, &format!("{md}/modules.alias")).contains("alias fs-cfs c\n"));
    assert!(text(&m, &format!("{md}/modules.dep"))
        .contains("kernel/drivers/c.ko: kernel/drivers/b.ko\n"));
    assert_eq!(
        m["etc/kmodinit/manifest.json"].data,
        fs::read(f.manifest()).unwrap(),
        "the manifest is the one given: the extra modules load only on request"
    );
    // Not a module or alias of the tree: refused, nothing written.
    let bad = f.out("bad.cpio");
    let e = failed(&f.build(&bad, &["--extra-modules", "no-such-thing"]));
    assert!(e.contains("--extra-modules \"no-such-thing\""), "{e}");
    assert!(!bad.exists());
}

#[test]
fn every_compression_decodes_to_the_same_archive() {
    let f = Fixture::new();
    let mut archives = Vec::new();
    for c in ["none", "gzip", "zstd", "xz"] {
        let img = f.out(&format!("img.{c}"));
        let stdout = ok(&f.build(&img, &["--compress", c]));
        assert!(stdout.contains(&format!("{c}:")), "{stdout}");
        archives.push(members(&img));
    }
    for a in &archives[1..] {
        assert_eq!(a, &archives[0]);
    }
}

#[test]
fn default_compression_is_xz() {
    let f = Fixture::new();
    let img = f.out("img");
    ok(&f.build(&img, &[]));
    assert!(fs::read(&img).unwrap().starts_with(b"\xFD7zXZ\0"));
}

// ------------------------------------------------------------ reproducibility

#[test]
fn builds_are_reproducible_and_follow_source_date_epoch() {
    let f = Fixture::new();
    for c in ["none", "gzip", "zstd", "xz"] {
        let build = |name: &str, epoch: Option<&str>| -> Vec<u8> {
            let img = f.out(name);
            let env: Vec<(&str, &str)> = epoch
                .map(|e| ("SOURCE_DATE_EPOCH", e))
                .into_iter()
                .collect();
            ok(&run(&f.args(&img, &["--compress", c]), &env));
            fs::read(img).unwrap()
        };
        let a = build("a", None);
        // Touch every input in between: host mtimes must not leak in.
        for p in [
            f.init(),
            f.manifest(),
            f.moddir().join("kernel/drivers/a.ko"),
        ] {
            let data = fs::read(&p).unwrap();
            fs::write(&p, data).unwrap();
        }
        let b = build("b", None);
        assert_eq!(a, b, "{c}: two builds differ");
        let e1 = build("e1", Some("1700000000"));
        let e2 = build("e2", Some("1700000000"));
        let e3 = build("e3", Some("1700000001"));
        assert_eq!(e1, e2, "{c}: same SOURCE_DATE_EPOCH, different bytes");
        assert_ne!(e1, e3, "{c}: SOURCE_DATE_EPOCH ignored");
        assert_ne!(a, e1, "{c}: SOURCE_DATE_EPOCH ignored");
    }
    let m = members(&f.out("e1"));
    assert!(m.values().all(|mem| mem.header.mtime == 1_700_000_000));
}

#[test]
fn inode_numbers_are_sequential_in_sorted_order() {
    let f = Fixture::new();
    let img = f.out("img");
    ok(&f.build(&img, &["--compress", "none"]));
    let bytes = fs::read(&img).unwrap();
    let list = cpio::read(&bytes).unwrap();
    let names: Vec<&str> = list.iter().map(|m| m.header.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for (i, mem) in list.iter().enumerate() {
        assert_eq!(mem.header.ino as usize, i + 1);
    }
}

// -------------------------------------------------------------------- --add

#[test]
fn add_copies_modes_directories_and_symlinks() {
    let f = Fixture::new();
    let src = f.out("extra");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::create_dir_all(src.join("etc/secret")).unwrap();
    fs::write(src.join("bin/tool"), b"tool").unwrap();
    fs::set_permissions(src.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(src.join("etc/secret/key"), b"k").unwrap();
    fs::set_permissions(
        src.join("etc/secret/key"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::set_permissions(src.join("etc/secret"), fs::Permissions::from_mode(0o700)).unwrap();
    symlink("tool", src.join("bin/sh")).unwrap();
    symlink("/does/not/exist", src.join("bin/dangling")).unwrap();
    let single = f.out("single");
    fs::write(&single, b"single file").unwrap();
    fs::set_permissions(&single, fs::Permissions::from_mode(0o640)).unwrap();
    // A symlink given as SRC is followed.
    let link_to_single = f.out("link-to-single");
    symlink(&single, &link_to_single).unwrap();

    let img = f.out("img");
    let a1 = format!("{}:/opt", src.display());
    let a2 = format!("{}:/sbin/init", single.display());
    let a3 = format!("{}:/usr/x", link_to_single.display());
    ok(&f.build(
        &img,
        &[
            "--compress",
            "none",
            "--add",
            &a1,
            "--add",
            &a2,
            "--add",
            &a3,
        ],
    ));
    let m = members(&img);

    assert_eq!(m["opt/bin/tool"].header.mode, cpio::S_IFREG | 0o4755);
    assert_eq!(m["opt/bin/tool"].data, b"tool");
    assert_eq!(m["opt/etc/secret"].header.mode, cpio::S_IFDIR | 0o700);
    assert_eq!(m["opt/etc/secret/key"].header.mode, cpio::S_IFREG | 0o600);
    assert_eq!(m["opt/bin/sh"].header.mode & cpio::S_IFMT, cpio::S_IFLNK);
    assert_eq!(m["opt/bin/sh"].data, b"tool");
    assert_eq!(m["opt/bin/dangling"].data, b"/does/not/exist");
    assert_eq!(m["sbin/init"].header.mode, cpio::S_IFREG | 0o640);
    assert_eq!(m["sbin"].header.mode, cpio::S_IFDIR | 0o755);
    assert_eq!(m["usr/x"].header.mode, cpio::S_IFREG | 0o640);
    assert_eq!(m["usr/x"].data, b"single file");
    assert!(m
        .values()
        .all(|mem| mem.header.uid == 0 && mem.header.gid == 0));
}

#[test]
fn add_a_directory_at_the_root_overlays_it() {
    let f = Fixture::new();
    let overlay = f.out("overlay");
    fs::create_dir_all(overlay.join("sbin")).unwrap();
    fs::create_dir_all(overlay.join("etc")).unwrap();
    fs::write(overlay.join("sbin/init"), b"real init").unwrap();
    fs::set_permissions(overlay.join("sbin/init"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(overlay.join("etc/hostname"), b"vm\n").unwrap();
    let img = f.out("img");
    let add = format!("{}:/", overlay.display());
    ok(&f.build(&img, &["--compress", "none", "--add", &add]));
    let m = members(&img);
    assert_eq!(m["sbin/init"].header.mode, cpio::S_IFREG | 0o750);
    assert_eq!(m["etc/hostname"].data, b"vm\n");
    // Merged with the generated /etc/kmodinit.
    assert!(m.contains_key("etc/kmodinit/manifest.json"));

    // A file cannot be laid over the root.
    let file = format!("{}:/", f.init().display());
    let err = failed(&f.build(&f.out("img2"), &["--add", &file]));
    assert!(err.contains("only a directory"), "{err}");
}

#[test]
fn add_refuses_conflicts_and_missing_sources() {
    let f = Fixture::new();
    let img = f.out("img");
    let other = f.out("other");
    fs::write(&other, b"x").unwrap();
    let over_init = format!("{}:/init", other.display());
    let err = failed(&f.build(&img, &["--add", &over_init]));
    assert!(err.contains("/init is added twice"), "{err}");
    let under_file = format!("{}:/init/x", other.display());
    let err = failed(&f.build(&img, &["--add", &under_file]));
    assert!(err.contains("/init"), "{err}");
    let missing = format!("{}:/x", f.out("missing").display());
    let err = failed(&f.build(&img, &["--add", &missing]));
    assert!(err.contains("missing"), "{err}");
    assert!(!img.exists());
}

// ------------------------------------------------------ compressed modules

/// The fixture with its modules compressed like a distribution's tree: `a`
/// and `b` as `.ko.xz`, `crc_x` as `.ko.zst`, `c` as `.ko.gz` (made with
/// the real tools' formats through the crates mkimage uses), modules.dep
/// naming the compressed files. Returns the original module bytes by name.
fn compress_fixture_modules(f: &Fixture) -> BTreeMap<&'static str, Vec<u8>> {
    use std::io::Write;
    let d = f.moddir();
    let mut plain = BTreeMap::new();
    for (rel, ext) in [
        ("kernel/drivers/a.ko", "xz"),
        ("kernel/drivers/b.ko", "xz"),
        ("kernel/crypto/crc_x.ko", "zst"),
        ("kernel/drivers/c.ko", "gz"),
    ] {
        // Recognisable contents, with the tail a signed module has.
        let bytes = format!("{rel} code\0~Module signature appended~\n").into_bytes();
        let packed = match ext {
            "xz" => {
                let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
                e.write_all(&bytes).unwrap();
                e.finish().unwrap()
            }
            "zst" => zstd::encode_all(bytes.as_slice(), 3).unwrap(),
            _ => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(&bytes).unwrap();
                e.finish().unwrap()
            }
        };
        fs::remove_file(d.join(rel)).unwrap();
        fs::write(d.join(format!("{rel}.{ext}")), packed).unwrap();
        plain.insert(rel, bytes);
    }
    fs::write(
        d.join("modules.dep"),
        "kernel/drivers/a.ko.xz: kernel/drivers/b.ko.xz\n\
         kernel/drivers/b.ko.xz:\n\
         kernel/drivers/c.ko.gz: kernel/drivers/b.ko.xz\n\
         kernel/drivers/unused.ko:\n\
         kernel/crypto/crc_x.ko.zst:\n",
    )
    .unwrap();
    plain
}

#[test]
fn compressed_modules_are_stored_decompressed_by_default() {
    let f = Fixture::new();
    let plain = compress_fixture_modules(&f);
    f.write_manifest(
        r#"{"version": 1, "chains": [{"name": "s", "modules": ["a", "c"], "required": true}]}"#,
    );
    let img = f.out("img");
    let stdout = ok(&f.build(&img, &[]));
    assert!(stdout.contains("decompressed: 4 module files"), "{stdout}");
    let m = members(&img);
    let md = format!("lib/modules/{FAKE_RELEASE}");
    // `unused` (c's softdep) is a plain .ko: copied as is.
    let mut want: BTreeSet<String> = plain.keys().map(|k| k.to_string()).collect();
    want.insert("kernel/drivers/unused.ko".into());
    assert_eq!(module_files(&m, FAKE_RELEASE), want);
    // Byte for byte the uncompressed module: an appended signature stays.
    for (rel, bytes) in &plain {
        assert_eq!(&m[&format!("{md}/{rel}")].data, bytes, "{rel}");
    }
    assert_eq!(
        text(&m, &format!("{md}/modules.dep")),
        "kernel/drivers/a.ko: kernel/drivers/b.ko\n\
         kernel/drivers/b.ko:\n\
         kernel/drivers/c.ko: kernel/drivers/b.ko\n\
         kernel/drivers/unused.ko:\n\
         kernel/crypto/crc_x.ko:\n"
    );
}

#[test]
fn module_compression_keep_stores_the_files_as_they_are() {
    let f = Fixture::new();
    compress_fixture_modules(&f);
    let img = f.out("img");
    let stdout = ok(&f.build(&img, &["--module-compression", "keep"]));
    assert!(!stdout.contains("decompressed:"), "{stdout}");
    let m = members(&img);
    let md = format!("lib/modules/{FAKE_RELEASE}");
    assert_eq!(
        module_files(&m, FAKE_RELEASE),
        [
            "kernel/crypto/crc_x.ko.zst",
            "kernel/drivers/a.ko.xz",
            "kernel/drivers/b.ko.xz"
        ]
        .map(String::from)
        .into()
    );
    let host = fs::read(f.moddir().join("kernel/drivers/a.ko.xz")).unwrap();
    assert_eq!(m[&format!("{md}/kernel/drivers/a.ko.xz")].data, host);
    assert_eq!(
        text(&m, &format!("{md}/modules.dep")),
        "kernel/drivers/a.ko.xz: kernel/drivers/b.ko.xz\n\
         kernel/drivers/b.ko.xz:\n\
         kernel/crypto/crc_x.ko.zst:\n"
    );
}

#[test]
fn decompressed_images_are_reproducible_in_every_compression() {
    let f = Fixture::new();
    compress_fixture_modules(&f);
    for c in ["none", "gzip", "zstd", "xz"] {
        let a = f.out(&format!("a.{c}"));
        let b = f.out(&format!("b.{c}"));
        ok(&f.build(&a, &["--compress", c]));
        ok(&f.build(&b, &["--compress", c]));
        assert_eq!(fs::read(a).unwrap(), fs::read(b).unwrap(), "{c}");
    }
}

#[test]
fn a_corrupt_compressed_module_is_refused_naming_it() {
    let f = Fixture::new();
    compress_fixture_modules(&f);
    fs::write(f.moddir().join("kernel/drivers/b.ko.xz"), b"not xz").unwrap();
    let img = f.out("img");
    let err = failed(&f.build(&img, &[]));
    assert!(
        err.contains("kernel/drivers/b.ko.xz") && err.contains("xz"),
        "{err}"
    );
    assert!(!img.exists());
    // Kept as is, it is not read: the kernel would judge it at boot.
    ok(&f.build(&img, &["--module-compression", "keep"]));
}

// ------------------------------------------------------------------ refusals

/// No file of the output directory other than the fixture's own may appear
/// after a failed build (no temporary left behind, no partial image).
fn assert_nothing_written(f: &Fixture, before: &BTreeSet<String>) {
    let now: BTreeSet<String> = fs::read_dir(f.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(&now, before);
}

fn listing(f: &Fixture) -> BTreeSet<String> {
    fs::read_dir(f.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_manifest_that_does_not_plan_writes_nothing() {
    let f = Fixture::new();
    f.write_manifest(r#"{"version": 1, "chains": [{"name": "s", "modules": ["no_such_module"]}]}"#);
    let before = listing(&f);
    let img = f.out("img");
    let err = failed(&f.build(&img, &[]));
    assert!(err.contains("no_such_module"), "{err}");
    assert_nothing_written(&f, &before);
}

#[test]
fn a_failed_build_leaves_an_existing_image_untouched() {
    let f = Fixture::new();
    let img = f.out("img");
    ok(&f.build(&img, &[]));
    let good = fs::read(&img).unwrap();
    f.write_manifest(r#"{"version": 1, "chains": [{"name": "s", "modules": ["nope"]}]}"#);
    let before = listing(&f);
    failed(&f.build(&img, &[]));
    assert_eq!(fs::read(&img).unwrap(), good);
    assert_nothing_written(&f, &before);
}

#[test]
fn an_invalid_manifest_is_refused_naming_the_file() {
    let f = Fixture::new();
    f.write_manifest(r#"{"version": 1, "chains": [{"name": "s", "modules": [42]}]}"#);
    let before = listing(&f);
    let err = failed(&f.build(&f.out("img"), &[]));
    assert!(err.contains("manifest.json"), "{err}");
    assert!(err.contains("chains[0].modules[0]"), "{err}");
    assert_nothing_written(&f, &before);
}

#[test]
fn a_wrong_kernel_release_is_refused_clearly() {
    let f = Fixture::new();
    let mut args = f.args(&f.out("img"), &[]);
    let i = args.iter().position(|a| a == "--kernel-release").unwrap();
    args[i + 1] = "9.9.9-none".into();
    let err = failed(&run(&args, &[]));
    assert!(
        err.contains("9.9.9-none") && err.contains("does not exist"),
        "{err}"
    );
    args[i + 1] = "../..".into();
    let err = failed(&run(&args, &[]));
    assert!(err.contains("not a plain directory name"), "{err}");
}

#[test]
fn module_paths_escaping_the_module_directory_are_refused() {
    let f = Fixture::new();
    let d = f.moddir();
    // b.ko becomes a symlink to a file outside the module directory.
    let outside = f.out("outside.ko");
    fs::write(&outside, b"not a module from this tree").unwrap();
    fs::remove_file(d.join("kernel/drivers/b.ko")).unwrap();
    symlink(&outside, d.join("kernel/drivers/b.ko")).unwrap();
    let before = listing(&f);
    let err = failed(&f.build(&f.out("img"), &[]));
    assert!(err.contains("kernel/drivers/b.ko"), "{err}");
    assert!(err.contains("outside the module directory"), "{err}");
    assert_nothing_written(&f, &before);

    // A `..` path in modules.dep is refused, by the index or by us, naming it.
    let f = Fixture::new();
    let d = f.moddir();
    fs::write(d.join("../escape.ko"), b"").unwrap();
    let dep = fs::read_to_string(d.join("modules.dep")).unwrap();
    fs::write(
        d.join("modules.dep"),
        dep.replace("kernel/drivers/b.ko:", "../escape.ko:")
            .replace("a.ko: kernel/drivers/b.ko", "a.ko: ../escape.ko"),
    )
    .unwrap();
    f.write_manifest(r#"{"version": 1, "chains": [{"name": "s", "modules": ["escape"]}]}"#);
    let err = failed(&f.build(&f.out("img"), &[]));
    assert!(err.contains("../escape.ko"), "{err}");
    assert!(!f.out("img").exists());
}

// ------------------------------------------------------- the real Debian tree

/// The demo manifest of the contract (virtio_pci, virtio_blk, ext4) against
/// the host's Debian module tree, read only: the image holds exactly the
/// planned module files, and its pruned index plans the same.
#[test]
fn debian_demo_manifest_includes_exactly_the_planned_modules() {
    let Some(tree) = prerequisites::require(prerequisites::module_tree()) else {
        return;
    };
    let (release, dir) = (tree.release.as_str(), tree.modules_dir.as_path());
    let modules_root = dir.ancestors().nth(3).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let manifest_json = r#"{
        "version": 1,
        "chains": [
            {"name": "storage", "modules": ["virtio_pci", {"name": "virtio_blk", "params": "queue_depth=128"}], "required": true},
            {"name": "fs", "modules": ["ext4"], "required": true}
        ],
        "root": {"device": "/dev/vda", "fstype": "ext4"}
    }"#;
    let manifest_path = tmp.path().join("demo.json");
    fs::write(&manifest_path, manifest_json).unwrap();
    let init = tmp.path().join("init");
    fs::write(&init, b"init").unwrap();
    let img = tmp.path().join("demo.img");
    let args: Vec<String> = [
        "--manifest",
        manifest_path.to_str().unwrap(),
        "--kernel-release",
        release,
        "--modules-root",
        modules_root.to_str().unwrap(),
        "--init",
        init.to_str().unwrap(),
        "--output",
        img.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let stdout = ok(&run(&args, &[]));

    let manifest = modules_manifest::Manifest::from_json(manifest_json.as_bytes()).unwrap();
    let index = modules_manifest::DepIndex::load(dir).unwrap();
    let plan = kmodinit_mkimage::modules::plan_against(&manifest, &index).unwrap();
    let planned: BTreeSet<String> = plan.module_files().map(str::to_owned).collect();
    let m = members(&img);
    assert_eq!(module_files(&m, release), planned);
    for must in [
        "kernel/drivers/virtio/virtio_pci.ko",
        "kernel/drivers/block/virtio_blk.ko",
        "kernel/fs/ext4/ext4.ko",
        "kernel/fs/jbd2/jbd2.ko",
        "kernel/fs/mbcache.ko",
        "kernel/lib/crc16.ko",
    ] {
        assert!(planned.contains(must), "{must} not planned: {planned:?}");
    }
    // Bytes are the host's, unmodified.
    let ext4 = format!("lib/modules/{release}/kernel/fs/ext4/ext4.ko");
    assert_eq!(
        m[&ext4].data,
        fs::read(dir.join("kernel/fs/ext4/ext4.ko")).unwrap()
    );
    // No depmod text by default; the compiled index has one module per
    // module file, nothing else, and is for this release.
    assert!(!m.contains_key(&format!("lib/modules/{release}/modules.dep")));
    let compiled = modules_manifest::compiled::decode(
        &m[&format!("lib/modules/{release}/kmodinit.index")].data,
        Some(release),
    )
    .unwrap();
    assert_eq!(compiled.index.modules.len(), planned.len());
    assert!(
        stdout.contains(&format!("modules:      {} files", planned.len())),
        "{stdout}"
    );
}

/// The default image holds the compiled index and no depmod text; it
/// answers every lookup as the text files of a `--depmod-text` build of
/// the same image do.
#[test]
fn the_image_holds_the_compiled_index_and_no_depmod_text_by_default() {
    use modules_manifest::{compiled, DepIndex};
    let f = Fixture::new();
    let with_text = f.out("text.img");
    ok(&f.build(&with_text, &[]));
    let mut args = f.args(&f.out("default.img"), &[]);
    args.retain(|a| a != "--depmod-text");
    ok(&run(&args, &[]));
    let dir = format!("lib/modules/{FAKE_RELEASE}");
    let plain = members(&f.out("default.img"));
    let text_members = members(&with_text);
    for name in [
        "modules.dep",
        "modules.alias",
        "modules.softdep",
        "modules.builtin",
        "modules.params",
    ] {
        assert!(!plain.contains_key(&format!("{dir}/{name}")), "{name}");
    }
    let index_file = format!("{dir}/{}", compiled::INDEX_FILE);
    assert_eq!(plain[&index_file].data, text_members[&index_file].data);
    let c = compiled::decode(&plain[&index_file].data, Some(FAKE_RELEASE)).unwrap();
    let e = compiled::decode(&plain[&index_file].data, Some("6.1.0-other")).unwrap_err();
    assert!(e.to_string().contains("6.1.0-fake") && e.to_string().contains("6.1.0-other"));
    let t = |n: &str| {
        text_members
            .get(&format!("{dir}/{n}"))
            .map(|m| String::from_utf8(m.data.clone()).unwrap())
            .unwrap_or_default()
    };
    let from_text = DepIndex::parse(
        &t("modules.dep"),
        &t("modules.builtin"),
        &t("modules.softdep"),
        &t("modules.alias"),
    )
    .unwrap();
    assert_eq!(c.index.modules, from_text.modules);
    assert_eq!(c.index.builtin, from_text.builtin);
    assert_eq!(c.index.softdeps, from_text.softdeps);
    assert_eq!(c.index.aliases.len(), from_text.aliases.len());
    for key in c.index.resolved.keys() {
        assert_eq!(c.index.resolved[key], from_text.resolve(key), "{key}");
    }
    assert_eq!(
        c.params,
        modules_manifest::modinfo::parse_params_file(&t("modules.params"))
    );
}

// ------------------------------------------- parameters and modprobe.d (issue 15)

/// `a.ko` (declares `delay_ms` and `tag`) and `b.ko` (no parameters) as
/// minimal ELF files; `a` stored as `name` (`a.ko` or `a.ko.xz`…).
fn with_elf_modules(f: &Fixture, a_name: &str, compress: Compress) {
    use modules_manifest::modinfo::minimal_module_elf;
    let d = f.moddir().join("kernel/drivers");
    let a = minimal_module_elf(
        b"parm=delay_ms:ms (uint)\0parmtype=delay_ms:uint\0parmtype=tag:charp\0",
    );
    fs::remove_file(d.join("a.ko")).unwrap();
    fs::write(d.join(a_name), compress.compress(&a).unwrap()).unwrap();
    fs::write(d.join("b.ko"), minimal_module_elf(b"license=GPL\0")).unwrap();
    fs::write(
        d.join("../crypto/crc_x.ko"),
        minimal_module_elf(b"license=GPL\0"),
    )
    .unwrap();
    let dep = fs::read_to_string(f.moddir().join("modules.dep")).unwrap();
    fs::write(
        f.moddir().join("modules.dep"),
        dep.replace("kernel/drivers/a.ko:", &format!("kernel/drivers/{a_name}:")),
    )
    .unwrap();
}

#[test]
fn an_unknown_manifest_param_is_refused_with_the_real_ones_unless_allowed() {
    for (name, c) in [
        ("a.ko", Compress::None),
        ("a.ko.xz", Compress::Xz),
        ("a.ko.zst", Compress::Zstd),
        ("a.ko.gz", Compress::Gzip),
    ] {
        let f = Fixture::new();
        with_elf_modules(&f, name, c);
        f.write_manifest(
            r#"{"version": 1, "chains": [{"name": "storage", "modules": [{"name": "a", "params": "delay-ms=5 bogus=1"}]}]}"#,
        );
        let out_path = f.out("img");
        let err = failed(&f.build(&out_path, &[]));
        assert!(
            err.contains("module a has no parameter bogus")
                && err.contains("chains[0].modules[0].params")
                && err.contains("delay_ms, tag")
                && err.contains("--allow-unknown-params"),
            "{name}: {err}"
        );
        assert!(!out_path.exists());
        let out = f.build(&out_path, &["--allow-unknown-params"]);
        ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("no parameter bogus"), "{stderr}");
        // modules.params records each module's names for /init.
        let m = members(&out_path);
        let params = text(&m, &format!("lib/modules/{FAKE_RELEASE}/modules.params"));
        assert!(params.contains("a delay_ms tag\n"), "{params}");
        assert!(params.contains("b\n"), "{params}");
        // Known params (dashes or not) build quietly.
        f.write_manifest(
            r#"{"version": 1, "modules": {"a": {"params": "delay-ms=5 tag=x dyndbg=+p"}}, "chains": [{"name": "storage", "modules": ["a"]}]}"#,
        );
        ok(&f.build(&out_path, &[]));
    }
}

#[test]
fn a_softdep_override_naming_an_unknown_module_is_refused() {
    let f = Fixture::new();
    f.write_manifest(
        r#"{"version": 1, "chains": [{"name": "storage", "modules": ["a"]}], "softdeps": {"ghost": {"pre": ["b"]}}}"#,
    );
    let err = failed(&f.build(&f.out("img"), &[]));
    assert!(
        err.contains("softdeps.ghost") && err.contains("no module ghost"),
        "{err}"
    );
    // A working override replaces the index's softdep (crypto-crc → crc_x).
    f.write_manifest(
        r#"{"version": 1, "chains": [{"name": "storage", "modules": ["a"]}], "softdeps": {"a": {"pre": ["c"]}}}"#,
    );
    let out_path = f.out("img2");
    let stdout = ok(&f.build(&out_path, &[]));
    assert!(
        stdout.contains("softdep a: manifest override used"),
        "{stdout}"
    );
    let files = module_files(&members(&out_path), FAKE_RELEASE);
    assert!(files.contains("kernel/drivers/c.ko"), "{files:?}");
    assert!(!files.contains("kernel/crypto/crc_x.ko"), "{files:?}");
}

#[test]
fn modprobe_d_is_carried_with_its_origins_and_install_is_refused() {
    let f = Fixture::new();
    with_elf_modules(&f, "a.ko", Compress::None);
    let conf = f.out("modprobe.d");
    fs::create_dir_all(&conf).unwrap();
    fs::write(
        conf.join("10-test.conf"),
        "options a tag=from-conf\noptions unused x=1\nsoftdep a pre: c\nblacklist unused\nalias my-alias a\n",
    )
    .unwrap();
    f.write_manifest(
        r#"{"version": 1, "chains": [{"name": "storage", "modules": ["a"], "required": true}]}"#,
    );
    let out_path = f.out("img");
    let stdout = ok(&f.build(&out_path, &["--modprobe-d", conf.to_str().unwrap()]));
    let origin = format!("{}:1", conf.join("10-test.conf").display());
    assert!(
        stdout.contains(&format!(
            "options a tag=from-conf ({origin}) → modules.a.params"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("softdep a pre: c post:  ("), "{stdout}");
    let m = members(&out_path);
    let manifest =
        modules_manifest::Manifest::from_json(&m["etc/kmodinit/manifest.json"].data).unwrap();
    assert_eq!(
        manifest.modules[&modules_manifest::ModuleName::new("a").unwrap()]
            .params
            .as_deref(),
        Some("tag=from-conf")
    );
    assert!(manifest
        .softdeps
        .contains_key(&modules_manifest::ModuleName::new("a").unwrap()));
    assert_eq!(manifest.blocklist.len(), 1);
    let alias = text(&m, &format!("lib/modules/{FAKE_RELEASE}/modules.alias"));
    assert!(alias.contains("alias my-alias a\n"), "{alias}");
    assert!(module_files(&m, FAKE_RELEASE).contains("kernel/drivers/c.ko"));

    // The manifest wins; --no-modprobe-d carries nothing.
    f.write_manifest(r#"{"version": 1, "chains": [{"name": "storage", "modules": [{"name": "a", "params": "tag=manifest"}]}]}"#);
    let stdout = ok(&f.build(&out_path, &["--modprobe-d", conf.to_str().unwrap()]));
    assert!(
        stdout.contains("not used: the manifest declares parameters for a"),
        "{stdout}"
    );
    let stdout = ok(&f.build(&out_path, &["--no-modprobe-d"]));
    assert!(!stdout.contains("modprobe.d"), "{stdout}");

    // install/remove: refused, saying why.
    fs::write(conf.join("20-bad.conf"), "install a /bin/true\n").unwrap();
    let err = failed(&f.build(&f.out("img3"), &["--modprobe-d", conf.to_str().unwrap()]));
    assert!(
        err.contains("20-bad.conf:1") && err.contains("no shell"),
        "{err}"
    );
}

// ------------------------------------------------------ architecture

/// The first bytes of a 64-bit little-endian ELF file for `machine`
/// (`e_machine`: 62 x86-64, 183 aarch64), as `/init` and `.ko` files start.
fn elf_head(machine: u16) -> Vec<u8> {
    let mut h = b"\x7fELF\x02\x01\x01".to_vec();
    h.resize(16, 0);
    h.extend_from_slice(&1u16.to_le_bytes()); // e_type ET_REL
    h.extend_from_slice(&machine.to_le_bytes());
    h.resize(64, 0);
    h
}

#[test]
fn an_init_of_another_machine_than_the_modules_is_refused_naming_both() {
    let f = Fixture::new();
    let d = f.moddir();
    for m in ["drivers/a.ko", "drivers/b.ko", "crypto/crc_x.ko"] {
        fs::write(d.join("kernel").join(m), elf_head(183)).unwrap();
    }
    // arm64 modules, arm64 /init: built (the tool runs on x86-64).
    fs::write(f.init(), elf_head(183)).unwrap();
    let img = f.out("arm64.img");
    ok(&f.build(&img, &["--compress", "none"]));
    assert_eq!(members(&img)["init"].data, elf_head(183));

    // An x86-64 /init with them: refused, nothing written.
    fs::write(f.init(), elf_head(62)).unwrap();
    let before = listing(&f);
    let err = failed(&f.build(&f.out("mixed.img"), &[]));
    assert!(err.contains(&f.init().display().to_string()), "{err}");
    assert!(
        err.contains("built for x86-64, but the modules of 6.1.0-fake are for arm64 (aarch64)"),
        "{err}"
    );
    assert!(err.contains("kernel/drivers/"), "names a module: {err}");
    assert!(
        err.contains("make init ARCH="),
        "says how to build one: {err}"
    );
    assert_nothing_written(&f, &before);

    // Compressed modules are read decompressed: the same refusal.
    compress_fixture_modules(&f);
    let d = f.moddir();
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
    std::io::Write::write_all(&mut e, &elf_head(183)).unwrap();
    fs::write(d.join("kernel/drivers/b.ko.xz"), e.finish().unwrap()).unwrap();
    let err = failed(&f.build(&f.out("mixed-xz.img"), &[]));
    assert!(err.contains("are for arm64 (aarch64)"), "{err}");
    assert!(err.contains("b.ko.xz"), "{err}");

    // A script as /init (not ELF) is not compared.
    fs::write(f.init(), b"#!/bin/sh\n").unwrap();
    ok(&f.build(&f.out("script.img"), &[]));
}
