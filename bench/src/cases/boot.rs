//! Cases 3 and 5: boots to the real init on an ext4 root disk. Case 3
//! compares kmodinit with the busybox script and Debian's initramfs-tools,
//! split into the kernel's part and the initramfs's; case 5 compares
//! coldplug with explicit chains. Split from `cases.rs` (the load-phase
//! cases), which holds the helpers both use.

use super::*;

/// A fixed UUID so the kernel command line and manifests can name the root.
pub const ROOT_UUID: &str = "6b6d6f64-696e-6974-2d62-656e63680001";

/// The root disk: the harness's real init (prints the uptime it starts at,
/// kmodinit's report, /proc/modules, then powers off) on ext4 with our UUID.
pub(crate) fn root_disk(work: &Path) -> Result<PathBuf, String> {
    root_disk_with(work, Path::new(kmodinit_qemu::rootfs::HOST_BUSYBOX))
}

/// [`root_disk`] with another architecture's `busybox`.
pub(crate) fn root_disk_with(work: &Path, busybox: &Path) -> Result<PathBuf, String> {
    let dir = work.join("rootfs");
    let _ = std::fs::remove_dir_all(&dir);
    kmodinit_qemu::RealInitRoot::new()
        .busybox(busybox)
        .populate(&dir)
        .map_err(|e| e.to_string())?;
    let img = work.join("root.ext4");
    let mut ext4 = kmodinit_qemu::Ext4Image::new(64).map_err(|e| e.to_string())?;
    ext4.uuid = ROOT_UUID.to_string();
    ext4.build(&dir, &img).map_err(|e| e.to_string())?;
    Ok(img)
}

/// The modules a virtio ext4 root needs, as chains.
pub(crate) fn root_manifest() -> serde_json::Value {
    serde_json::json!({
        "version": 1,
        "chains": [
            {"name": "storage", "modules": ["virtio_pci", "virtio_blk"], "required": true},
            {"name": "fs", "modules": ["ext4"], "required": true}
        ],
        "root": {"device": format!("UUID={ROOT_UUID}"), "fstype": "ext4", "flags": "ro", "wait_ms": 20000},
        "init": {"path": "/sbin/init", "args": []},
        "on_failure": "poweroff"
    })
}

/// A minimal busybox `/init` that insmods `files` (relative to the module
/// directory, dependencies first) in order and switch_roots, the smallest
/// thing that can boot this root.
pub(crate) fn insmod_script(release: &str, files: &[&str]) -> String {
    // /proc/uptime first: the kernel's part of the boot ends here.
    let mut s = String::from(
        "#!/bin/sh\nB=/bin/busybox\n$B mount -t proc proc /proc\nread t rest < /proc/uptime\n\
         echo \"KMB init_start=$t\"\n$B mount -t sysfs sysfs /sys\n\
         $B mount -t devtmpfs devtmpfs /dev\n",
    );
    for rel in files {
        let _ = writeln!(s, "$B insmod /lib/modules/{release}/{rel}");
    }
    s.push_str(
        "i=0\nwhile [ ! -b /dev/vda ] && [ $i -lt 2000 ]; do $B usleep 10000; i=$((i+1)); done\n\
         $B mount -t ext4 -o ro /dev/vda /newroot\n\
         for d in dev proc sys run; do $B mount --move /$d /newroot/$d 2>/dev/null; done\n\
         exec $B switch_root /newroot /sbin/init\n",
    );
    s
}

/// When `/init` started (s of uptime): kmodinit's report
/// `boottime_init_start`, else the busybox script's first `/proc/uptime`.
pub(crate) fn init_start_s(console: &kmodinit_qemu::Console) -> Option<f64> {
    console
        .report()
        .ok()
        .and_then(|v| v.get("boottime_init_start")?.as_f64())
        .or_else(|| kmb_fields(console.text()).get("init_start")?.parse().ok())
}

