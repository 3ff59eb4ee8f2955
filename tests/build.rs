//! Builds the C test clients under `clients/` with the C compiler Rust links with (`cc`, or
//! `$CC`), so the QEMU guests, which have no toolchain, run them from the host's target/ like the
//! test binaries. Their paths reach the tests as `env!("ROUTEGUARD_CLIENT_<NAME>")`.

use std::{env, path::PathBuf, process::Command};

/// C clients: `clients/<name>.c` becomes the executable `<name>`.
const C_CLIENTS: &[&str] = &["uring_del"];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    for name in C_CLIENTS {
        let source = format!("clients/{name}.c");
        println!("cargo:rerun-if-changed={source}");
        let exe = out.join(name);
        let status = Command::new(&cc)
            .args(["-O1", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&exe)
            .arg(&source)
            .status()
            .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}` for {source}: {e}"));
        assert!(status.success(), "`{cc}` failed on {source} ({status})");
        println!(
            "cargo:rustc-env=ROUTEGUARD_CLIENT_{}={}",
            name.to_uppercase(),
            exe.display()
        );
    }
    println!("cargo:rerun-if-env-changed=CC");
}
