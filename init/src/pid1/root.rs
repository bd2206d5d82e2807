//! Step 5: hand the machine to the real root (wait for the device, mount
//! it, pick the init in it, move the API mounts, free the initramfs, enter
//! it) or stay in the initramfs. Every system call goes through the boot's
//! [`Sys`], every path comes from its [`super::Paths`].

use super::{Boot, BootError};
use crate::clock::Fixed;
use crate::pid1::config::{BootConfig, RootConfig};
use crate::pid1::handover::{self, InitCommand};
use crate::pid1::rootdev::{self, BlockScanner, FoundDevice, RealWaiter, RootWait};
use crate::pid1::switch_root::{self, MOVED_MOUNTS};
use crate::sys::Sys;

/// What PID 1 learnt about the root while the modules loaded
/// ([`Boot::watch_root`]).
#[derive(Debug, Default)]
pub(super) struct EarlyRoot {
    /// Entries of `/sys/class/block` at the last look: the devices are
    /// scanned again only when it changed.
    block_entries: Option<usize>,
    found: Option<FoundDevice>,
    /// The file system type it was mounted with on the new root.
    mounted: Option<String>,
}

impl EarlyRoot {
    pub(super) fn is_mounted(&self) -> bool {
        self.mounted.is_some()
    }
}

impl<S: Sys> Boot<S> {
    /// Step 5: with a root, switch_root into it; without one, stay. Returns
    /// the init to exec, chosen before anything is moved.
    pub fn enter_root(
        &mut self,
        config: &BootConfig,
        kernel_args: &[String],
    ) -> Result<InitCommand, BootError> {
        let wait = config.root.as_ref().map_or(
            RootWait::Upto(crate::pid1::config::DEFAULT_ROOT_WAIT),
            |r| r.wait,
        );
        self.set_up_device_mapper(wait)?;
        match &config.root {
            Some(root) => self.switch_to_root(root, config, kernel_args),
            None => self.init_in_initramfs(config, kernel_args),
        }
    }

    /// While the loader runs (after each batch of its events): finds the
    /// root device once the block devices change, and mounts it on the new
    /// root once a type it may be mounted as is registered
    /// (`/proc/filesystems`), so the device's driver and the file system
    /// need not be the last modules to load. Reports nothing: what fails
    /// here is tried again, and reported, by [`Boot::enter_root`].
    pub(super) fn watch_root(&mut self, root: &RootConfig) {
        if self.early_root.is_mounted() {
            return;
        }
        if self.early_root.found.is_none() {
            let entries =
                std::fs::read_dir(self.paths.sys.join("class/block")).map_or(0, |d| d.count());
            if self.early_root.block_entries == Some(entries) {
                return;
            }
            self.early_root.block_entries = Some(entries);
            let scanner = BlockScanner::at(&self.paths.sys, &self.paths.dev);
            let Some(found) = scanner.find(&self.sys, &root.device) else {
                return;
            };
            self.step("root_found");
            self.early_root.found = Some(found);
        }
        let Some(found) = self.early_root.found.as_ref() else {
            return;
        };
        let (types, proc_filesystems) = self.fstype_candidates(root, found);
        let registered = |t: &String| {
            proc_filesystems
                .lines()
                .any(|l| l.split_whitespace().last() == Some(t.as_str()))
        };
        if !types.iter().any(registered) {
            return;
        }
        let new_root = self.paths.new_root.clone();
        if let Ok(fstype) =
            switch_root::mount_root(&self.sys, &found.node, &new_root, &types, &root.options)
        {
            self.step("root_mounted");
            self.early_root.mounted = Some(fstype);
        }
    }

    fn switch_to_root(
        &mut self,
        root: &RootConfig,
        config: &BootConfig,
        kernel_args: &[String],
    ) -> Result<InitCommand, BootError> {
        let new_root = self.paths.new_root.clone();
        let early = std::mem::take(&mut self.early_root);
        let (found, fstype) = match (early.found, early.mounted) {
            (Some(found), Some(fstype)) => (found, fstype),
            (found, _) => {
                let found = match found {
                    Some(f) => f,
                    None => self.wait_for_root(root)?,
                };
                let fstype = self
                    .mount_found_root(root, &found, &new_root)
                    .map_err(|e| {
                        self.verity_failure(
                            Some(&found.device.name),
                            "mounting the root".into(),
                            &e,
                        )
                        .unwrap_or(e)
                    })?;
                (found, fstype)
            }
        };
        log::info!(
            "mounted root {} = {} ({}) on {} {}",
            root.device,
            found.node.display(),
            fstype,
            new_root.display(),
            if root.options.read_only {
                "read-only"
            } else {
                "read-write"
            }
        );
        self.enter_new_root(config, kernel_args, &new_root)
    }

