//! Who is asking: the current task's identity, and its full details once per process image.

use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid, bpf_ktime_get_ns, bpf_probe_read_kernel_str_bytes,
        bpf_probe_read_user_buf, generated,
    },
};
use routeguard_common::{
    counter, kind, RecordHeader, TaskInfo, TaskRecord, ANCESTRY_MAX, ARGS_MAX, COMM_LEN,
    WIRE_VERSION,
};

use super::{
    kern::{bound, config_field, read},
    maps::{count, ExecInfo, EVENTS, EXECS, TASK_SCRATCH, TASK_SEEN},
};

/// Fills the identity every request carries.
#[inline(always)]
pub fn current_info(info: &mut TaskInfo) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: helpers without preconditions.
    let (task, cgroup_id) = unsafe { (bpf_get_current_task(), bpf_get_current_cgroup_id()) };
    info.pid = (pid_tgid >> 32) as u32;
    info.tid = pid_tgid as u32;
    info.uid = uid_gid as u32;
    info.gid = (uid_gid >> 32) as u32;
    info.cgroup_id = cgroup_id;
    info.start_time = read::<u64>(task, config_field!(offsets.task_start_time)).unwrap_or(0);
    // Straight into the record: the wrapper returning an array costs ~100 byte copies here.
    // SAFETY: the buffer is COMM_LEN bytes; the helper zeroes it if it fails.
    unsafe {
        generated::bpf_get_current_comm(
            info.comm.as_mut_ptr().cast::<core::ffi::c_void>(),
            COMM_LEN as u32,
        )
    };
}

/// Sends the task's full details unless userspace already has them for this process image.
/// Must run before the request record is written, so userspace sees details first.
#[inline(always)]
pub fn announce(task: u64, info: &TaskInfo) {
    if let Some(seen) = TASK_SEEN.get_ptr(info.pid) {
        // SAFETY: the pointer comes from a successful map lookup.
        if unsafe { *seen } == info.start_time {
            return;
        }
    }
    if send_details(task, info).is_ok() {
        let _ = TASK_SEEN.insert(info.pid, info.start_time, 0);
    } else {
        count(counter::TASK_LOST);
    }
}

#[inline(always)]
fn send_details(task: u64, info: &TaskInfo) -> Result<(), ()> {
    let rec = TASK_SCRATCH.get_ptr_mut(0).ok_or(())?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let rec: &mut TaskRecord = unsafe { &mut *rec };
    rec.header = RecordHeader {
        kind: kind::TASK,
        version: WIRE_VERSION,
        len: core::mem::size_of::<TaskRecord>() as u32,
    };
    // SAFETY: helper without preconditions.
    rec.ts_ns = unsafe { bpf_ktime_get_ns() };
    rec.task = *info;
    ancestry(task, rec);
    exe_name(task, rec);
    exe_id(task, rec);
    cgroup_name(task, rec);
    if !from_exec(info.pid, rec) {
        rec.exe_path_len = 0;
        rec.args_len = read_args(task, &mut rec.args);
    }
    // A full ring is counted by the caller, as TASK_LOST only: this is not a lost event.
    EVENTS
        .output::<TaskRecord>(&*rec, BPF_RB_NO_WAKEUP as u64)
        .map_err(|_| ())
}

/// Parent chain, nearest first, up to and including pid 1.
#[inline(always)]
fn ancestry(task: u64, rec: &mut TaskRecord) {
    let parent_off = config_field!(offsets.task_real_parent);
    let tgid_off = config_field!(offsets.task_tgid);
    let comm_off = config_field!(offsets.task_comm);
    rec.ppid = 0;
    rec.ancestry_len = 0;
    let mut cur = read::<u64>(task, parent_off).unwrap_or(0);
    let mut i = 0;
    while i < ANCESTRY_MAX {
        let Some(pid) = read::<u32>(cur, tgid_off) else {
            break;
        };
        if pid == 0 {
            break;
        }
        if i == 0 {
            rec.ppid = pid;
        }
        rec.ancestry[i].pid = pid;
        rec.ancestry[i].comm = read::<[u8; COMM_LEN]>(cur, comm_off).unwrap_or([0; COMM_LEN]);
        rec.ancestry_len = i as u32 + 1;
        if pid == 1 {
            break;
        }
        cur = read::<u64>(cur, parent_off).unwrap_or(0);
        i += 1;
    }
}

