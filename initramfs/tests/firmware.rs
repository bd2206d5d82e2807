//! `kmodinit-mkimage`'s firmware and early microcode, end to end against a
//! fake module tree whose modules are minimal ELF files with `.modinfo`
//! `firmware=` records, and fake firmware directories (no real firmware or
//! microcode needed).
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kmodinit_mkimage::compress::Compress;
use kmodinit_mkimage::cpio::{self, Member};
use kmodinit_mkimage::microcode::early_archive_len;
use modules_manifest::modinfo::minimal_module_elf;

const BIN: &str = env!("CARGO_BIN_EXE_kmodinit-mkimage");
const REL: &str = "6.1.0-fake";

/// `wifi` (needs `wifi/a.bin` and `b.fw`) depends on `base` (no
/// firmware); the manifest loads `wifi`.
struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            tmp: tempfile::tempdir().unwrap(),
        };
        let d = f.root().join("lib/modules").join(REL);
        fs::create_dir_all(d.join("kernel")).unwrap();
        fs::write(
            d.join("kernel/wifi.ko"),
            minimal_module_elf(b"license=GPL\0firmware=wifi/a.bin\0firmware=b.fw\0name=wifi\0"),
        )
        .unwrap();
        fs::write(
            d.join("kernel/base.ko"),
            minimal_module_elf(b"license=GPL\0name=base\0"),
        )
        .unwrap();
        fs::write(
            d.join("modules.dep"),
            "kernel/wifi.ko: kernel/base.ko\nkernel/base.ko:\n",
        )
        .unwrap();
        fs::write(f.tmp.path().join("init"), b"#!/bin/sh\n").unwrap();
        fs::write(
            f.tmp.path().join("manifest.json"),
            r#"{"version": 1, "chains": [{"name": "net", "modules": ["wifi"]}], "init": {"path": "/init"}}"#,
        )
        .unwrap();
        fs::create_dir_all(f.fw()).unwrap();
        f
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }
    /// The default firmware directory, `MODULES_ROOT/lib/firmware`.
    fn fw(&self) -> PathBuf {
        self.root().join("lib/firmware")
    }
    fn put(&self, rel: &str, bytes: &[u8]) {
        let p = self.fw().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
    fn out(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn build(&self, out: &Path, extra: &[&str]) -> Output {
        let t = self.tmp.path();
        Command::new(BIN)
            .arg("--manifest")
            .arg(t.join("manifest.json"))
            .args(["--kernel-release", REL, "--compress", "none"])
            .arg("--modules-root")
            .arg(self.root())
            .arg("--init")
            .arg(t.join("init"))
            .arg("--output")
            .arg(out)
            .args(extra)
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    }
}

/// (stdout, stderr) of a successful build.
fn ok(out: &Output) -> (String, String) {
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "build failed:\n{o}\n{e}");
    (o, e)
}

/// The members under `lib/firmware/` (path without that prefix → member).
fn firmware(image: &Path) -> BTreeMap<String, Member> {
    let raw = fs::read(image).unwrap();
    let start = early_archive_len(&raw)
        .filter(|&n| n < raw.len())
        .unwrap_or(0);
    let raw = &raw[start..];
    let bytes = Compress::detect(raw).decompress(raw).unwrap();
    cpio::read(&bytes)
        .unwrap()
        .into_iter()
        .filter_map(|m| {
            let rel = m.header.name.strip_prefix("lib/firmware/")?.to_owned();
            Some((rel, m))
        })
        .collect()
}

fn members(image: &Path) -> BTreeMap<String, Member> {
    let raw = fs::read(image).unwrap();
    cpio::read(&raw)
        .unwrap()
        .into_iter()
        .map(|m| (m.header.name.clone(), m))
        .collect()
}

const S_IFLNK: u32 = 0o120000;

