//! Builds the eBPF programs (routeguard-ebpf) for the BPF target with the nightly toolchain and
//! bpf-linker, and places the object in OUT_DIR for `include_bytes_aligned!`.
//! `cargo xtask setup` installs what this needs; set AYA_BUILD_SKIP=1 only for docs-only checks.
fn main() -> anyhow::Result<()> {
    let package = aya_build::Package {
        name: "routeguard-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../routeguard-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
