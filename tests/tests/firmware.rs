//! Group: firmware and early microcode. The fixture `kmi_fw` declares
//! `MODULE_FIRMWARE("kmodinit-test/kmi_fw.bin")` and asks for it with
//! `request_firmware` in its init, logging the size and FNV-1a hash of the
//! bytes it got (it loads either way). The image builder carries the file
//! (plain, or only `.xz`: the kernel decompresses it), or warns naming the
//! module and the file when it has none; then the kernel's failed request
//! is a warning on `kmi_fw` in the boot's report. An image with
//! `--microcode all` starts with an uncompressed archive holding
//! `kernel/x86/microcode/{GenuineIntel,AuthenticAMD}.bin` and boots.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::{Path, PathBuf};
use std::process::Command;

use kmodinit_e2e::{assert_real_init_ran, boot, report_modules, Env, BUSYBOX};
use kmodinit_qemu::cpio::Cpio;
use kmodinit_qemu::RealInitRoot;
use serde_json::{json, Value};

const FW_NAME: &str = "kmodinit-test/kmi_fw.bin";

/// The firmware file's bytes: 5000 bytes that are not all alike.
fn firmware_bytes() -> Vec<u8> {
    (0u32..5000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// FNV-1a, 32 bits, as `kmi_fw.c` computes it.
fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn manifest() -> Value {
    json!({
        "version": 1,
        "chains": [{"name": "fw", "modules": ["kmi_fw"], "required": true}],
        "on_failure": "poweroff"
    })
}

/// Builds the image over the fixture stage with the real init inside it,
/// `extra` arguments for the builder; returns (image, stdout, stderr).
fn build(
    env: &Env,
    dir: &Path,
    init: &RealInitRoot,
    compress: &str,
    extra: &[&str],
) -> (PathBuf, String, String) {
    let script = env.real_init_script_of(dir, init);
    let bb = Path::new(BUSYBOX);
    let (image, out) = env
        .mkimage_output(
            dir,
            &manifest(),
            Some(&env.fixtures().stage),
            &[
                (bb, "/bin/busybox"),
                (bb, "/bin/sh"),
                (&script, "/sbin/init"),
            ],
            compress,
            extra,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    (
        image,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kmi_fw(report: &Value) -> &Value {
    let m = report_modules(report, "kmi_fw");
    assert_eq!(m.len(), 1, "kmi_fw once in the report: {m:?}");
    assert_eq!(m[0]["state"], "loaded", "{}", m[0]);
    m[0]
}

/// A firmware directory under `dir` holding `files` (relative path, bytes).
fn firmware_dir(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let fw = dir.join("firmware");
    std::fs::create_dir_all(&fw).unwrap();
    for (rel, bytes) in files {
        let p = fw.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    fw
}

/// The image's `modules.firmware` says which module names the file.
fn assert_firmware_map(image: &Cpio, env: &Env) {
    let map = format!("lib/modules/{}/modules.firmware", env.kernel.release);
    let text = String::from_utf8_lossy(image.data(&map).unwrap_or_default()).into_owned();
    assert!(
        text.lines().any(|l| l == format!("kmi_fw {FW_NAME}")),
        "{map}: {text:?}"
    );
}

/// Boots and checks that kmi_fw got exactly `bytes` from the kernel, with
/// no failed request on the console nor a warning in the report.
fn boot_and_check_the_module_got(env: &Env, dir: &Path, image: &Path, bytes: &[u8]) {
    let b = boot(env.vm(dir, image));
    assert_real_init_ran(&b);
    let expected = format!(
        "kmi_fw: firmware {FW_NAME} size={} fnv1a={:08x}",
        bytes.len(),
        fnv1a(bytes)
    );
    assert!(
        b.console.contains(&expected),
        "no {expected:?} on the console; tail:\n{}",
        b.console.tail(40)
    );
    assert!(
        !b.console.contains("Direct firmware load for"),
        "{}",
        b.console.tail(40)
    );
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    let m = kmi_fw(&report);
    assert!(m["warnings"].as_array().is_some_and(Vec::is_empty), "{m}");
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn the_image_carries_the_firmware_and_the_module_gets_its_bytes() {
    let env = Env::get();
    let dir = env.scratch("firmware-plain");
    let bytes = firmware_bytes();
    let fw = firmware_dir(&dir, &[(FW_NAME, &bytes)]);
    let fw_arg = fw.to_str().unwrap();
    let (image, stdout, stderr) = build(
        env,
        &dir,
        &RealInitRoot::new(),
        "none",
        &["--firmware-dir", fw_arg],
    );
    assert!(
        stdout.contains(&format!(
            "firmware:     1 files, 4.9 KiB ({} bytes)",
            bytes.len()
        )),
        "{stdout}"
    );
    assert!(!stderr.contains("firmware"), "{stderr}");
    let cpio = Cpio::parse(&std::fs::read(&image).unwrap()).unwrap();
    assert_eq!(
        cpio.data(&format!("lib/firmware/{FW_NAME}")),
        Some(&bytes[..])
    );
    assert_firmware_map(&cpio, env);
    boot_and_check_the_module_got(env, &dir, &image, &bytes);
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn only_the_xz_variant_is_carried_recompressed_for_the_kernel_which_decompresses_it() {
    let env = Env::get();
    let dir = env.scratch("firmware-xz");
    let bytes = firmware_bytes();
    let fw = firmware_dir(&dir, &[(FW_NAME, &bytes)]);
    // Plain `xz` writes a CRC64 check, which the 6.1 kernel's decoder
    // refuses (error -22): the builder must re-compress it with CRC32.
    let plain = fw.join(FW_NAME);
    kmodinit_qemu::run_command(Command::new("xz").arg("-f").arg(&plain)).unwrap();
    assert!(!plain.exists());
    let xz = std::fs::read(fw.join(format!("{FW_NAME}.xz"))).unwrap();
    assert_eq!(xz[7] & 0x0f, 4, "the fixture file has CRC64");
    let (image, stdout, _) = build(
        env,
        &dir,
        &RealInitRoot::new(),
        "none",
        &["--firmware-dir", fw.to_str().unwrap()],
    );
    assert!(stdout.contains("firmware:     1 files"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "firmware {FW_NAME}.xz (kmi_fw): re-compressed with CRC32"
        )),
        "{stdout}"
    );
    let cpio = Cpio::parse(&std::fs::read(&image).unwrap()).unwrap();
    assert!(!cpio.has(&format!("lib/firmware/{FW_NAME}")));
    let stored = cpio
        .data(&format!("lib/firmware/{FW_NAME}.xz"))
        .unwrap_or_else(|| panic!("no .xz in the image: {:?}", cpio.paths()));
    assert_eq!(&stored[..6], b"\xFD7zXZ\0");
    assert_eq!(stored[7] & 0x0f, 1, "CRC32 in the image");
    assert_firmware_map(&cpio, env);
    boot_and_check_the_module_got(env, &dir, &image, &bytes);
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn a_missing_file_is_a_build_warning_and_a_warning_on_the_module_at_boot() {
    let env = Env::get();
    let dir = env.scratch("firmware-missing");
    let fw = firmware_dir(&dir, &[("kmodinit-test/other.bin", b"not it")]);
    let (image, stdout, stderr) = build(
        env,
        &dir,
        &RealInitRoot::new(),
        "none",
        &["--firmware-dir", fw.to_str().unwrap()],
    );
    assert!(
        stdout.contains("firmware:     0 files, 0 B (0 bytes)"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: module kmi_fw: firmware {FW_NAME} not found in {}",
            fw.display()
        )),
        "{stderr}"
    );
    let cpio = Cpio::parse(&std::fs::read(&image).unwrap()).unwrap();
    assert!(!cpio.paths().iter().any(|p| p.starts_with("lib/firmware/")));
    assert_firmware_map(&cpio, env);

    let b = boot(env.vm(&dir, &image));
    assert_real_init_ran(&b);
    assert!(
        b.console
            .contains(&format!("kmi_fw: firmware {FW_NAME} unavailable: -2")),
        "{}",
        b.console.tail(40)
    );
    let warning = format!(
        "firmware {FW_NAME} requested by (NULL device *): the kernel could not load it (error -2"
    );
    assert!(
        b.console.contains(&format!("kmi_fw: {warning}")),
        "no log line; tail:\n{}",
        b.console.tail(40)
    );
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    let m = kmi_fw(&report);
    let warnings: Vec<&str> = m["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(warnings.len(), 1, "{m}");
    assert!(warnings[0].starts_with(&warning), "{m}");
    // Attributed to the module, so not a note on the boot.
    assert!(
        !report["notes"].to_string().contains(FW_NAME),
        "{}",
        report["notes"]
    );
}

/// The length of the uncompressed newc archive at the start of `image`,
/// through its trailer (members are 4-byte aligned).
fn first_archive_len(image: &[u8]) -> usize {
    let hex = |at: usize| {
        usize::from_str_radix(std::str::from_utf8(&image[at..at + 8]).unwrap(), 16).unwrap()
    };
    let align = |n: usize| (n + 3) & !3;
    let mut pos = 0;
    loop {
        assert_eq!(&image[pos..pos + 6], b"070701", "newc header at {pos}");
        let (size, namesize) = (hex(pos + 54), hex(pos + 94));
        let name = &image[pos + 110..pos + 110 + namesize - 1];
        pos = align(align(pos + 110 + namesize) + size);
        if name == b"TRAILER!!!" {
            return pos;
        }
    }
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn early_microcode_is_an_uncompressed_first_archive_and_the_machine_boots_with_it() {
    let env = Env::get();
    let dir = env.scratch("firmware-microcode");
    // Debian's intel-microcode / amd64-microcode layout, made-up bytes.
    let fw = firmware_dir(
        &dir,
        &[
            ("intel-ucode/06-8e-0a", b"INTEL-2-"),
            ("intel-ucode/06-55-04", b"INTEL-1-"),
            ("amd-ucode/microcode_amd_fam17h.bin", b"AMD-17-"),
            ("amd-ucode/microcode_amd.bin", b"AMD-10-"),
            ("amd-ucode/microcode_amd.bin.asc", b"signature"),
        ],
    );
    // What the real init sees of the first archive in its root.
    let init = RealInitRoot::new().before_report(
        "for f in GenuineIntel AuthenticAMD; do \
         echo \"KMI-UCODE $f $(cat /kernel/x86/microcode/$f.bin)\"; done",
    );
    let (image, stdout, _) = build(
        env,
        &dir,
        &init,
        "xz",
        &["--firmware-dir", fw.to_str().unwrap(), "--microcode", "all"],
    );
    assert!(
        stdout.contains("microcode:")
            && stdout.contains("kernel/x86/microcode/GenuineIntel.bin (2 files, 16 bytes)"),
        "{stdout}"
    );
    let bytes = std::fs::read(&image).unwrap();
    let len = first_archive_len(&bytes);
    let early = Cpio::parse(&bytes[..len]).unwrap();
    assert_eq!(
        early.paths(),
        [
            "kernel",
            "kernel/x86",
            "kernel/x86/microcode",
            "kernel/x86/microcode/AuthenticAMD.bin",
            "kernel/x86/microcode/GenuineIntel.bin"
        ]
    );
    assert_eq!(
        early.data("kernel/x86/microcode/GenuineIntel.bin"),
        Some(&b"INTEL-1-INTEL-2-"[..])
    );
    assert_eq!(
        early.data("kernel/x86/microcode/AuthenticAMD.bin"),
        Some(&b"AMD-10-AMD-17-"[..])
    );
    assert!(
        bytes[len..].starts_with(b"\xFD7zXZ\0"),
        "the compressed image follows the early archive directly"
    );

    let b = boot(env.vm(&dir, &image));
    assert_real_init_ran(&b);
    assert!(
        !b.console.contains("Initramfs unpacking failed"),
        "{}",
        b.console.tail(40)
    );
    for line in [
        "KMI-UCODE GenuineIntel INTEL-1-INTEL-2-",
        "KMI-UCODE AuthenticAMD AMD-10-AMD-17-",
    ] {
        assert!(
            b.console.contains(line),
            "no {line:?}; tail:\n{}",
            b.console.tail(40)
        );
    }
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    kmi_fw(&report);
}