    /// Waits for the root device as the command line or manifest says.
    fn wait_for_root(&mut self, root: &RootConfig) -> Result<FoundDevice, BootError> {
        let scanner = BlockScanner::at(&self.paths.sys, &self.paths.dev);
        log::info!("waiting for root {} ({})", root.device, root.wait);
        let found = rootdev::wait_for(
            root.wait,
            &mut RealWaiter::start(),
            || scanner.find(&self.sys, &root.device),
            |t| {
                log::warn!(
                    "still waiting for root {} ({} s)",
                    root.device,
                    Fixed(t.as_secs_f64(), 0)
                )
            },
        )
        .map_err(|waited| BootError::RootNotFound {
            spec: root.device.clone(),
            waited,
        })?;
        self.step("root_found");
        Ok(found)
    }

    /// The types `found` may be mounted as, best first, and the
    /// `/proc/filesystems` text they were chosen against.
    fn fstype_candidates(&self, root: &RootConfig, found: &FoundDevice) -> (Vec<String>, String) {
        let proc_filesystems =
            std::fs::read_to_string(self.paths.proc.join("filesystems")).unwrap_or_default();
        let types =
            switch_root::fstype_candidates(&root.fstypes, found.fs.as_ref(), &proc_filesystems);
        (types, proc_filesystems)
    }

    /// Mounts `found` on `new_root`; returns the type it was mounted as.
    fn mount_found_root(
        &mut self,
        root: &RootConfig,
        found: &FoundDevice,
        new_root: &std::path::Path,
    ) -> Result<String, BootError> {
        let (types, _) = self.fstype_candidates(root, found);
        let fstype =
            switch_root::mount_root(&self.sys, &found.node, new_root, &types, &root.options)
                .map_err(BootError::SwitchRoot)?;
        self.step("root_mounted");
        Ok(fstype)
    }

    /// With the root mounted on `new_root`: picks its init, moves the API
    /// mounts, frees the initramfs and enters the new root.
    fn enter_new_root(
        &mut self,
        config: &BootConfig,
        kernel_args: &[String],
        new_root: &std::path::Path,
    ) -> Result<InitCommand, BootError> {
        let new_root = new_root.to_path_buf();
        // Choose the init before anything is moved: if there is none, the
        // initramfs (and its rescue shell) is still intact.
        let init = handover::choose_init(&config.init, kernel_args, |p| {
            handover::is_executable(&new_root, p)
        })
        .map_err(|source| BootError::NoInit {
            root: new_root.clone(),
            source,
        })?;
        let old_root = self.paths.root.clone();
        for problem in switch_root::move_mounts(&self.sys, &old_root, &new_root, MOVED_MOUNTS) {
            log::warn!("{problem}");
            self.report.notes.push(problem);
        }
        self.step("mounts_moved");
        // Only a RAM filesystem is ours to empty (a safety net should /init
        // ever run from a real disk). In a child, so the real init starts
        // while the RAM is given back: the fork keeps the old root as the
        // child's root and working directory, which the switch below does
        // not move; it never crosses into another mount; the real init
        // inherits and reaps it.
        if self.sys.is_ram_fs(&old_root) {
            self.sys.in_background(&mut || {
                switch_root::remove_same_fs(&old_root);
            });
        }
        self.step("initramfs_freed");
        switch_root::enter(&self.sys, &new_root).map_err(BootError::SwitchRoot)?;
        self.step("switch_root");
        Ok(init)
    }

