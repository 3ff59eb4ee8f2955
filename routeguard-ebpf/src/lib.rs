#![no_std]
// The programs live in the `routeguard` binary target (src/main.rs); this empty library lets
// routeguard depend on the crate so cargo rebuilds it when the programs change.
