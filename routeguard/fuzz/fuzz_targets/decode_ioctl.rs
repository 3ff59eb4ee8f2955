//! Any `SIOCDELRT`/`SIOCSIFFLAGS` argument: the decoder must not panic.
//!
//! Input layout (the seeds follow it): socket family (u16 LE), cmd (u32 LE), then the 128-byte
//! argument and the 16-byte device name, zero-filled when the input is short.
#![no_main]

use libfuzzer_sys::fuzz_target;
use routeguard::decode::decode_ioctl;
use routeguard_common::IoctlPayload;

fuzz_target!(|input: &[u8]| {
    let mut bytes = [0u8; 2 + 4 + 128 + 16];
    let len = input.len().min(bytes.len());
    bytes[..len].copy_from_slice(&input[..len]);
    let sock_family = u16::from_le_bytes([bytes[0], bytes[1]]);
    let mut payload = IoctlPayload {
        cmd: u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]),
        _pad: 0,
        arg: [0; 128],
        dev: [0; 16],
    };
    payload.arg.copy_from_slice(&bytes[6..134]);
    payload.dev.copy_from_slice(&bytes[134..150]);
    let _ = decode_ioctl(sock_family, &payload);
});