/// Case 3: uptime when the real init starts, for three initramfs images.
pub fn boot_case(env: &Env) -> Result<CaseOutput, String> {
    let work = env.work.join("boot");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let disk = root_disk(&work)?;
    let manifest = root_manifest();
    let spec = Spec::load(&manifest, &Path::new("/lib/modules").join(&env.release))?;
    let files = spec.module_files();

    let mut bb = Image::busybox()?;
    bb.add_modules(Path::new("/"), &env.release, &files, &work)?;
    bb.add_file("/init", 0o755, insmod_script(&env.release, &files));
    let bb_path = work.join("busybox-insmod.img");
    let bb_size = bb.write(&bb_path, "zstd")?;

    let km_path = work.join("kmodinit.img");
    let km_size = mkimage(env, &manifest, Path::new("/"), &[], "zstd", &km_path);
    let deb_path = PathBuf::from(format!("/boot/initrd.img-{}", env.release));
    let deb_size = std::fs::metadata(&deb_path).map(|m| m.len()).ok();

    let variants: Vec<(&str, PathBuf, String, Option<u64>)> = vec![
        (
            "kmodinit",
            km_path.clone(),
            APPEND.to_string(),
            km_size.as_ref().ok().copied(),
        ),
        (
            "kmodinit, kmodinit.jobs=1",
            km_path.clone(),
            format!("{APPEND} kmodinit.jobs=1"),
            km_size.as_ref().ok().copied(),
        ),
        (
            "Debian initramfs-tools",
            deb_path.clone(),
            format!("root=UUID={ROOT_UUID} ro {APPEND}"),
            deb_size,
        ),
        (
            "busybox sh, insmod in order",
            bb_path.clone(),
            APPEND.to_string(),
            Some(bb_size),
        ),
    ];
    let mut series: Vec<Series> = vec![Series::default(); variants.len()];
    // The kernel's part (to /init's first instruction: kmodinit's report
    // `boottime_init_start`, the busybox /init's first /proc/uptime) and the
    // initramfs's part (from there to the real init's start).
    let mut kernel_part: Vec<Series> = vec![Series::default(); variants.len()];
    let mut initramfs_part: Vec<Series> = vec![Series::default(); variants.len()];
    // The time around the load phase, from every boot with a kmodinit
    // report (the kmodinit variants).
    let mut around: Vec<Windows> = Vec::new();
    if let Err(e) = &km_size {
        series[0].note(format!("kmodinit image not built: {e}"));
    }
    for run in 0..env.runs {
        eprintln!("bench boot: run {}/{}", run + 1, env.runs);
        for (i, (name, img, append, size)) in variants.iter().enumerate() {
            if size.is_none() {
                continue;
            }
            let boot = run_vm(env, img, append, std::slice::from_ref(&disk), &work)?;
            if let Some(r) = boot
                .console
                .report()
                .ok()
                .and_then(|v| report::from_value(v).ok())
            {
                around.push(windows::windows(
                    &r,
                    boot.console.run_init(),
                    boot.console.real_init().map(|i| i.uptime_s),
                ));
            }
            if let (Some(k), Some(r)) = (init_start_s(&boot.console), boot.console.real_init()) {
                kernel_part[i].push(k);
                initramfs_part[i].push(r.uptime_s - k);
            }
            match boot.console.real_init() {
                Some(r) => series[i].push(r.uptime_s),
                None => {
                    boot.record_failure(
                        &mut series[i],
                        "real init never ran",
                        &work.join(format!("failed-{i}-console.log")),
                    );
                    eprintln!("bench boot: {name}: real init not reached");
                }
            }
        }
    }
    let mut out = CaseOutput::default();
    let km_med = series[0].median();
    let md = &mut out.markdown;
    let _ = writeln!(md, "| initramfs | real init starts at (median uptime, s) | runs min–max (s) | ratio to kmodinit | kernel: to /init (median s) | initramfs: /init to real init (median s) | image size (bytes) | notes |");
    let _ = writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for (i, (name, img, _, size)) in variants.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {name} (`{}`) | {} | {} | {} | {} | {} | {} | {} |",
            img.file_name()
                .map_or(String::new(), |f| f.to_string_lossy().into_owned()),
            secs(series[i].median()),
            series[i].spread(),
            ratio(series[i].median(), km_med),
            secs(kernel_part[i].median()),
            secs(initramfs_part[i].median()),
            size.map_or("–".into(), |s| s.to_string()),
            series[i].notes.join("; ")
        );
        out.summary.push((
            format!("boot to real init: {name} (median s)"),
            secs(series[i].median()),
        ));
        out.summary.push((
            format!("boot: {name}: kernel part / initramfs part (median s)"),
            format!(
                "{} / {}",
                secs(kernel_part[i].median()),
                secs(initramfs_part[i].median())
            ),
        ));
        out.summary.push((
            format!("image size: {name} (bytes)"),
            size.map_or("–".into(), |s| s.to_string()),
        ));
    }
    let _ = writeln!(
        md,
        "\nModules: {} (closure of virtio_pci, virtio_blk, ext4 with softdeps). kmodinit and busybox images zstd-compressed; the busybox one carries a {}-byte static busybox. Debian's image is the installed `/boot/initrd.img-{}` (zstd, MODULES=most, udev); it has no hook for the kernel/initramfs split (–).",
        spec.inserts()
            .map(|(m, _)| m.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        std::fs::metadata(crate::stage::BUSYBOX).map(|m| m.len()).unwrap_or(0),
        env.release
    );
    out.markdown.push_str(&windows::markdown(
        &around,
        "the two kmodinit variants, with switch_root to the ext4 root",
        "`KMI-REALINIT` uptime",
    ));
    out.summary.extend(windows::summary("boot", &around));
    Ok(out)
}

