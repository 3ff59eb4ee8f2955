//! Offsets the kernel-function programs read, resolved from the running kernel's BTF by the
//! loader and handed over as the `KCONFIG` global. A member the kernel lacks is
//! [`crate::OFFSET_MISSING`]; the programs then leave the field it fills empty.

use crate::OFFSET_MISSING;

macro_rules! offsets {
    ($(#[doc = $doc:literal] $field:ident,)+) => {
        /// Byte offsets of kernel struct members (`struct.member`, nested members flattened).
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct KernelFunctionOffsets {
            $(#[doc = $doc] pub $field: u32,)+
        }

        impl KernelFunctionOffsets {
            pub const MISSING: Self = Self { $($field: OFFSET_MISSING,)+ };
            /// Number of offsets.
            pub const COUNT: usize = [$(stringify!($field)),+].len();
        }
    };
}

offsets! {
    /// `task_struct.flags` (PF_KTHREAD tells a kernel thread)
    task_flags,
    /// `net.ns.inum`
    net_ns_inum,
    /// `fib_alias.fa_info`
    fa_info,
    /// `fib_alias.fa_dscp` (u8; `fa_tos` before 5.18)
    fa_dscp,
    /// `fib_alias.fa_type`
    fa_type,
    /// `fib_alias.fa_slen` (32 - prefix length)
    fa_slen,
    /// `fib_alias.tb_id`
    fa_tb_id,
    /// `fib_info.fib_protocol`
    fi_protocol,
    /// `fib_info.fib_scope`
    fi_scope,
    /// `fib_info.fib_prefsrc`
    fi_prefsrc,
    /// `fib_info.fib_priority`
    fi_priority,
    /// `fib_info.nh` (a nexthop object, or null)
    fi_nh,
    /// `fib_info.fib_nh` (the first `struct fib_nh`)
    fi_fib_nh,
    /// `fib_nh.nh_common`
    fib_nh_common,
    /// `fib6_nh.nh_common`
    fib6_nh_common,
    /// `fib_nh_common.nhc_dev`
    nhc_dev,
    /// `fib_nh_common.nhc_oif`
    nhc_oif,
    /// `fib_nh_common.nhc_gw_family`
    nhc_gw_family,
    /// `fib_nh_common.nhc_gw`
    nhc_gw,
    /// `net_device.ifindex`
    dev_ifindex,
    /// `net_device.name`
    dev_name,
    /// `fib_config.fc_dst_len`
    fc_dst_len,
    /// `fib_config.fc_protocol`
    fc_protocol,
    /// `fib_config.fc_scope`
    fc_scope,
    /// `fib_config.fc_type`
    fc_type,
    /// `fib_config.fc_table`
    fc_table,
    /// `fib_config.fc_dst`
    fc_dst,
    /// `fib_config.fc_gw4`
    fc_gw4,
    /// `fib_config.fc_oif`
    fc_oif,
    /// `fib_config.fc_priority`
    fc_priority,
    /// `fib_config.fc_nlinfo`
    fc_nlinfo,
    /// `nl_info.nlh`
    nli_nlh,
    /// `nl_info.nl_net`
    nli_net,
    /// `nl_info.portid`
    nli_portid,
    /// `fib6_info.fib6_table`
    f6_table,
    /// `fib6_table.tb6_id`
    tb6_id,
    /// `fib6_info.fib6_dst.addr`
    f6_dst,
    /// `fib6_info.fib6_dst.plen` (int)
    f6_dst_len,
    /// `fib6_info.fib6_prefsrc.addr`
    f6_prefsrc,
    /// `fib6_info.fib6_metric`
    f6_metric,
    /// `fib6_info.fib6_protocol`
    f6_protocol,
    /// `fib6_info.fib6_type`
    f6_type,
    /// `fib6_info.nh`
    f6_nh,
    /// `fib6_info.fib6_nh` (the first `struct fib6_nh`)
    f6_fib6_nh,
    /// `nexthop.id`
    nh_id,
    /// `nexthop.net` (`possible_net_t`)
    nh_net,
    /// `sk_buff.sk`
    skb_sk,
    /// `sock.__sk_common.skc_net`
    sock_net,
    /// `sk_buff.cb` (a netlink skb's `struct netlink_skb_parms`)
    skb_cb,
    /// `netlink_skb_parms.sk`: the socket a netlink request was sent from
    nlcb_sk,
    /// `netlink_skb_parms.portid`: the sender's netlink port
    nlcb_portid,
}

/// Settings handed to the kernel-function programs as the `KCONFIG` global.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFunctionConfig {
    pub offsets: KernelFunctionOffsets,
    /// Wake userspace once this many bytes wait in the ring.
    pub wakeup_bytes: u32,
    pub _pad: u32,
}

impl KernelFunctionConfig {
    pub const DEFAULT: Self = Self {
        offsets: KernelFunctionOffsets::MISSING,
        wakeup_bytes: 256 * 1024,
        _pad: 0,
    };
}

const _: () =
    assert!(core::mem::size_of::<KernelFunctionOffsets>() == KernelFunctionOffsets::COUNT * 4);
const _: () =
    assert!(core::mem::size_of::<KernelFunctionConfig>() == KernelFunctionOffsets::COUNT * 4 + 8);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), made only of u32 fields with no padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::KernelFunctionOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelFunctionConfig {}
}
