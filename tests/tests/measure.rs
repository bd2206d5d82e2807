//! Measured loading and the module lock on the real kernel, with Debian's
//! `swtpm` attached as `tpm-tis` (a fresh TPM per boot; x86-64 only):
//! - two boots of one image and command line leave the same value in the
//!   PCR (read by the real init from `/sys/class/tpm/tpm0/pcr-sha256/N`),
//!   equal to `kmodinit measure`'s prediction from the image and to the
//!   replay of the report's events; another module parameter on the
//!   command line gives another value (predicted too);
//! - no TPM with `"required": true` stops the boot cleanly (`on_failure`);
//! - `lock_modules` leaves the real init unable to load a module
//!   (`modules_disabled` is 1, `insmod` fails with EPERM).

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;
use std::process::Command;

use kmodinit_e2e::{
    assert_init_never_died, assert_real_init_ran, boot, report_state, Env, FATAL_BANNER,
};
use kmodinit_qemu::{Boot, RealInitRoot, SwTpm};
use serde_json::{json, Value};
use verifier::*;

/// What the real init prints of the PCR (the kernel's sysfs, upper-case
/// hex) and of the lock.
const PCR_LINE: &str = "KMI-PCR=";
const LOCK_LINE: &str = "KMI-MODULES-DISABLED=";
const INSMOD_LINE: &str = "KMI-INSMOD=";

/// The PCR the tests measure into (the manifest's `measure.pcr`).
const PCR: u32 = 9;

/// The real init's extra lines: wait (at most 20 s) for the loader to end
/// (its `modules_locked` or last extend in the report), then print the PCR
/// and the lock.
fn observe() -> String {
    format!(
        r#"i=0
while ! grep -q '"final": "' /run/kmodinit/report.json 2>/dev/null && [ $i -lt 40 ]; do sleep 0.5; i=$((i+1)); done
echo "{PCR_LINE}$(cat /sys/class/tpm/tpm0/pcr-sha256/{PCR} 2>&1)"
"#
    )
}

fn manifest(required: bool) -> Value {
    json!({
        "version": 1,
        "chains": [
            {"name": "root", "modules": ["kmi_c", {"name": "kmi_d", "params": "tag=dee"}], "required": true},
            {"name": "other", "modules": ["kmi_e"]}
        ],
        "measure": {"pcr": PCR, "required": required},
        "on_failure": "poweroff"
    })
}

/// A boot of `image` with a fresh swtpm (or none), the extra command line
/// `append`; the boot's full kernel command line with it.
fn boot_with(
    env: &Env,
    dir: &Path,
    image: &Path,
    append: &str,
    tpm: bool,
    tag: &str,
) -> (Boot, String) {
    let sub = dir.join(tag);
    std::fs::create_dir_all(&sub).unwrap();
    let swtpm =
        tpm.then(|| SwTpm::start(&sub).unwrap_or_else(|e| panic!("swtpm (make deps): {e}")));
    let mut vm = env
        .vm(&sub, image)
        .append(append)
        .append("kmodinit.helper_linger=0");
    if let Some(t) = &swtpm {
        vm = vm.qemu_extra(t.qemu_args());
    }
    let cmdline = vm.command_line();
    let b = boot(vm);
    drop(swtpm);
    (b, cmdline)
}

/// The PCR as the kernel showed it to the real init, lower-case hex.
fn pcr_seen(b: &Boot) -> String {
    let line = b
        .console
        .line_from(PCR_LINE)
        .unwrap_or_else(|| panic!("no {PCR_LINE} line; tail:\n{}", b.console.tail(30)));
    let v = line[line.find(PCR_LINE).unwrap() + PCR_LINE.len()..]
        .trim()
        .to_lowercase();
    assert_eq!(v.len(), 64, "not a SHA-256 PCR value: {line}");
    v
}

/// The report's `measure` replayed: SHA-256(PCR || digest) from `initial`.
fn replay(measure: &Value) -> String {
    let mut v = unhex(measure["initial"].as_str().unwrap());
    for e in measure["events"].as_array().unwrap() {
        let mut cat = v.clone();
        cat.extend(unhex(e["digest"].as_str().unwrap()));
        v = sha256(&cat);
    }
    hex(&v)
}

