//! Offsets the kernel-function programs read, from the running kernel's BTF. Same rules as
//! [`super::btf`]: looked up by name, size-checked, and left missing (with the reason) rather
//! than guessed.

use btf_rs::Btf;
use routeguard_common::{KernelFunctionOffsets, OFFSET_MISSING};

use super::btf::{member_offset, Missing};

/// Offsets and what could not be resolved.
#[derive(Debug)]
pub struct Resolved {
    pub offsets: KernelFunctionOffsets,
    pub missing: Vec<Missing>,
}

struct Want {
    field: &'static str,
    /// Struct and member path; several spellings across kernels are tried in order.
    paths: &'static [(&'static str, &'static [&'static str])],
    sizes: &'static [usize],
    slot: fn(&mut KernelFunctionOffsets) -> &mut u32,
}

const PTR: usize = 8;

macro_rules! want {
    ($field:ident: $(($ty:literal, [$($m:literal),+]))|+ = $($size:tt)|+) => {
        Want {
            field: stringify!($field),
            paths: &[$(($ty, &[$($m),+])),+],
            sizes: &[$($size),+],
            slot: |o| &mut o.$field,
        }
    };
}

const WANTS: &[Want] = &[
    want!(task_flags: ("task_struct", ["flags"]) = 4),
    want!(net_ns_inum: ("net", ["ns", "inum"]) = 4),
    want!(fa_info: ("fib_alias", ["fa_info"]) = PTR),
    // dscp_t since 5.18, a u8 `fa_tos` before.
    want!(fa_dscp: ("fib_alias", ["fa_dscp"]) | ("fib_alias", ["fa_tos"]) = 1),
    want!(fa_type: ("fib_alias", ["fa_type"]) = 1),
    want!(fa_slen: ("fib_alias", ["fa_slen"]) = 1),
    want!(fa_tb_id: ("fib_alias", ["tb_id"]) = 4),
    want!(fi_protocol: ("fib_info", ["fib_protocol"]) = 1),
    want!(fi_scope: ("fib_info", ["fib_scope"]) = 1),
    want!(fi_prefsrc: ("fib_info", ["fib_prefsrc"]) = 4),
    want!(fi_priority: ("fib_info", ["fib_priority"]) = 4),
    want!(fi_nh: ("fib_info", ["nh"]) = PTR),
    // A flexible array: its size in BTF is 0.
    want!(fi_fib_nh: ("fib_info", ["fib_nh"]) = 0),
    want!(fib_nh_common: ("fib_nh", ["nh_common"]) = 72 | 64 | 80 | 88),
    want!(fib6_nh_common: ("fib6_nh", ["nh_common"]) = 72 | 64 | 80 | 88),
    want!(nhc_dev: ("fib_nh_common", ["nhc_dev"]) = PTR),
    want!(nhc_oif: ("fib_nh_common", ["nhc_oif"]) = 4),
    want!(nhc_gw_family: ("fib_nh_common", ["nhc_gw_family"]) = 1),
    want!(nhc_gw: ("fib_nh_common", ["nhc_gw"]) = 16),
    want!(dev_ifindex: ("net_device", ["ifindex"]) = 4),
    want!(dev_name: ("net_device", ["name"]) = 16),
    want!(fc_dst_len: ("fib_config", ["fc_dst_len"]) = 1),
    want!(fc_protocol: ("fib_config", ["fc_protocol"]) = 1),
    want!(fc_scope: ("fib_config", ["fc_scope"]) = 1),
    want!(fc_type: ("fib_config", ["fc_type"]) = 1),
    want!(fc_table: ("fib_config", ["fc_table"]) = 4),
    want!(fc_dst: ("fib_config", ["fc_dst"]) = 4),
    want!(fc_gw4: ("fib_config", ["fc_gw4"]) = 4),
    want!(fc_oif: ("fib_config", ["fc_oif"]) = 4),
    want!(fc_priority: ("fib_config", ["fc_priority"]) = 4),
    want!(fc_nlinfo: ("fib_config", ["fc_nlinfo"]) = 24 | 32),
    want!(nli_nlh: ("nl_info", ["nlh"]) = PTR),
    want!(nli_net: ("nl_info", ["nl_net"]) = PTR),
    want!(nli_portid: ("nl_info", ["portid"]) = 4),
    want!(f6_table: ("fib6_info", ["fib6_table"]) = PTR),
    want!(tb6_id: ("fib6_table", ["tb6_id"]) = 4),
    want!(f6_dst: ("fib6_info", ["fib6_dst", "addr"]) = 16),
    want!(f6_dst_len: ("fib6_info", ["fib6_dst", "plen"]) = 4),
    want!(f6_prefsrc: ("fib6_info", ["fib6_prefsrc", "addr"]) = 16),
    want!(f6_metric: ("fib6_info", ["fib6_metric"]) = 4),
    want!(f6_protocol: ("fib6_info", ["fib6_protocol"]) = 1),
    want!(f6_type: ("fib6_info", ["fib6_type"]) = 1),
    want!(f6_nh: ("fib6_info", ["nh"]) = PTR),
    want!(f6_fib6_nh: ("fib6_info", ["fib6_nh"]) = 0),
    want!(nh_id: ("nexthop", ["id"]) = 4),
    want!(nh_net: ("nexthop", ["net"]) = PTR),
    want!(skb_sk: ("sk_buff", ["sk"]) = PTR),
    want!(sock_net: ("sock", ["__sk_common", "skc_net"]) = PTR),
    want!(skb_cb: ("sk_buff", ["cb"]) = 48),
    want!(nlcb_sk: ("netlink_skb_parms", ["sk"]) = PTR),
    want!(nlcb_portid: ("netlink_skb_parms", ["portid"]) = 4),
];

/// Fields without which no removal can be described: the path does not start without them.
pub const REQUIRED: &[&str] = &["net_ns_inum", "fa_slen", "fa_tb_id", "f6_dst", "f6_dst_len"];

pub fn resolve_with(btf: &Btf) -> Resolved {
    let mut offsets = KernelFunctionOffsets::MISSING;
    let mut missing = Vec::new();
    for want in WANTS {
        let mut last = None;
        for (ty, path) in want.paths {
            match member_offset(btf, ty, path, want.sizes) {
                Ok(off) => {
                    *(want.slot)(&mut offsets) = off;
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(reason) = last {
            *(want.slot)(&mut offsets) = OFFSET_MISSING;
            missing.push(Missing {
                field: want.field,
                reason,
            });
        }
    }
    Resolved { offsets, missing }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::kernel::btf::VMLINUX_BTF;

    /// Every offset resolves on the running kernel (6.18 here; 6.1 and 6.12 in the VM), or on
    /// the raw BTF file named by `$ROUTEGUARD_TEST_BTF` (e.g. extracted from a distro kernel).
    #[test]
    fn resolves_every_offset_on_the_running_kernel() {
        let path = std::env::var("ROUTEGUARD_TEST_BTF").unwrap_or_else(|_| VMLINUX_BTF.into());
        if !Path::new(&path).exists() {
            eprintln!("skipped: {path} is absent");
            return;
        }
        let btf = Btf::from_file(&path).unwrap();
        let resolved = resolve_with(&btf);
        assert!(
            resolved.missing.is_empty(),
            "missing: {:?}",
            resolved.missing
        );
        // The first fib_nh sits at the end of fib_info, after `nh`.
        assert!(resolved.offsets.fi_fib_nh > resolved.offsets.fi_nh);
    }
}
