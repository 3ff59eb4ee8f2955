//! Builds the eBPF programs (routeguard-ebpf) for the BPF target with the nightly toolchain and
//! bpf-linker, and places the object in OUT_DIR for `include_bytes_aligned!`.
//! `cargo xtask setup` installs what this needs.
//!
//! With `AYA_BUILD_SKIP=1` (unit tests and lints of userspace-only code) an empty object is left
//! in its place; such a binary refuses to trace and says why.
use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let package = aya_build::Package {
        name: "routeguard-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../routeguard-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())?;
    let object = PathBuf::from(env::var("OUT_DIR")?).join("routeguard");
    if !object.exists() {
        fs::write(&object, [])?;
    }
    Ok(())
}