fn xz(data: &[u8], check: xz2::stream::Check) -> Vec<u8> {
    let stream = xz2::stream::Stream::new_easy_encoder(6, check).unwrap();
    let mut enc = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn help_documents_the_firmware_and_microcode_options() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--firmware-dir <DIR>",
        "--firmware <MODE>",
        "--microcode <MODE>",
        "MODULES_ROOT/lib/firmware",
        "updates/RELEASE",
        "intel-ucode",
        "amd-ucode",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn firmware_is_found_as_the_kernel_looks_and_stored_where_found() {
    let f = Fixture::new();
    // updates/RELEASE wins over updates, RELEASE and the directory itself;
    // a plain file anywhere wins over an .xz.
    f.put("wifi/a.bin", b"root");
    f.put(&format!("{REL}/wifi/a.bin"), b"release");
    f.put("updates/wifi/a.bin", b"updates");
    f.put(&format!("updates/{REL}/wifi/a.bin"), b"updates-release");
    f.put("b.fw", b"plain b");
    f.put(
        &format!("updates/{REL}/b.fw.xz"),
        &xz(b"xz b", xz2::stream::Check::Crc32),
    );
    let image = f.out("img");
    let (stdout, stderr) = ok(&f.build(&image, &[]));
    let fw = firmware(&image);
    let files: Vec<&str> = fw
        .iter()
        .filter(|(_, m)| m.header.mode & 0o170000 == 0o100000)
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        files,
        ["b.fw".to_owned(), format!("updates/{REL}/wifi/a.bin")]
    );
    assert_eq!(
        fw[&format!("updates/{REL}/wifi/a.bin")].data,
        b"updates-release"
    );
    assert_eq!(fw["b.fw"].data, b"plain b");
    assert!(
        stdout.contains("firmware:     2 files, 22 B (22 bytes)"),
        "{stdout}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    let m = members(&image);
    assert_eq!(
        String::from_utf8_lossy(&m[&format!("lib/modules/{REL}/modules.firmware")].data),
        "wifi b.fw wifi/a.bin\n"
    );
}

#[test]
fn xz_firmware_is_kept_with_crc32_and_recompressed_from_crc64() {
    let f = Fixture::new();
    let good = xz(b"firmware a", xz2::stream::Check::Crc32);
    f.put("wifi/a.bin.xz", &good);
    f.put("b.fw.xz", &xz(b"firmware b", xz2::stream::Check::Crc64));
    let image = f.out("img");
    let (stdout, stderr) = ok(&f.build(&image, &[]));
    let fw = firmware(&image);
    assert_eq!(
        fw["wifi/a.bin.xz"].data, good,
        "a CRC32 file is stored as is"
    );
    let b = &fw["b.fw.xz"].data;
    assert_eq!(b[7], 1, "re-compressed with CRC32");
    assert_eq!(Compress::Xz.decompress(b).unwrap(), b"firmware b");
    assert!(
        stdout.contains(
            "note: firmware b.fw.xz (wifi): re-compressed with CRC32 (the file has CRC64"
        ),
        "{stdout}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    // Reproducible, re-compression included.
    let again = f.out("img2");
    ok(&f.build(&again, &[]));
    assert_eq!(fs::read(&image).unwrap(), fs::read(&again).unwrap());
}

#[test]
fn zstd_firmware_only_when_the_kernel_config_says_so() {
    let f = Fixture::new();
    f.put("wifi/a.bin", b"a");
    f.put("b.fw.zst", &Compress::Zstd.compress(b"b").unwrap());
    // No boot/config-RELEASE: xz only, so b.fw.zst is a hint in the warning.
    let image = f.out("img");
    let (_, stderr) = ok(&f.build(&image, &[]));
    assert!(
        stderr.contains("warning: module wifi: firmware b.fw not found")
            && stderr.contains("b.fw.zst exists but this kernel does not read .zst firmware"),
        "{stderr}"
    );
    assert!(!firmware(&image).contains_key("b.fw.zst"));
    // A kernel configured for zstd reads it.
    let boot = f.root().join("boot");
    fs::create_dir_all(&boot).unwrap();
    fs::write(
        boot.join(format!("config-{REL}")),
        "CONFIG_FW_LOADER_COMPRESS=y\nCONFIG_FW_LOADER_COMPRESS_XZ=y\nCONFIG_FW_LOADER_COMPRESS_ZSTD=y\n",
    )
    .unwrap();
    let (_, stderr) = ok(&f.build(&image, &[]));
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(firmware(&image).contains_key("b.fw.zst"));
}

#[test]
fn symlinks_are_resolved_inside_the_image() {
    let f = Fixture::new();
    f.put("shared/blob-1.bin", b"shared blob");
    fs::create_dir_all(f.fw().join("wifi")).unwrap();
    symlink("../shared/blob-1.bin", f.fw().join("wifi/a.bin")).unwrap();
    // A link out of the firmware directory: its bytes are copied.
    let outside = f.out("elsewhere.fw");
    fs::write(&outside, b"outside").unwrap();
    symlink(&outside, f.fw().join("b.fw")).unwrap();
    let image = f.out("img");
    let (stdout, _) = ok(&f.build(&image, &[]));
    let fw = firmware(&image);
    let link = &fw["wifi/a.bin"];
    assert_eq!(link.header.mode & 0o170000, S_IFLNK);
    assert_eq!(link.data, b"../shared/blob-1.bin");
    assert_eq!(fw["shared/blob-1.bin"].data, b"shared blob");
    assert_eq!(fw["b.fw"].header.mode & 0o170000, 0o100000);
    assert_eq!(fw["b.fw"].data, b"outside");
    assert!(stdout.contains("firmware:     2 files, 18 B"), "{stdout}");
}

#[test]
fn missing_firmware_warns_naming_module_and_file_and_none_leaves_all_out() {
    let f = Fixture::new();
    f.put("wifi/a.bin", b"a");
    let image = f.out("img");
    let out = f.build(&image, &[]);
    let (stdout, stderr) = ok(&out);
    assert!(
        stderr.contains(&format!(
            "kmodinit-mkimage: warning: module wifi: firmware b.fw not found in {} \
             (looked for as is, .xz in updates/{REL}, updates, {REL} and the directory itself): \
             the image is built without it",
            f.fw().display()
        )),
        "{stderr}"
    );
    assert!(stdout.contains("firmware:     1 files, 1 B"), "{stdout}");

    // --firmware-dir replaces the default; a missing directory is named.
    let gone = f.out("no-such-dir");
    let (_, stderr) = ok(&f.build(&image, &["--firmware-dir", gone.to_str().unwrap()]));
    assert!(
        stderr.contains(&format!(
            "module wifi: firmware files b.fw, wifi/a.bin not found in {} (missing)",
            gone.display()
        )),
        "{stderr}"
    );

    let (stdout, stderr) = ok(&f.build(&image, &["--firmware", "none"]));
    assert!(firmware(&image).is_empty());
    assert!(stdout.contains("firmware:     0 files"), "{stdout}");
    assert!(
        stdout.contains(
            "note: --firmware none: 2 firmware file(s) named by the image's modules left out"
        ),
        "{stdout}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    // The map stays: /init still names the module of a failed request.
    assert!(members(&image).contains_key(&format!("lib/modules/{REL}/modules.firmware")));
}

#[test]
fn microcode_archive_comes_first_uncompressed() {
    let f = Fixture::new();
    f.put("intel-ucode/06-9e-0a", b"i2");
    f.put("intel-ucode/06-8e-09", b"i1");
    f.put("amd-ucode/microcode_amd_fam19h.bin", b"a2");
    f.put("amd-ucode/microcode_amd.bin", b"a1");
    f.put("amd-ucode/microcode_amd.bin.asc", b"sig");
    let image = f.out("img");
    let t = f.tmp.path().to_str().unwrap().to_owned();
    let out = Command::new(BIN)
        .args([
            "--manifest",
            &format!("{t}/manifest.json"),
            "--kernel-release",
            REL,
        ])
        .args(["--modules-root", f.root().to_str().unwrap()])
        .args([
            "--init",
            &format!("{t}/init"),
            "--output",
            image.to_str().unwrap(),
        ])
        .args(["--microcode", "all"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    let (stdout, _) = ok(&out);
    assert!(
        stdout.contains("kernel/x86/microcode/AuthenticAMD.bin (2 files, 4 bytes)")
            && stdout.contains("kernel/x86/microcode/GenuineIntel.bin (2 files, 4 bytes)"),
        "{stdout}"
    );
    let raw = fs::read(&image).unwrap();
    let n = early_archive_len(&raw).unwrap();
    let early = cpio::read(&raw[..n]).unwrap();
    let names: Vec<(&str, &[u8])> = early
        .iter()
        .map(|m| (m.header.name.as_str(), m.data.as_slice()))
        .collect();
    assert_eq!(
        names,
        [
            ("kernel", &b""[..]),
            ("kernel/x86", b""),
            ("kernel/x86/microcode", b""),
            ("kernel/x86/microcode/AuthenticAMD.bin", b"a1a2"),
            ("kernel/x86/microcode/GenuineIntel.bin", b"i1i2"),
        ]
    );
    assert!(early.iter().all(|m| m.header.mtime == 1_700_000_000));
    // Then the compressed image (xz by default), which holds /init.
    assert_eq!(Compress::detect(&raw[n..]), Compress::Xz);
    let main = cpio::read(&Compress::Xz.decompress(&raw[n..]).unwrap()).unwrap();
    assert!(main.iter().any(|m| m.header.name == "init"));

    // none, and auto for a kernel that is not the running one: no archive.
    for mode in ["none", "auto"] {
        ok(&f.build(&image, &["--microcode", mode]));
        let raw = fs::read(&image).unwrap();
        assert_eq!(
            early_archive_len(&raw).map(|n| n < raw.len()),
            Some(false),
            "{mode}"
        );
    }
}

#[test]
fn microcode_without_packages_is_a_note_and_arm64_gets_none() {
    let f = Fixture::new();
    let image = f.out("img");
    let (stdout, stderr) = ok(&f.build(&image, &["--microcode", "all"]));
    assert!(stdout.contains("no GenuineIntel microcode in"), "{stdout}");
    assert!(stdout.contains("intel-microcode package"), "{stdout}");
    assert!(stdout.contains("amd64-microcode package"), "{stdout}");
    assert!(!stderr.contains("error"), "{stderr}");
    assert!(!stdout.contains("microcode:    "), "{stdout}");

    // An arm64 /init: no archive, and the note says why.
    f.put("intel-ucode/06-8e-09", b"i1");
    let mut elf = vec![0u8; 64];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf[18] = 183; // EM_AARCH64
    fs::write(f.tmp.path().join("init"), &elf).unwrap();
    let (stdout, _) = ok(&f.build(&image, &["--microcode", "all"]));
    assert!(
        stdout.contains("is not an x86 program, so no early microcode archive"),
        "{stdout}"
    );
    let raw = fs::read(&image).unwrap();
    assert_eq!(early_archive_len(&raw), Some(raw.len()), "a plain image");
}
