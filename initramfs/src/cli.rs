//! The image builder's command line, shared by `kmodinit build` and its
//! older name `kmodinit-mkimage`: the flags ([`BuildArgs`]), the build, the
//! summary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::coldplug::{ColdplugSource, ImageColdplug};
use crate::compress::Compress;
use crate::firmware::{FirmwareMode, FirmwareOptions, KernelFirmware};
use crate::image::{self, AddSpec, Options, Summary};
use crate::microcode::{self, MicrocodeMode};
use crate::modules::ModuleCompression;

/// Environment variable naming the default `/init` binary.
const INIT_ENV: &str = "KMODINIT_INIT";

/// What the builder does, for `--help` of both names.
pub const ABOUT: &str = "\
Builds a kmodinit initramfs: a reproducible newc cpio holding the static
/init, the manifest (/etc/kmodinit/manifest.json), exactly the kernel
modules the manifest's plan needs with depmod files pruned to them,
/dev/console and /dev/null, and any extra files given with --add.

The manifest is planned against the module tree first; if it does not
plan, nothing is written. The output is written to a temporary file and
renamed, so a failed build never leaves a partial image. Every member is
owned by root with mtime $SOURCE_DATE_EPOCH (0 if unset): the same inputs
give a byte-identical image.";

/// The builder's flags (`kmodinit build`, `kmodinit-mkimage`).
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The JSON manifest (version 1) to plan and to install as
    /// /etc/kmodinit/manifest.json.
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,

    /// Kernel release whose modules to use (as `uname -r` prints it), e.g.
    /// 6.1.0-56-amd64; the image holds them under /lib/modules/RELEASE.
    #[arg(long, value_name = "RELEASE")]
    kernel_release: String,

    /// Where to write the image (replaced atomically).
    #[arg(long, value_name = "FILE")]
    output: PathBuf,

    /// Root of the module tree: modules are read from
    /// DIR/lib/modules/RELEASE (depmod's -b convention).
    #[arg(long, value_name = "DIR", default_value = "/")]
    modules_root: PathBuf,

    /// The static PID 1 to install as /init (mode 0755). Default: $KMODINIT_INIT,
    /// else build/init of the workspace this tool was built in (`make init`
    /// builds it), else the packaged /usr/lib/kmodinit/init.
    #[arg(long, value_name = "FILE")]
    init: Option<PathBuf>,

    /// Copy SRC into the image at DST (absolute, no `..`; split at the last
    /// `:`; DST `/` lays a directory's contents over the root). Repeatable. Files keep their permission bits, directories are
    /// copied recursively, symlinks inside them stay symlinks; a symlink
    /// given as SRC itself is followed (like `cp -H`). Owner is always root.
    #[arg(long, value_name = "SRC:DST")]
    add: Vec<AddSpec>,

    /// Compression of the whole image; the kernel unpacks all four
    /// (CONFIG_RD_ZSTD/XZ/GZIP). Sizes and unpack times: initramfs/README.md.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Compress::Xz)]
    compress: Compress,

    /// What to do with compressed module files (.ko.xz, .ko.zst, .ko.gz):
    /// `none` decompresses them into the image as .ko (modules.dep
    /// rewritten; signatures stay valid), so /init needs no decoder; `keep`
    /// stores them as they are, for kernels that decompress modules
    /// themselves (/sys/module/compression, CONFIG_MODULE_DECOMPRESS).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ModuleCompression::None)]
    module_compression: ModuleCompression,

    /// modprobe.d directories whose *.conf files to carry into the image, as
    /// dracut and initramfs-tools do: `options` become module params,
    /// `softdep` softdep overrides, `blacklist` blocklist entries, `alias`
    /// lines the image's modules.alias (the manifest wins on conflict; the
    /// summary's notes say where each setting came from). `install` and
    /// `remove` lines are refused: /init runs no commands. Default: the
    /// host's /etc/modprobe.d and /lib/modprobe.d when building for the
    /// running kernel (--kernel-release is `uname -r` and --modules-root
    /// is /), else none.
    #[arg(long = "modprobe-d", value_name = "DIR", num_args = 1.., conflicts_with = "no_modprobe_d")]
    modprobe_d: Vec<PathBuf>,

    /// Carry no modprobe.d configuration, not even the host's.
    #[arg(long)]
    no_modprobe_d: bool,

    /// Carry the drivers for /init's coldplug (manifest "coldplug"):
    /// `host` adds the modules whose modules.alias patterns match the
    /// running machine's device modaliases (/sys/devices/**/modalias), with
    /// their dependencies; `none` (the default) adds nothing.
    #[arg(long, value_enum, value_name = "SOURCE", default_value_t = ColdplugSource::None)]
    coldplug: ColdplugSource,

    /// Carry every module under these subtrees of lib/modules/RELEASE
    /// (e.g. kernel/drivers/virtio kernel/drivers/block), with their
    /// dependencies, for generic images whose coldplug finds the drivers.
    /// Relative paths without `..`.
    #[arg(long = "coldplug-modules", value_name = "SUBTREE", num_args = 1..)]
    coldplug_modules: Vec<String>,

    /// A declared module parameter the module does not have (its
    /// .modinfo `parm`/`parmtype` entries) is a warning instead of an
    /// error.
    #[arg(long)]
    allow_unknown_params: bool,

    /// Also write the pruned depmod text files (modules.dep, modules.alias,
    /// modules.softdep, modules.builtin, modules.builtin.modinfo) and
    /// modules.params into the image, for tools in the image that read
    /// them (busybox modprobe). /init reads only the compiled index
    /// (kmodinit.index), which every image holds.
    #[arg(long)]
    depmod_text: bool,

    /// Modules (names or aliases) to put into the image, with their
    /// dependencies and softdeps, without loading them at boot: no chain
    /// names them, so they load only when the kernel asks for them (its
    /// module helper, e.g. `fs-vfat` when a vfat filesystem is mounted) or
    /// coldplug matches a device. Comma-separated, repeatable.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    extra_modules: Vec<String>,

    /// Firmware directories to take the modules' firmware files from
    /// (their .modinfo `firmware=` entries), searched in order as the
    /// kernel searches /lib/firmware: updates/RELEASE, updates, RELEASE,
    /// the directory itself; the plain file first, then the compressed
    /// variants the kernel reads (.xz; .zst when the kernel's config says
    /// so). Also where --microcode looks. Default: MODULES_ROOT/lib/firmware.
    #[arg(long = "firmware-dir", value_name = "DIR", num_args = 1..)]
    firmware_dir: Vec<PathBuf>,

    /// `auto` (the default) carries the firmware files the image's modules
    /// name; a file not found is a warning naming the module, never an
    /// error. `none` leaves all firmware out.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = FirmwareMode::Auto)]
    firmware: FirmwareMode,

    /// Early microcode, as an uncompressed archive before the compressed
    /// image (kernel/x86/microcode/GenuineIntel.bin, AuthenticAMD.bin, from
    /// the firmware directories' intel-ucode/* and amd-ucode/*.bin, the
    /// layout of Debian's intel-microcode and amd64-microcode). `auto`:
    /// this machine's CPU vendor when building for the running kernel,
    /// none otherwise; `all`: both vendors; `none`. x86 only.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = MicrocodeMode::Auto)]
    microcode: MicrocodeMode,
}