    fn init_in_initramfs(
        &mut self,
        config: &BootConfig,
        kernel_args: &[String],
    ) -> Result<InitCommand, BootError> {
        log::info!("no root device given: staying in the initramfs");
        let _ = self.sys.chdir(&self.paths.root);
        handover::choose_init(&config.init, kernel_args, |p| {
            handover::is_executable(&self.paths.root, p)
        })
        .map_err(|source| BootError::NoInit {
            root: self.paths.root.clone(),
            source,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use nix::mount::MsFlags;

    use super::*;
    use crate::pid1::config::{InitConfig, MountOptions};
    use crate::pid1::rootdev::{DeviceSpec, RootWait};
    use crate::pid1::Paths;
    use crate::sys::{FakeSys, SysCall};

    /// An initramfs with a sysfs that lists `vda` (its node a plain file)
    /// and a new root, beside it, that holds an executable `/sbin/init`.
    struct Tree {
        top: PathBuf,
        paths: Paths,
    }

    impl Tree {
        fn new(tag: &str) -> Tree {
            let top =
                std::env::temp_dir().join(format!("kmodinit-root-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&top);
            let mut paths = Paths::under(&top.join("initramfs"));
            paths.new_root = top.join("newroot");
            let dev = paths.sys.join("devices/vda");
            std::fs::create_dir_all(&dev).unwrap();
            std::fs::write(dev.join("dev"), "254:0\n").unwrap();
            std::fs::write(dev.join("size"), "8\n").unwrap();
            std::fs::create_dir_all(paths.sys.join("class/block")).unwrap();
            std::os::unix::fs::symlink(&dev, paths.sys.join("class/block/vda")).unwrap();
            std::fs::create_dir_all(&paths.dev).unwrap();
            std::fs::write(paths.dev.join("vda"), [0u8; 4096]).unwrap();
            std::fs::create_dir_all(paths.root.join("etc")).unwrap();
            std::fs::write(paths.root.join("etc/initramfs-file"), "x").unwrap();
            let init = paths.new_root.join("sbin/init");
            std::fs::create_dir_all(init.parent().unwrap()).unwrap();
            std::fs::write(&init, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
            Tree { top, paths }
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.top);
        }
    }

    fn config(read_only: bool, root: bool) -> BootConfig {
        BootConfig {
            root: root.then(|| RootConfig {
                device: DeviceSpec::Name("vda".into()),
                fstypes: vec!["ext4".into()],
                options: MountOptions {
                    flags: MsFlags::MS_NOATIME,
                    data: "errors=remount-ro".into(),
                    read_only,
                },
                wait: RootWait::Upto(std::time::Duration::ZERO),
            }),
            init: InitConfig {
                explicit: None,
                manifest_path: "/sbin/init".into(),
                manifest_args: vec![],
            },
            on_failure: None,
            jobs: 0,
            deadline: std::time::Duration::ZERO,
            required_timeout: std::time::Duration::ZERO,
        }
    }

    fn mount(paths: &Paths, flags: MsFlags) -> SysCall {
        SysCall::Mount {
            source: paths.dev.join("vda"),
            target: paths.new_root.clone(),
            fstype: "ext4".into(),
            flags,
            data: Some("errors=remount-ro".into()),
        }
    }

    fn moves(paths: &Paths) -> Vec<SysCall> {
        ["dev", "proc", "sys", "run"]
            .iter()
            .map(|m| SysCall::MoveMount {
                from: paths.root.join(m),
                to: paths.new_root.join(m),
            })
            .collect()
    }

    fn enter(paths: &Paths) -> Vec<SysCall> {
        vec![
            SysCall::Chdir(paths.new_root.clone()),
            SysCall::MoveMount {
                from: ".".into(),
                to: "/".into(),
            },
            SysCall::Chroot(".".into()),
            SysCall::Chdir("/".into()),
        ]
    }

    #[test]
    fn switch_root_mounts_moves_frees_enters_then_execs() {
        let t = Tree::new("sequence");
        let fake = FakeSys::new().ram_fs(&t.paths.root);
        let mut b = Boot::new(fake, t.paths.clone(), 0.0);
        let init = b
            .enter_root(&config(true, true), &["single".into()])
            .unwrap();
        assert_eq!(init.argv, ["/sbin/init", "single"]);
        let mut want = vec![mount(&t.paths, MsFlags::MS_NOATIME | MsFlags::MS_RDONLY)];
        want.extend(moves(&t.paths));
        want.extend(enter(&t.paths));
        assert_eq!(b.sys.calls(), want);
        assert!(
            !t.paths.root.join("etc/initramfs-file").exists(),
            "the initramfs (ramfs) was emptied"
        );
        assert!(
            t.paths.new_root.join("sbin/init").exists(),
            "not the new root"
        );
        let _ = b.exec_init(&init);
        assert_eq!(b.sys.calls().last(), Some(&SysCall::Exec(init)));
    }

    #[test]
    fn the_root_is_mounted_during_the_load_once_its_file_system_is_registered() {
        let t = Tree::new("early");
        let fake = FakeSys::new().ram_fs(&t.paths.root);
        let mut b = Boot::new(fake, t.paths.clone(), 0.0);
        let cfg = config(true, true);
        let root = cfg.root.clone().unwrap();
        // vda is there, ext4 is not registered yet: found, not mounted.
        std::fs::create_dir_all(&t.paths.proc).unwrap();
        std::fs::write(t.paths.proc.join("filesystems"), "nodev\tsysfs\n").unwrap();
        b.watch_root(&root);
        assert!(b.early_root.found.is_some() && !b.early_root.is_mounted());
        assert!(b.sys.calls().is_empty(), "{:?}", b.sys.calls());
        // ext4 registered: mounted at the next look, once.
        std::fs::write(t.paths.proc.join("filesystems"), "nodev\tsysfs\n\text4\n").unwrap();
        b.watch_root(&root);
        b.watch_root(&root);
        assert!(b.early_root.is_mounted());
        let mount = mount(&t.paths, MsFlags::MS_NOATIME | MsFlags::MS_RDONLY);
        assert_eq!(b.sys.calls(), std::slice::from_ref(&mount));
        // The root step does not wait or mount again; the report after the
        // load is not written (exec writes it).
        b.report_after_load();
        assert!(!t.paths.report.exists());
        b.enter_root(&cfg, &[]).unwrap();
        let mut want = vec![mount];
        want.extend(moves(&t.paths));
        want.extend(enter(&t.paths));
        assert_eq!(b.sys.calls(), want);
        let steps: Vec<&str> = b.report.steps.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(
            steps,
            [
                "start",
                "root_found",
                "root_mounted",
                "mounts_moved",
                "initramfs_freed",
                "switch_root"
            ]
        );
    }

    #[test]
    fn without_an_early_mount_the_report_is_written_after_the_load() {
        let t = Tree::new("late");
        let mut b = Boot::new(FakeSys::new(), t.paths.clone(), 0.0);
        b.report_after_load();
        assert!(t.paths.report.exists());
    }

    #[test]
    fn write_protected_root_is_mounted_read_only() {
        let t = Tree::new("rofs");
        let fake = FakeSys::new().fail_with(|c| match c {
            SysCall::Mount { flags, .. } if !flags.contains(MsFlags::MS_RDONLY) => {
                Some(libc::EROFS)
            }
            _ => None,
        });
        let mut b = Boot::new(fake, t.paths.clone(), 0.0);
        b.enter_root(&config(false, true), &[]).unwrap();
        let calls = b.sys.calls();
        assert_eq!(
            calls[..2],
            [
                mount(&t.paths, MsFlags::MS_NOATIME),
                mount(&t.paths, MsFlags::MS_NOATIME | MsFlags::MS_RDONLY)
            ]
        );
        assert_eq!(calls[2..6], moves(&t.paths)[..]);
        assert!(
            t.paths.root.join("etc/initramfs-file").exists(),
            "not ramfs/tmpfs: nothing deleted"
        );
    }

    #[test]
    fn a_root_without_init_moves_nothing() {
        let t = Tree::new("noinit");
        std::fs::remove_file(t.paths.new_root.join("sbin/init")).unwrap();
        let fake = FakeSys::new().ram_fs(&t.paths.root);
        let mut b = Boot::new(fake, t.paths.clone(), 0.0);
        let e = b.enter_root(&config(true, true), &[]).unwrap_err();
        assert!(matches!(e, BootError::NoInit { .. }), "{e}");
        assert_eq!(
            b.sys.calls().len(),
            1,
            "only the mount: {:?}",
            b.sys.calls()
        );
        assert!(t.paths.root.join("etc/initramfs-file").exists());
    }

    #[test]
    fn failures_name_the_step() {
        let t = Tree::new("fail");
        let mut cfg = config(true, true);
        let mut b = Boot::new(FakeSys::new(), t.paths.clone(), 0.0);
        if let Some(r) = cfg.root.as_mut() {
            r.device = DeviceSpec::Name("sda".into());
        }
        let e = b.enter_root(&cfg, &[]).unwrap_err();
        assert!(matches!(e, BootError::RootNotFound { .. }), "{e}");
        assert!(b.sys.calls().is_empty());

        let fake =
            FakeSys::new().fail_with(|c| matches!(c, SysCall::Chroot(_)).then_some(libc::EPERM));
        let mut b = Boot::new(fake, t.paths.clone(), 0.0);
        let e = b.enter_root(&config(true, true), &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("switching to the new root: chroot .: "),
            "{e}"
        );
        assert_eq!(b.sys.calls().last(), Some(&SysCall::Chroot(".".into())));
    }

    #[test]
    fn without_a_root_the_init_is_the_initramfs_one() {
        let t = Tree::new("stay");
        let sh = t.paths.root.join("bin/sh");
        std::fs::create_dir_all(sh.parent().unwrap()).unwrap();
        std::fs::copy(t.paths.new_root.join("sbin/init"), &sh).unwrap();
        let mut b = Boot::new(FakeSys::new(), t.paths.clone(), 0.0);
        let init = b.enter_root(&config(true, false), &[]).unwrap();
        assert_eq!(init.path, "/bin/sh");
        assert_eq!(b.sys.calls(), [SysCall::Chdir(t.paths.root.clone())]);
        assert!(Path::new(&t.paths.root.join("etc/initramfs-file")).exists());
    }
}
