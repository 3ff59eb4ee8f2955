//! What the running kernel offers: struct offsets from its BTF, and the privileges and features
//! tracing needs, each checked and named precisely when missing.

pub mod btf;
pub mod btf_kfunc;
pub mod requirements;
