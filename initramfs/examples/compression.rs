//! Measures each `--compress` format on an uncompressed image: size, time to
//! compress, and time to decompress (the cost the kernel pays at every boot,
//! measured here with the same algorithms in user space; the kernel's own
//! decoders rank the same way).
//!
//!     kmodinit-mkimage ... --compress none --output /tmp/img.cpio
//!     cargo run --release -p kmodinit-mkimage --example compression -- /tmp/img.cpio
//!
//! Prints medians of several runs; absolute times depend on the machine,
//! compare the ratios.
#![allow(clippy::unwrap_used)] // a measurement tool, not product code

use std::time::Instant;

use kmodinit_mkimage::compress::Compress;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: compression IMAGE.cpio");
    let data = std::fs::read(&path).unwrap();
    println!("input: {path}, {} bytes", data.len());
    println!(
        "{:<6} {:>10} {:>7} {:>14} {:>16}",
        "format", "bytes", "ratio", "compress ms", "decompress ms"
    );
    for c in [Compress::Zstd, Compress::Xz, Compress::Gzip, Compress::None] {
        let mut ctimes = Vec::new();
        let mut out = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            out = c.compress(&data).unwrap();
            ctimes.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let mut dtimes = Vec::new();
        for _ in 0..21 {
            let t = Instant::now();
            let back = c.decompress(&out).unwrap();
            dtimes.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(back.len(), data.len());
        }
        println!(
            "{:<6} {:>10} {:>6.1}% {:>14.1} {:>16.2}",
            c.name(),
            out.len(),
            100.0 * out.len() as f64 / data.len() as f64,
            median(ctimes),
            median(dtimes)
        );
    }
}