/// The error `main` prints: one line, prefixed with the program name.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "no --init given and neither {0} nor {INSTALLED_INIT} exists: run `make init` first \
         (or pass --init FILE, or set {INIT_ENV})"
    )]
    NoDefaultInit(PathBuf),
    #[error(
        "cannot find this program's own path to locate the default /init ({0}); pass --init FILE"
    )]
    NoExe(std::io::Error),
    #[error("SOURCE_DATE_EPOCH={0:?} is not a number of seconds between 0 and 4294967295")]
    BadEpoch(String),
    #[error(transparent)]
    Build(#[from] image::BuildError),
}

/// Builds the image and prints its summary, or the error with its causes
/// (prefixed with `program`). The exit status to return.
pub fn build_and_report(program: &str, args: BuildArgs) -> ExitCode {
    match run(args) {
        Ok(summary) => {
            print_summary(program, &summary);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{program}: error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                // Nested errors whose text the parent already included are
                // skipped to keep the message to the point.
                if !e.to_string().contains(&s.to_string()) {
                    eprintln!("  caused by: {s}");
                }
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Builds the image the flags describe.
pub fn run(cli: BuildArgs) -> Result<Summary, CliError> {
    let init = match cli.init {
        Some(p) => p,
        None => default_init()?,
    };
    let for_host = building_for_this_host(&cli.kernel_release, &cli.modules_root);
    let firmware = FirmwareOptions {
        mode: cli.firmware,
        dirs: if cli.firmware_dir.is_empty() {
            vec![cli.modules_root.join("lib/firmware")]
        } else {
            cli.firmware_dir
        },
        release: cli.kernel_release.clone(),
        kernel: KernelFirmware::for_kernel(&cli.modules_root, &cli.kernel_release),
    };
    let host_vendor = if for_host {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| microcode::vendor_in_cpuinfo(&c))
    } else {
        None
    };
    let modprobe_dirs = if cli.no_modprobe_d {
        Vec::new()
    } else if !cli.modprobe_d.is_empty() {
        cli.modprobe_d
    } else if for_host {
        crate::modprobe::HOST_DIRS
            .iter()
            .map(PathBuf::from)
            .collect()
    } else {
        Vec::new()
    };
    let opts = Options {
        coldplug: ImageColdplug {
            source: cli.coldplug,
            sys: PathBuf::from("/sys"),
            subtrees: cli.coldplug_modules,
        },
        modprobe_dirs,
        allow_unknown_params: cli.allow_unknown_params,
        extra_modules: cli.extra_modules,
        manifest: cli.manifest,
        kernel_release: cli.kernel_release,
        output: cli.output,
        modules_root: cli.modules_root,
        init,
        add: cli.add,
        compress: cli.compress,
        module_compression: cli.module_compression,
        mtime: source_date_epoch()?,
        firmware,
        microcode: cli.microcode,
        host_vendor,
        depmod_text: cli.depmod_text,
    };
    Ok(image::build(&opts)?)
}

/// The host's modprobe.d describes the host's kernel: it is carried by
/// default only into an image of the running kernel's own module tree.
fn building_for_this_host(release: &str, modules_root: &Path) -> bool {
    let running = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    running.trim() == release && modules_root == Path::new("/")
}

/// Where the Debian package installs `/init` (`make deb`).
pub const INSTALLED_INIT: &str = "/usr/lib/kmodinit/init";

/// `$KMODINIT_INIT`, else `<workspace>/build/init` found from this
/// executable's path (`<workspace>/target/<profile>/kmodinit` or `kmodinit-mkimage`),
/// else the packaged [`INSTALLED_INIT`].
fn default_init() -> Result<PathBuf, CliError> {
    if let Some(p) = std::env::var_os(INIT_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(CliError::NoExe)?;
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(|ws| ws.join("build/init"))
        .unwrap_or_else(|| PathBuf::from("build/init"));
    if candidate.is_file() {
        Ok(candidate)
    } else if Path::new(INSTALLED_INIT).is_file() {
        Ok(PathBuf::from(INSTALLED_INIT))
    } else {
        Err(CliError::NoDefaultInit(candidate))
    }
}

/// Reproducible-builds convention: every timestamp is `SOURCE_DATE_EPOCH`.
fn source_date_epoch() -> Result<u32, CliError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u32>()
            .map_err(|_| CliError::BadEpoch(v.clone())),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(0),
        Err(std::env::VarError::NotUnicode(v)) => {
            Err(CliError::BadEpoch(v.to_string_lossy().into_owned()))
        }
    }
}

fn human(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB {
        format!("{:.2} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{bytes} B")
    }
}

fn print_summary(program: &str, s: &Summary) {
    println!("wrote {}", s.output.display());
    if s.builtin > 0 {
        println!(
            "  modules:      {} files (+{} builtin, no file needed)",
            s.modules, s.builtin
        );
    } else {
        println!("  modules:      {} files", s.modules);
    }
    if s.decompressed > 0 {
        println!(
            "  decompressed: {} module files stored as .ko (--module-compression none)",
            s.decompressed
        );
    }
    println!(
        "  firmware:     {} files, {} ({} bytes)",
        s.firmware_files,
        human(s.firmware_bytes),
        s.firmware_bytes
    );
    if s.microcode_bytes > 0 {
        let parts: Vec<String> = s
            .microcode
            .iter()
            .map(|(path, n, bytes)| format!("{path} ({n} files, {bytes} bytes)"))
            .collect();
        println!(
            "  microcode:    {} bytes, uncompressed, before the image: {}",
            s.microcode_bytes,
            parts.join(", ")
        );
    }
    println!("  entries:      {}", s.entries);
    println!(
        "  uncompressed: {} ({} bytes)",
        human(s.uncompressed_bytes),
        s.uncompressed_bytes
    );
    let ratio = if s.uncompressed_bytes > 0 {
        100.0 * s.compressed_bytes as f64 / s.uncompressed_bytes as f64
    } else {
        100.0
    };
    println!(
        "  {:<13} {} ({} bytes, {:.1}%)",
        format!("{}:", s.compress.name()),
        human(s.compressed_bytes),
        s.compressed_bytes,
        ratio
    );
    println!("  largest files:");
    for (path, size) in &s.largest {
        println!("    {:>10}  {}", human(*size), path);
    }
    for n in &s.notes {
        println!("  note: {n}");
    }
    for w in &s.warnings {
        eprintln!("{program}: warning: {w}");
    }
}
