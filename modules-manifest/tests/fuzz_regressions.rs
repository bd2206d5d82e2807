//! Every input the fuzzers (`fuzz/`, issue 8) ever crashed on, replayed in the
//! normal test suite: `fuzz/regressions/<target>/<file>`. Files named
//! `open-*` reproduce a bug that is not fixed yet: `regressions(target,
//! false)` skips them (read them with `true` in an `#[ignore]`d test), and
//! they lose the prefix when the fix lands.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::{Path, PathBuf};

use modules_manifest::{DepIndex, KernelCmdline, Manifest, ModuleName};

fn regressions(target: &str, open: bool) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with('.') && name.starts_with("open-") == open
        })
        .collect();
    files.sort();
    files
}

#[path = "support/kernel_next_arg.rs"]
mod kernel_next_arg;

use kernel_next_arg::{expected_params, split};

type Arg = (Vec<u8>, Option<Vec<u8>>);

/// The kernel's split of a parameter string, owned.
fn kernel_split(line: &[u8]) -> Vec<Arg> {
    split(line)
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
        .collect()
}

/// What the command line gives module `m` per the kernel's own splitting,
/// and what kmodinit will hand to `init_module`, split the same way.
fn cmdline_params(line: &str) -> Vec<(ModuleName, Arg, Vec<Arg>)> {
    let c = KernelCmdline::parse(line);
    let want = expected_params(line.as_bytes(), &c.warnings, |m| ModuleName::new(m).ok())
        .into_iter()
        .map(|(m, k, v)| (m, (k, v)));
    let mut out = Vec::new();
    let mut next: std::collections::BTreeMap<ModuleName, usize> = Default::default();
    for (m, arg) in want {
        let i = next.entry(m.clone()).or_default();
        let given = c
            .module_params
            .get(&m)
            .and_then(|v| v.get(*i))
            .map(|p| kernel_split(p.as_bytes()))
            .unwrap_or_default();
        *i += 1;
        out.push((m, arg, given));
    }
    // Nothing beyond what the kernel split.
    for (m, ps) in &c.module_params {
        assert_eq!(
            Some(&ps.len()),
            next.get(m),
            "{line:?}: module {m} gets {ps:?}"
        );
    }
    out
}

/// A command-line module parameter reaches the module exactly as the kernel
/// would have given it to a built-in module: one argument, same name, same
/// value.
fn check_cmdline(file: &Path) {
    let bytes = std::fs::read(file).unwrap();
    let line = String::from_utf8_lossy(&bytes);
    for (m, want, given) in cmdline_params(&line) {
        assert_eq!(
            given,
            vec![want.clone()],
            "{}: module {m}: the kernel reads {:?} back as {:?}",
            file.display(),
            String::from_utf8_lossy(&want.0),
            given
        );
    }
}

#[test]
fn fixed_fuzz_findings_stay_fixed() {
    // cmdline: see cmdline_params_reach_the_module_as_the_kernel_split_them.
    for f in regressions("manifest", false) {
        let _ = Manifest::from_json(&std::fs::read(&f).unwrap());
    }
    // modprobe_d: the first finding was the target's own check (a vertical
    // tab is not a separator, for this parser as for kmod's); the words
    // it keeps never hold a blank it splits on.
    for f in regressions("modprobe_d", false) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        let mut c = modules_manifest::modprobe_d::ModprobeConfig::default();
        let _ = c.parse_file(&text, "f.conf");
        for (s, _) in &c.settings {
            if let modules_manifest::modprobe_d::Setting::Alias { pattern, .. } = s {
                assert!(
                    !pattern.contains(|c: char| c.is_ascii_whitespace()),
                    "{pattern:?}"
                );
            }
        }
    }
    for (target, which) in [
        ("depmod_dep", 0),
        ("depmod_builtin", 1),
        ("depmod_softdep", 2),
        ("depmod_alias", 3),
    ] {
        for f in regressions(target, false) {
            let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
            let mut files = ["", "", "", ""];
            files[which] = &text;
            let _ = DepIndex::parse(files[0], files[1], files[2], files[3]);
        }
    }
}

#[test]
fn the_kernel_reference_splits_like_the_kernel() {
    // Cases from the kernel's own behaviour (lib/cmdline.c next_arg).
    let s = |t: &str| -> Vec<(String, Option<String>)> {
        kernel_split(t.as_bytes())
            .into_iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k).unwrap(),
                    v.map(|v| String::from_utf8(v).unwrap()),
                )
            })
            .collect()
    };
    let kv = |k: &str, v: Option<&str>| (k.to_owned(), v.map(str::to_owned));
    assert_eq!(
        s(r#"a.b="x y" ro"#),
        vec![kv("a.b", Some("x y")), kv("ro", None)]
    );
    assert_eq!(s(r#""a.b=x y""#), vec![kv("a.b", Some("x y"))]);
    assert_eq!(
        s(r#"b="x"y z""#),
        vec![kv("b", Some("x\"y")), kv("z\"", None)]
    );
    assert_eq!(s("  quiet\n"), vec![kv("quiet", None)]);
}

/// The cmdline findings (a value holding a double quote, a quote or blank
/// inside the parameter name, a value holding byte 0xA0): each parameter
/// reaches the module as the one argument the kernel split from the line,
/// or is dropped with a warning naming it.
#[test]
fn cmdline_params_reach_the_module_as_the_kernel_split_them() {
    let files = regressions("cmdline", false);
    assert!(files.len() >= 6, "{files:?}");
    for f in files {
        check_cmdline(&f);
    }
}

/// fuzz/regressions/plan/crash-f42a9058 (the `plan` target's input), as
/// a plain test: a chain names an alias whose only module is blacklisted on
/// the kernel command line. The planner must answer (a plan with the module
/// `Blacklisted`, or an error naming it), not panic: before the fix,
/// `choice_text` sliced `usable[1..]` of an empty candidate list.
#[test]
fn a_chain_alias_whose_only_module_is_blacklisted_does_not_panic() {
    use std::collections::BTreeSet;

    use modules_manifest::{plan, PlanInput};

    let index = DepIndex::parse("kernel/ma.ko:\n", "", "", "alias crypto-x ma\n").unwrap();
    let manifest = Manifest::from_json(
        br#"{"version": 1, "chains": [{"name": "c0", "modules": ["crypto-x"]}]}"#,
    )
    .unwrap();
    for line in ["modprobe.blacklist=ma", ""] {
        let cmdline = KernelCmdline::parse(line);
        let loaded = BTreeSet::new();
        let input = PlanInput {
            manifest: &manifest,
            index: &index,
            cmdline: &cmdline,
            loaded: &loaded,
        };
        let result = std::panic::catch_unwind(|| plan(input));
        let outcome = result.unwrap_or_else(|_| panic!("plan() panicked with cmdline {line:?}"));
        match outcome {
            Ok(p) => assert_eq!(p.nodes[0].name, ModuleName::new("ma").unwrap()),
            Err(e) => assert!(e.to_string().contains("ma"), "{e}"),
        }
    }
}
