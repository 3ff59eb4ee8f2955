//! Any bytes a process may send on a netlink socket: the decoder must not panic, and its output
//! stays bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use routeguard::decode::decode_netlink;

fuzz_target!(|payload: &[u8]| {
    let decoded = decode_netlink(payload);
    // One entry per 16-byte header at most, plus the error that ends the walk.
    assert!(decoded.len() <= payload.len() / 16 + 1);
});
