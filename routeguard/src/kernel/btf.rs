//! Kernel struct offsets read from the running kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! Nothing is compiled in: each member the programs read is looked up by name (descending into
//! anonymous structs and unions) and checked for its size. A member that is absent, a bitfield,
//! or of an unexpected size is left [`OFFSET_MISSING`] with the reason, so the programs skip what
//! needs it instead of reading a wrong offset.

use std::path::Path;

use btf_rs::{Btf, Type};
use routeguard_common::{KernelOffsets, OFFSET_MISSING, REGS_BLOCK_BYTES};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read kernel BTF at {path}: {source} (routeguard needs a kernel built with CONFIG_DEBUG_INFO_BTF=y)")]
    Read { path: String, source: btf_rs::Error },
    #[error("kernel BTF has no `struct {0}`")]
    NoStruct(String),
    #[error("`struct {ty}` has no member `{member}`")]
    NoMember { ty: String, member: String },
    #[error("`{path}` is a bitfield; it cannot be read by offset")]
    Bitfield { path: String },
    #[error("`{path}` is {actual} bytes, expected {expected}")]
    Size {
        path: String,
        expected: String,
        actual: usize,
    },
    #[error("`{path}`: {member} is not a struct or union")]
    NotAggregate { path: String, member: String },
    #[error("{0}")]
    Layout(String),
    #[error("`{path}`: {source}")]
    Lookup { path: String, source: btf_rs::Error },
}

/// A member the programs read, and why it could not be resolved.
#[derive(Debug)]
pub struct Missing {
    pub field: &'static str,
    pub reason: BtfError,
}

/// Offsets and what could not be resolved.
#[derive(Debug)]
pub struct Resolved {
    pub offsets: KernelOffsets,
    pub missing: Vec<Missing>,
}

/// One member to resolve: the `KernelOffsets` field it fills, `struct`, the member path, and the
/// size the programs read there.
struct Want {
    field: &'static str,
    ty: &'static str,
    path: &'static [&'static str],
    /// Sizes the member may have; the programs read the first of them (the low bytes).
    sizes: &'static [usize],
    slot: fn(&mut KernelOffsets) -> &mut u32,
}

const PTR: usize = 8;

macro_rules! want {
    ($field:ident: $ty:literal . [$($m:literal),+] = $($size:tt)|+) => {
        Want {
            field: stringify!($field),
            ty: $ty,
            path: &[$($m),+],
            sizes: &[$($size),+],
            slot: |o| &mut o.$field,
        }
    };
}

const WANTS: &[Want] = &[
    want!(task_real_parent: "task_struct".["real_parent"] = PTR),
    want!(task_tgid: "task_struct".["tgid"] = 4),
    want!(task_comm: "task_struct".["comm"] = 16),
    want!(task_mm: "task_struct".["mm"] = PTR),
    want!(task_files: "task_struct".["files"] = PTR),
    want!(task_start_time: "task_struct".["start_time"] = 8),
    want!(task_cgroups: "task_struct".["cgroups"] = PTR),
    want!(css_set_dfl_cgrp: "css_set".["dfl_cgrp"] = PTR),
    want!(cgroup_kn: "cgroup".["kn"] = PTR),
    want!(kernfs_node_name: "kernfs_node".["name"] = PTR),
    want!(mm_arg_start: "mm_struct".["arg_start"] = 8),
    want!(mm_arg_end: "mm_struct".["arg_end"] = 8),
    want!(mm_exe_file: "mm_struct".["exe_file"] = PTR),
    want!(file_dentry: "file".["f_path", "dentry"] = PTR),
    want!(file_private_data: "file".["private_data"] = PTR),
    want!(file_inode: "file".["f_inode"] = PTR),
    want!(inode_mode: "inode".["i_mode"] = 2),
    want!(dentry_name: "dentry".["d_name", "name"] = PTR),
    want!(files_fdt: "files_struct".["fdt"] = PTR),
    want!(fdtable_max_fds: "fdtable".["max_fds"] = 4),
    want!(fdtable_fd: "fdtable".["fd"] = PTR),
    want!(socket_sk: "socket".["sk"] = PTR),
    want!(sock_family: "sock".["__sk_common", "skc_family"] = 2),
    want!(sock_net: "sock".["__sk_common", "skc_net"] = PTR),
    want!(sock_protocol: "sock".["sk_protocol"] = 2),
    want!(net_ns_inum: "net".["ns", "inum"] = 4),
    want!(task_pid: "task_struct".["pid"] = 4),
    want!(task_nsproxy: "task_struct".["nsproxy"] = PTR),
    want!(nsproxy_net_ns: "nsproxy".["net_ns"] = PTR),
    want!(netlink_sock_portid: "netlink_sock".["portid"] = 4),
    want!(skb_sk: "sk_buff".["sk"] = PTR),
    want!(skb_data: "sk_buff".["data"] = PTR),
    want!(skb_len: "sk_buff".["len"] = 4),
    // x86_64's saved user registers; other architectures name them differently, so there these
    // are missing and the syscall path says it cannot run.
    want!(regs_arg0: "pt_regs".["di"] = 8),
    want!(regs_arg1: "pt_regs".["si"] = 8),
    want!(regs_arg2: "pt_regs".["dx"] = 8),
    want!(regs_syscall_nr: "pt_regs".["orig_ax"] = 8),
    // `unsigned long cs` until 6.9; since then a u16 in a union with FRED's `csx`. The selector
    // is the low 16 bits either way, and that is what the programs read.
    want!(regs_cs: "pt_regs".["cs"] = 2 | 8),
    // The executable's (device, inode): identities a process cannot choose (allow-lists).
    want!(inode_ino: "inode".["i_ino"] = 8),
    want!(inode_sb: "inode".["i_sb"] = PTR),
    want!(super_block_dev: "super_block".["s_dev"] = 4),
    // Whether a sender holds CAP_NET_ADMIN over its socket's namespace (budgets): its
    // credentials against the user namespace that owns the network namespace.
    want!(task_cred: "task_struct".["cred"] = PTR),
    want!(cred_cap_effective: "cred".["cap_effective"] = 8),
    want!(cred_euid: "cred".["euid"] = 4),
    want!(cred_user_ns: "cred".["user_ns"] = PTR),
    want!(user_ns_parent: "user_namespace".["parent"] = PTR),
    want!(user_ns_level: "user_namespace".["level"] = 4),
    want!(user_ns_owner: "user_namespace".["owner"] = 4),
    want!(net_user_ns: "net".["user_ns"] = PTR),
];