/// The root manifest with coldplug instead of the storage chain: the only
/// chain is `ext4`, virtio_pci and virtio_blk come by modalias.
pub(crate) fn coldplug_manifest() -> serde_json::Value {
    let mut m = root_manifest();
    m["chains"] = serde_json::json!([{"name": "fs", "modules": ["ext4"], "required": true}]);
    m["coldplug"] = serde_json::json!({"enabled": true});
    m
}

/// Case 5: boot to the real init with coldplug (the disk's drivers found by
/// modalias: the walk, then a uevent) vs the same modules named in chains.
pub fn coldplug_case(env: &Env) -> Result<CaseOutput, String> {
    let work = env.work.join("coldplug");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let disk = root_disk(&work)?;
    let chains_path = work.join("chains.img");
    let chains_size = mkimage(
        env,
        &root_manifest(),
        Path::new("/"),
        &[],
        "zstd",
        &chains_path,
    )?;
    let cold_path = work.join("coldplug.img");
    let cold_size = mkimage_with(
        env,
        &coldplug_manifest(),
        Path::new("/"),
        &[],
        "zstd",
        &cold_path,
        &[
            "--coldplug-modules",
            "kernel/drivers/virtio",
            "kernel/drivers/block/virtio_blk.ko",
        ],
    )?;
    let variants = [
        (
            "explicit chains (virtio_pci, virtio_blk; ext4)",
            &chains_path,
            chains_size,
        ),
        (
            "coldplug (chain ext4; virtio by modalias)",
            &cold_path,
            cold_size,
        ),
    ];
    let mut real_init: Vec<Series> = vec![Series::default(); variants.len()];
    let mut load: Vec<Series> = vec![Series::default(); variants.len()];
    let mut found: Vec<BTreeSet<String>> = vec![BTreeSet::new(); variants.len()];
    for run in 0..env.runs {
        eprintln!("bench coldplug: run {}/{}", run + 1, env.runs);
        for (i, (name, img, _)) in variants.iter().enumerate() {
            let boot = run_vm(env, img, APPEND, std::slice::from_ref(&disk), &work)?;
            match boot.console.real_init() {
                Some(r) => real_init[i].push(r.uptime_s),
                None => {
                    boot.record_failure(
                        &mut real_init[i],
                        "real init never ran",
                        &work.join(format!("failed-{i}-console.log")),
                    );
                    eprintln!("bench coldplug: {name}: real init not reached");
                    continue;
                }
            }
            if let Ok(r) = boot.console.report() {
                let (a, b) = (
                    r["load"]["boottime_load_start"].as_f64(),
                    r["load"]["boottime_load_end"].as_f64(),
                );
                if let (Some(a), Some(b)) = (a, b) {
                    load[i].push(b - a);
                }
                for m in r["load"]["modules"].as_array().into_iter().flatten() {
                    if let Some(why) = m["reason"].as_str().filter(|w| w.starts_with("modalias:")) {
                        found[i].insert(format!("{} ({why})", m["name"].as_str().unwrap_or("?")));
                    }
                }
            }
        }
    }
    let mut out = CaseOutput::default();
    let base = real_init[0].median();
    let md = &mut out.markdown;
    let _ = writeln!(md, "| image | real init starts at (median uptime, s) | runs min–max (s) | ratio to chains | load phase (median s) | image size (bytes) | notes |");
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for (i, (name, _, size)) in variants.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {size} | {} |",
            secs(real_init[i].median()),
            real_init[i].spread(),
            ratio(real_init[i].median(), base),
            secs(load[i].median()),
            real_init[i].notes.join("; ")
        );
        out.summary.push((
            format!("boot to real init: {name} (median s)"),
            secs(real_init[i].median()),
        ));
    }
    let _ = writeln!(
        md,
        "\nFound by modalias: {}. The coldplug load phase includes the walk of /sys, the 250 ms settle after the last device, and virtio_blk waiting for virtio_pci's bind; the explicit image loads both from the start.",
        found[1].iter().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_coldplug_manifest_names_only_ext4() {
        let m = coldplug_manifest();
        assert_eq!(m["chains"].as_array().unwrap().len(), 1);
        assert_eq!(m["chains"][0]["modules"][0], "ext4");
        assert_eq!(m["coldplug"]["enabled"], true);
        assert_eq!(m["root"], root_manifest()["root"]);
    }

    #[test]
    fn insmod_script_loads_in_the_given_order_then_switches_root() {
        let s = insmod_script("6.1", &["kernel/a.ko", "kernel/b.ko"]);
        let a = s.find("insmod /lib/modules/6.1/kernel/a.ko").unwrap();
        let b = s.find("insmod /lib/modules/6.1/kernel/b.ko").unwrap();
        assert!(a < b);
        assert!(
            s.find("KMB init_start=").unwrap() < a,
            "uptime printed first"
        );
        assert!(s.ends_with("exec $B switch_root /newroot /sbin/init\n"));
    }
}
