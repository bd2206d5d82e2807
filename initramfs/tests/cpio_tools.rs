//! Our newc archives as GNU cpio and libarchive's bsdcpio read them: the
//! independent check that the writer is not only self-consistent.
#![allow(clippy::unwrap_used)] // tests may unwrap (BRIEF)

use std::io::Write;
use std::process::{Command, Stdio};

use kmodinit_mkimage::tree::{Content, ImagePath, Kind, Node, Tree};

fn p(s: &str) -> ImagePath {
    ImagePath::relative(s).unwrap()
}

/// A tree with one member of every kind and names of every padding length.
fn sample_tree() -> Tree {
    let mut t = Tree::new();
    let file = |b: &[u8], perm| Node {
        kind: Kind::File(Content::Bytes(b.to_vec())),
        perm,
    };
    t.insert(p("init"), file(b"#!/bin/sh\necho hi\n", 0o755))
        .unwrap();
    t.insert(p("etc/kmodinit/manifest.json"), file(b"{}", 0o644))
        .unwrap();
    for n in 1..=4 {
        let name = format!("pad/{}", "x".repeat(n));
        t.insert(p(&name), file(&vec![b'a'; n], 0o600)).unwrap();
    }
    t.insert(
        p("dev/console"),
        Node {
            kind: Kind::CharDev { major: 5, minor: 1 },
            perm: 0o600,
        },
    )
    .unwrap();
    t.insert(
        p("dev/null"),
        Node {
            kind: Kind::CharDev { major: 1, minor: 3 },
            perm: 0o666,
        },
    )
    .unwrap();
    t.insert(
        p("bin/sh"),
        Node {
            kind: Kind::Symlink("busybox".into()),
            perm: 0o777,
        },
    )
    .unwrap();
    t.insert(
        p("root"),
        Node {
            kind: Kind::Dir,
            perm: 0o700,
        },
    )
    .unwrap();
    t
}

fn list_with(tool: &str, args: &[&str], archive: &[u8]) -> String {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} is required (make deps installs it): {e}"));
    child.stdin.take().unwrap().write_all(archive).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn expected_names(t: &Tree) -> Vec<String> {
    t.iter().map(|(p, _)| p.as_str().to_owned()).collect()
}

#[test]
fn gnu_cpio_lists_every_member_in_order() {
    let t = sample_tree();
    let (archive, _) = t.write_cpio(0, Vec::new()).unwrap();
    let listed = list_with("cpio", &["-t", "--quiet"], &archive);
    let names: Vec<String> = listed.lines().map(str::to_owned).collect();
    assert_eq!(names, expected_names(&t));
}

#[test]
fn bsdcpio_lists_every_member_in_order() {
    let t = sample_tree();
    let (archive, _) = t.write_cpio(0, Vec::new()).unwrap();
    let listed = list_with("bsdcpio", &["-t", "--quiet"], &archive);
    let names: Vec<String> = listed.lines().map(str::to_owned).collect();
    assert_eq!(names, expected_names(&t));
}

#[test]
fn gnu_cpio_sees_modes_owners_devices_and_symlinks() {
    let t = sample_tree();
    let (archive, _) = t.write_cpio(0, Vec::new()).unwrap();
    // -n: numeric uid/gid, so the host's user names do not matter.
    let listed = list_with("cpio", &["-t", "-v", "-n", "--quiet"], &archive);
    let line = |name: &str| -> Vec<String> {
        listed
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")) || l.contains(&format!(" {name} -> ")))
            .unwrap_or_else(|| panic!("{name} not in\n{listed}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let console = line("dev/console");
    assert_eq!(console[0], "crw-------");
    assert_eq!((console[2].as_str(), console[3].as_str()), ("0", "0"));
    assert_eq!(&console[4..6], ["5,", "1"]);
    assert_eq!(line("dev/null")[0], "crw-rw-rw-");
    assert_eq!(line("init")[0], "-rwxr-xr-x");
    assert_eq!(line("root")[0], "drwx------");
    let sh = line("bin/sh");
    assert_eq!(sh[0], "lrwxrwxrwx");
    assert_eq!(sh.last().unwrap(), "busybox");
    assert_eq!(line("pad/xxx")[4], "3", "size column");
}

#[test]
fn bsdcpio_extracts_the_same_bytes() {
    let t = sample_tree();
    let (archive, _) = t.write_cpio(0, Vec::new()).unwrap();
    let out = tempfile::tempdir().unwrap();
    // Extract only regular files and symlinks: device nodes would need root.
    let mut child = Command::new("bsdcpio")
        .args(["-i", "-d", "--quiet", "init", "pad/*", "bin/sh"])
        .current_dir(out.path())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&archive).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        std::fs::read(out.path().join("init")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(std::fs::read(out.path().join("pad/xxxx")).unwrap(), b"aaaa");
    assert_eq!(
        std::fs::read_link(out.path().join("bin/sh")).unwrap(),
        std::path::PathBuf::from("busybox")
    );
}