/// Fields without which no netlink request can be told from any other write: capture is off.
pub const REQUIRED: &[&str] = &[
    "task_files",
    "files_fdt",
    "fdtable_max_fds",
    "fdtable_fd",
    "file_private_data",
    "file_inode",
    "inode_mode",
    "socket_sk",
    "sock_family",
    "sock_protocol",
    "regs_arg0",
    "regs_arg1",
    "regs_arg2",
    "regs_syscall_nr",
    "regs_cs",
    "regs_block",
];

/// Resolves every offset from the BTF file at `path`.
pub fn resolve(path: &Path) -> Result<Resolved, BtfError> {
    let btf = Btf::from_file(path).map_err(|source| BtfError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(resolve_with(&btf))
}

pub fn resolve_with(btf: &Btf) -> Resolved {
    let mut offsets = KernelOffsets::MISSING;
    let mut missing = Vec::new();
    for want in WANTS {
        match member_offset(btf, want.ty, want.path, want.sizes) {
            Ok(off) => *(want.slot)(&mut offsets) = off,
            Err(reason) => {
                *(want.slot)(&mut offsets) = OFFSET_MISSING;
                missing.push(Missing {
                    field: want.field,
                    reason,
                });
            }
        }
    }
    place_regs_block(&mut offsets, &mut missing);
    Resolved { offsets, missing }
}

/// Chooses where the programs' single read of `pt_regs` starts: the lowest `regs_*` member,
/// provided every one lies within `REGS_BLOCK_BYTES` of it on an 8-byte boundary. Otherwise the
/// `regs_*` offsets are withdrawn, with the reason.
fn place_regs_block(offsets: &mut KernelOffsets, missing: &mut Vec<Missing>) {
    let members = [
        offsets.regs_arg0,
        offsets.regs_arg1,
        offsets.regs_arg2,
        offsets.regs_syscall_nr,
        offsets.regs_cs,
    ];
    if members.contains(&OFFSET_MISSING) {
        return;
    }
    let base = members.iter().copied().min().unwrap_or(0);
    let fits = members
        .iter()
        .all(|&m| (m - base).is_multiple_of(8) && m - base + 8 <= REGS_BLOCK_BYTES);
    if fits {
        offsets.regs_block = base;
        return;
    }
    for slot in [
        &mut offsets.regs_arg0,
        &mut offsets.regs_arg1,
        &mut offsets.regs_arg2,
        &mut offsets.regs_syscall_nr,
        &mut offsets.regs_cs,
    ] {
        *slot = OFFSET_MISSING;
    }
    missing.push(Missing {
        field: "regs_block",
        reason: BtfError::Layout(format!(
            "pt_regs members at {members:?} do not fit one {REGS_BLOCK_BYTES}-byte read"
        )),
    });
}

/// Byte offset of `ty.path[0].path[1]…`, checked to be a whole member of one of `sizes` bytes.
pub fn member_offset(btf: &Btf, ty: &str, path: &[&str], sizes: &[usize]) -> Result<u32, BtfError> {
    let full = format!("{ty}.{}", path.join("."));
    let lookup = |source| BtfError::Lookup {
        path: full.clone(),
        source,
    };
    let mut current = find_struct(btf, ty)?;
    let mut bits = 0u32;
    for (i, name) in path.iter().enumerate() {
        let (member_bits, member) =
            find_member(btf, &current, name, &full)?.ok_or_else(|| BtfError::NoMember {
                ty: ty.to_string(),
                member: name.to_string(),
            })?;
        if member.bitfield_size().is_some_and(|b| b != 0) {
            return Err(BtfError::Bitfield { path: full });
        }
        bits += member_bits;
        let member_ty =
            strip(btf, btf.resolve_chained_type(&member).map_err(lookup)?).map_err(lookup)?;
        if i + 1 == path.len() {
            let actual = type_size(btf, &member_ty).map_err(lookup)?;
            if !sizes.contains(&actual) {
                let expected = sizes.iter().map(usize::to_string).collect::<Vec<_>>();
                return Err(BtfError::Size {
                    path: full,
                    expected: expected.join(" or "),
                    actual,
                });
            }
        } else {
            current = match member_ty {
                Type::Struct(s) | Type::Union(s) => s,
                _ => {
                    return Err(BtfError::NotAggregate {
                        path: full,
                        member: name.to_string(),
                    })
                }
            };
        }
    }
    if !bits.is_multiple_of(8) {
        return Err(BtfError::Bitfield { path: full });
    }
    Ok(bits / 8)
}

fn find_struct(btf: &Btf, name: &str) -> Result<btf_rs::Struct, BtfError> {
    let types = btf
        .resolve_types_by_name(name)
        .map_err(|_| BtfError::NoStruct(name.to_string()))?;
    types
        .into_iter()
        .find_map(|t| match t {
            Type::Struct(s) => Some(s),
            _ => None,
        })
        .ok_or_else(|| BtfError::NoStruct(name.to_string()))
}

/// Finds `name` among the members of `s`, looking inside anonymous members too; returns its
/// offset in bits from the start of `s`.
fn find_member(
    btf: &Btf,
    s: &btf_rs::Struct,
    name: &str,
    full: &str,
) -> Result<Option<(u32, btf_rs::Member)>, BtfError> {
    let lookup = |source| BtfError::Lookup {
        path: full.to_string(),
        source,
    };
    for member in &s.members {
        let member_name = btf.resolve_name(member).unwrap_or_default();
        if member_name == name {
            return Ok(Some((member.bit_offset(), member.clone())));
        }
        if member_name.is_empty() {
            if let Type::Struct(inner) | Type::Union(inner) =
                strip(btf, btf.resolve_chained_type(member).map_err(lookup)?).map_err(lookup)?
            {
                if let Some((off, m)) = find_member(btf, &inner, name, full)? {
                    return Ok(Some((member.bit_offset() + off, m)));
                }
            }
        }
    }
    Ok(None)
}

/// Follows typedefs and qualifiers to the underlying type.
fn strip(btf: &Btf, mut ty: Type) -> Result<Type, btf_rs::Error> {
    for _ in 0..32 {
        ty = match &ty {
            Type::Typedef(t) => btf.resolve_chained_type(t)?,
            Type::Volatile(t) | Type::Const(t) | Type::Restrict(t) => {
                btf.resolve_chained_type(t)?
            }
            Type::TypeTag(t) => btf.resolve_chained_type(t)?,
            _ => return Ok(ty),
        };
    }
    Ok(ty)
}

fn type_size(btf: &Btf, ty: &Type) -> Result<usize, btf_rs::Error> {
    Ok(match ty {
        Type::Int(i) => i.size(),
        Type::Ptr(_) => PTR,
        Type::Enum(e) => e.size(),
        Type::Enum64(e) => e.size(),
        Type::Struct(s) | Type::Union(s) => s.size(),
        Type::Array(a) => {
            let elem = strip(btf, btf.resolve_chained_type(a)?)?;
            a.len() * type_size(btf, &elem)?
        }
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs against this machine's kernel BTF: every field resolves on the kernels we support.
    #[test]
    fn resolves_every_offset_on_the_running_kernel() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: {VMLINUX_BTF} is absent on this kernel");
            return;
        }
        let resolved = resolve(Path::new(VMLINUX_BTF)).expect("read BTF");
        assert!(
            resolved.missing.is_empty(),
            "missing: {:?}",
            resolved.missing
        );
        // comm sits after real_parent in every task_struct layout.
        assert!(resolved.offsets.task_comm > resolved.offsets.task_real_parent);
        // x86_64: dx, si, di, orig_ax, ip, cs — one 48-byte read starting at dx.
        assert_eq!(resolved.offsets.regs_block, resolved.offsets.regs_arg2);
    }

    #[test]
    fn names_what_is_missing() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: {VMLINUX_BTF} is absent on this kernel");
            return;
        }
        let btf = Btf::from_file(VMLINUX_BTF).unwrap();
        let err = member_offset(&btf, "task_struct", &["no_such_member"], &[8]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`struct task_struct` has no member `no_such_member`"
        );
        let err = member_offset(&btf, "task_struct", &["tgid"], &[8]).unwrap_err();
        assert_eq!(err.to_string(), "`task_struct.tgid` is 4 bytes, expected 8");
        assert!(matches!(
            member_offset(&btf, "no_such_struct", &["x"], &[1]),
            Err(BtfError::NoStruct(_))
        ));
    }
}