/// `kmodinit measure --json` on the image and the boot's command line.
fn predict(env: &Env, image: &Path, cmdline: &str, initial: &str) -> Value {
    let tool = &env.host_tool;
    let out = Command::new(tool)
        .args(["measure", "--json", "--image"])
        .arg(image)
        .args(["--cmdline", cmdline, "--initial", initial])
        .output()
        .unwrap_or_else(|e| panic!("{} (make host): {e}", tool.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn the_same_image_gives_the_same_pcr_as_predicted_and_a_changed_param_another() {
    let env = Env::get();
    let dir = env.scratch("measure-pcr");
    let init = RealInitRoot::new().before_report(observe());
    let image = env.fixture_image_with(&dir, &manifest(true), &init);
    let mut values = Vec::new();
    for (tag, append) in [
        ("one", "kmi_a.tag=one"),
        ("two", "kmi_a.tag=one"),
        ("other", "kmi_a.tag=other"),
    ] {
        let (b, cmdline) = boot_with(env, &dir, &image, append, true, tag);
        assert_real_init_ran(&b);
        let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
        for m in ["kmi_base", "kmi_a", "kmi_b", "kmi_c", "kmi_d", "kmi_e"] {
            assert_eq!(report_state(&report, m).as_deref(), Some("loaded"), "{m}");
        }
        let measure = &report["measure"];
        assert_eq!(measure["pcr"], PCR, "{measure}");
        assert_eq!(measure["bank"], "sha256");
        let seen = pcr_seen(&b);
        assert_eq!(
            measure["final"].as_str(),
            Some(seen.as_str()),
            "report's final against sysfs"
        );
        assert_eq!(replay(measure), seen, "the report's events replayed");
        let whats: Vec<&str> = measure["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["what"].as_str().unwrap())
            .collect();
        assert_eq!(whats[0], "manifest");
        assert!(whats[1].starts_with("cmdline "), "{whats:?}");
        // Dependencies before their dependents, each module once.
        let modules: Vec<&str> = whats
            .iter()
            .filter_map(|w| w.strip_prefix("module "))
            .collect();
        let pos = |m: &str| {
            modules
                .iter()
                .position(|x| *x == m)
                .unwrap_or_else(|| panic!("{m} not measured: {whats:?}"))
        };
        assert!(
            pos("kmi_base") < pos("kmi_a")
                && pos("kmi_a") < pos("kmi_c")
                && pos("kmi_b") < pos("kmi_c")
        );
        assert!(whats.contains(&"params kmi_d: tag=dee"), "{whats:?}");
        let predicted = predict(env, &image, &cmdline, measure["initial"].as_str().unwrap());
        assert_eq!(
            predicted["final"].as_str(),
            Some(seen.as_str()),
            "host prediction against the TPM"
        );
        assert_eq!(predicted["events"], measure["events"]);
        values.push(seen);
    }
    assert_eq!(
        values[0], values[1],
        "two boots of one image and command line"
    );
    assert_ne!(
        values[1], values[2],
        "another kmi_a.tag gives another value"
    );
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn no_tpm_with_required_measuring_stops_the_boot() {
    let env = Env::get();
    let dir = env.scratch("measure-no-tpm");
    let image = env.fixture_image(&dir, &manifest(true));
    let (b, _) = boot_with(env, &dir, &image, "", false, "boot");
    assert_init_never_died(&b);
    assert!(
        b.console.contains(FATAL_BANNER),
        "no fatal error; tail:\n{}",
        b.console.tail(40)
    );
    assert!(
        b.console
            .contains("measured loading is required, and no TPM"),
        "tail:\n{}",
        b.console.tail(40)
    );
    assert!(b.console.real_init().is_none(), "the real init ran");
    assert!(
        b.powered_off(),
        "on_failure poweroff; tail:\n{}",
        b.console.tail(20)
    );
    assert!(
        !b.console.contains("kmodinit: loaded kmi_"),
        "a module loaded unmeasured"
    );
}

#[test]
#[ignore = "boots QEMU: run by make test-e2e"]
fn lock_modules_leaves_the_real_init_unable_to_load_a_module() {
    let env = Env::get();
    let dir = env.scratch("measure-lock");
    let m = json!({
        "version": 1,
        "chains": [{"name": "root", "modules": ["kmi_c"], "required": true}],
        "lock_modules": true,
        "on_failure": "poweroff"
    });
    let init = RealInitRoot::new().before_report(format!(
        r#"i=0
while [ "$(cat /proc/sys/kernel/modules_disabled)" != 1 ] && [ $i -lt 40 ]; do sleep 0.5; i=$((i+1)); done
while ! grep -q '"modules_locked"' /run/kmodinit/report.json && [ $i -lt 40 ]; do sleep 0.5; i=$((i+1)); done
echo "{LOCK_LINE}$(cat /proc/sys/kernel/modules_disabled)"
echo "{INSMOD_LINE}$(insmod $(find /lib/modules -name kmi_c.ko | head -n 1) 2>&1; echo " status=$?")"
"#
    ));
    let image = env.fixture_image_with(&dir, &m, &init);
    let (b, _) = boot_with(env, &dir, &image, "", false, "boot");
    assert_real_init_ran(&b);
    let lock = b
        .console
        .line_from(LOCK_LINE)
        .unwrap_or_else(|| panic!("tail:\n{}", b.console.tail(30)));
    assert!(
        lock.trim_end().ends_with(&format!("{LOCK_LINE}1")),
        "{lock}"
    );
    let insmod = b.console.line_from(INSMOD_LINE).unwrap();
    assert!(insmod.contains("Operation not permitted"), "{insmod}");
    assert!(!insmod.contains("status=0"), "{insmod}");
    let report = b.console.report().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report_state(&report, "kmi_c").as_deref(), Some("loaded"));
    let t = report["modules_locked"]["t"]
        .as_f64()
        .unwrap_or_else(|| panic!("{}", report["modules_locked"]));
    assert!(
        t >= report["boottime_load_end"].as_f64().unwrap(),
        "locked before the load ended"
    );
    assert!(
        b.console.contains("module loading locked"),
        "tail:\n{}",
        b.console.tail(30)
    );
}

/// SHA-256 and hex for the replay: the test reads the report as a
/// verifier would, with its own code rather than kmodinit's.
mod verifier {
    pub fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    pub fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    /// coreutils' `sha256sum` on `data`.
    pub fn sha256(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(data).unwrap();
        let out = child.wait_with_output().unwrap();
        unhex(&String::from_utf8_lossy(&out.stdout)[..64])
    }
}