/// argv from the process's own memory (`mm->arg_start..arg_end`); returns the bytes read.
#[inline(always)]
pub fn read_args(task: u64, dst: &mut [u8; ARGS_MAX]) -> u32 {
    let Some(mm) = read::<u64>(task, config_field!(offsets.task_mm)) else {
        return 0;
    };
    let start = read::<u64>(mm, config_field!(offsets.mm_arg_start)).unwrap_or(0);
    let end = read::<u64>(mm, config_field!(offsets.mm_arg_end)).unwrap_or(0);
    if start == 0 || end <= start {
        return 0;
    }
    let mut len = (end - start) as usize;
    if len > ARGS_MAX - 1 {
        len = ARGS_MAX - 1;
    }
    // The mask proves the bound to the verifier (6.1's rejects a merely compared length); it
    // must survive optimisation (see `kern::bound`).
    let len = bound(len as u64, (ARGS_MAX - 1) as u64) as usize;
    // SAFETY: len ≤ ARGS_MAX - 1 fits the destination; faults are reported as Err.
    match unsafe { bpf_probe_read_user_buf(start as *const u8, &mut dst[..len]) } {
        Ok(()) => len as u32,
        Err(_) => 0,
    }
}

/// The executable's name (`mm->exe_file->f_path.dentry->d_name.name`).
#[inline(always)]
fn exe_name(task: u64, rec: &mut TaskRecord) {
    rec.exe_name[0] = 0;
    let Some(mm) = read::<u64>(task, config_field!(offsets.task_mm)) else {
        return;
    };
    let file = read::<u64>(mm, config_field!(offsets.mm_exe_file)).unwrap_or(0);
    let dentry = read::<u64>(file, config_field!(offsets.file_dentry)).unwrap_or(0);
    if let Some(name) = read::<u64>(dentry, config_field!(offsets.dentry_name)) {
        // SAFETY: a kernel string read with fault handling, bounded by the destination.
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, &mut rec.exe_name) };
    }
}

/// The executable's identity (`mm->exe_file->f_inode`: `i_sb->s_dev`, `i_ino`), taken now
/// because the process may be gone, or its /proc entry another process's, when userspace looks;
/// and because, unlike `comm` or a path, a process cannot choose it. 0 when an offset is missing.
#[inline(always)]
fn exe_id(task: u64, rec: &mut TaskRecord) {
    rec.exe_dev = 0;
    rec._pad = 0;
    rec.exe_ino = 0;
    let Some(mm) = read::<u64>(task, config_field!(offsets.task_mm)) else {
        return;
    };
    let file = read::<u64>(mm, config_field!(offsets.mm_exe_file)).unwrap_or(0);
    let inode = read::<u64>(file, config_field!(offsets.file_inode)).unwrap_or(0);
    let sb = read::<u64>(inode, config_field!(offsets.inode_sb)).unwrap_or(0);
    let (Some(ino), Some(dev)) = (
        read::<u64>(inode, config_field!(offsets.inode_ino)),
        read::<u32>(sb, config_field!(offsets.super_block_dev)),
    ) else {
        return;
    };
    rec.exe_dev = dev;
    rec.exe_ino = ino;
}

/// Name of the task's cgroup v2 leaf directory (`task->cgroups->dfl_cgrp->kn->name`), so the
/// unit is known even if the cgroup is gone by the time userspace looks.
#[inline(always)]
fn cgroup_name(task: u64, rec: &mut TaskRecord) {
    rec.cgroup_name[0] = 0;
    let css_set = read::<u64>(task, config_field!(offsets.task_cgroups)).unwrap_or(0);
    let cgrp = read::<u64>(css_set, config_field!(offsets.css_set_dfl_cgrp)).unwrap_or(0);
    let kn = read::<u64>(cgrp, config_field!(offsets.cgroup_kn)).unwrap_or(0);
    if let Some(name) = read::<u64>(kn, config_field!(offsets.kernfs_node_name)) {
        // SAFETY: a kernel string read with fault handling, bounded by the destination.
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, &mut rec.cgroup_name) };
    }
}

/// Path and argv as exec'd, when the exec happened while routeguard was loaded.
#[inline(always)]
fn from_exec(tgid: u32, rec: &mut TaskRecord) -> bool {
    let Some(exec) = EXECS.get_ptr(tgid) else {
        return false;
    };
    // SAFETY: a live map value; the copy below goes into the per-CPU scratch record.
    let exec: &ExecInfo = unsafe { &*exec };
    rec.exe_path = exec.path;
    rec.exe_path_len = exec.path_len;
    rec.args = exec.args;
    rec.args_len = exec.args_len;
    true
}
