//! Case 6: the boot of case 3 on arm64 (QEMU's `virt` board, TCG, Debian's
//! arm64 kernel of the same release from `make deps`): kmodinit
//! (`build/arm64/init`) against the busybox script insmodding the same
//! modules in the same run, the initramfs part split off as in case 3, and
//! the sizes of both arm64 builds.

use super::*;
use kmodinit_qemu::Arch;

/// `build/arm64/…`: the workspace's arm64 build directory.
fn arm64_build(file: &str) -> PathBuf {
    Path::new(Arch::Arm64.build_dir()).join(file)
}

/// Size of an arm64 build, or what to run to get it.
fn build_size(file: &str, target: &str) -> String {
    std::fs::metadata(arm64_build(file)).map_or_else(
        |_| format!("– (`make {target} ARCH=arm64`)"),
        |m| m.len().to_string(),
    )
}

pub fn arm64_case(env: &Env) -> Result<CaseOutput, String> {
    let kernel = Arch::Arm64
        .kernel(Path::new("."))
        .map_err(|e| e.to_string())?;
    let modules_root = std::fs::canonicalize(kernel.modules_root().ok_or("no modules root")?)
        .map_err(|e| e.to_string())?;
    let init = std::fs::canonicalize(arm64_build("init")).map_err(|e| {
        format!(
            "{}: {e} (make init ARCH=arm64)",
            arm64_build("init").display()
        )
    })?;
    let env = Env {
        release: kernel.release.clone(),
        kernel: kernel.vmlinuz.clone(),
        init_bin: init,
        arch: Arch::Arm64,
        ..env.clone()
    };
    let work = env.work.join("arm64");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let busybox = Arch::Arm64.busybox(Path::new("."));
    let disk = root_disk_with(&work, &busybox)?;
    let manifest = root_manifest();
    let spec = Spec::load(&manifest, &kernel.modules_dir)?;
    let files = spec.module_files();

    let mut bb = Image::busybox_from(&busybox)?;
    bb.add_modules(&modules_root, &env.release, &files, &work)?;
    bb.add_file("/init", 0o755, boot::insmod_script(&env.release, &files));
    let bb_path = work.join("busybox-insmod.img");
    let bb_size = bb.write(&bb_path, "zstd")?;
    let km_path = work.join("kmodinit.img");
    let km_size = mkimage(&env, &manifest, &modules_root, &[], "zstd", &km_path)?;

    let variants = [
        ("kmodinit", &km_path, km_size),
        ("busybox sh, insmod in order", &bb_path, bb_size),
    ];
    let n = variants.len();
    let (mut real_init, mut initramfs_part) =
        (vec![Series::default(); n], vec![Series::default(); n]);
    for run in 0..env.runs {
        eprintln!("bench arm64: run {}/{}", run + 1, env.runs);
        for (i, (name, img, _)) in variants.iter().enumerate() {
            let boot = run_vm(&env, img, APPEND, std::slice::from_ref(&disk), &work)?;
            let Some(r) = boot.console.real_init() else {
                boot.record_failure(
                    &mut real_init[i],
                    "real init never ran",
                    &work.join(format!("failed-{i}-console.log")),
                );
                eprintln!("bench arm64: {name}: real init not reached");
                continue;
            };
            real_init[i].push(r.uptime_s);
            if let Some(k) = boot::init_start_s(&boot.console) {
                initramfs_part[i].push(r.uptime_s - k);
            }
        }
    }
    let mut out = CaseOutput::default();
    let md = &mut out.markdown;
    let _ = writeln!(md, "| initramfs | real init starts at (median uptime, s) | runs min–max (s) | initramfs: /init to real init (median s) | ratio to kmodinit | image size (bytes) | notes |");
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    let km_part = initramfs_part[0].median();
    for (i, (name, _, size)) in variants.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {size} | {} |",
            secs(real_init[i].median()),
            real_init[i].spread(),
            secs(initramfs_part[i].median()),
            ratio(initramfs_part[i].median(), km_part),
            real_init[i].notes.join("; ")
        );
    }
    let (init, tiny) = (
        build_size("init", "init"),
        build_size("init-tiny", "init-tiny"),
    );
    let _ = writeln!(
        md,
        "\nKernel {} (`-M virt -cpu cortex-a72`), modules: {}. `build/arm64/init` {init} bytes, `build/arm64/init-tiny` {tiny} bytes.",
        env.release,
        spec.inserts().map(|(m, _)| m.as_str()).collect::<Vec<_>>().join(", ")
    );
    out.summary.push((
        "arm64 boot to real init: kmodinit / busybox insmod (median s)".into(),
        format!(
            "{} / {}",
            secs(real_init[0].median()),
            secs(real_init[1].median())
        ),
    ));
    out.summary.push((
        "arm64 initramfs part: kmodinit / busybox insmod (median s)".into(),
        format!(
            "{} / {} ({})",
            secs(km_part),
            secs(initramfs_part[1].median()),
            ratio(km_part, initramfs_part[1].median())
        ),
    ));
    out.summary.push((
        "arm64 /init size: build/arm64/init / init-tiny (bytes)".into(),
        format!("{init} / {tiny}"),
    ));
    Ok(out)
}
