//! Netlink attributes (`struct nlattr` / `struct rtattr`): the walker every reader shares.
//!
//! It walks as the kernel's `nla_for_each_attr` does: an attribute needs a 4-byte header whose
//! length covers that header and no more than what is left; the next one starts at the length
//! aligned to 4. A tail shorter than a header ends the walk (the kernel warns about "bytes
//! leftover" and acts on what it parsed); a header with a bad length is an `Err`, and the walk
//! ends there. Typed values are parsed by `netlink-packet-route` where a reader needs them
//! (decode); the walk itself is this loop, so every reader stops at the same byte.

use super::uapi::NLA_TYPE_MASK;

/// `NLA_HDRLEN`: `sizeof(struct nlattr)` (len u16, type u16).
const NLA_HDRLEN: usize = 4;

/// One attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr<'a> {
    /// Its type without the `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER` bits.
    pub kind: u16,
    /// Its value, without padding.
    pub value: &'a [u8],
    /// Header and value (`nla_len` bytes), without padding.
    pub whole: &'a [u8],
}

/// An attribute header whose length does not fit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a malformed attribute (length {len}, {left} bytes left)")]
pub struct AttrError {
    /// `nla_len` as written.
    pub len: u16,
    /// Bytes left from its header on.
    pub left: usize,
}

/// The attributes of `buf` (what follows a message's fixed header), in order. Readers that
/// act as the kernel does stop silently at a bad header with `.map_while(Result::ok)`.
pub fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs { rest: buf }
}

/// See [`attrs`].
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, AttrError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        let h = rest.get(..NLA_HDRLEN)?;
        let len = u16::from_ne_bytes([h[0], h[1]]);
        let kind = u16::from_ne_bytes([h[2], h[3]]) & NLA_TYPE_MASK;
        let whole = usize::from(len);
        if !(NLA_HDRLEN..=rest.len()).contains(&whole) {
            self.rest = &[];
            return Some(Err(AttrError {
                len,
                left: rest.len(),
            }));
        }
        self.rest = rest.get(whole.next_multiple_of(4)..).unwrap_or_default();
        Some(Ok(Attr {
            kind,
            value: &rest[NLA_HDRLEN..whole],
            whole: &rest[..whole],
        }))
    }
}

/// One attribute as the kernel writes it, padding included (for tests that build messages).
#[cfg(test)]
pub(crate) fn encode(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = u16::try_from(NLA_HDRLEN + value.len()).expect("an attribute of at most 64 KiB");
    let mut a = len.to_ne_bytes().to_vec();
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(value);
    a.resize(a.len().next_multiple_of(4), 0);
    a
}

#[cfg(test)]
mod tests {
    use super::{encode as attr, *};

    #[test]
    fn walks_padded_attributes_and_stops_where_the_kernel_does() {
        let mut buf = attr(1, &[10, 0, 0]);
        buf.extend(attr(0x8000 | 9, &[]));
        let all: Vec<_> = attrs(&buf).map(Result::unwrap).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].kind, all[0].value, all[0].whole.len()),
            (1, &[10, 0, 0][..], 7)
        );
        assert_eq!((all[1].kind, all[1].value.len()), (9, 0));
        // A tail shorter than a header ends the walk quietly.
        let mut tail = buf.clone();
        tail.extend_from_slice(&[1, 2]);
        assert_eq!(attrs(&tail).count(), 2);
        // A header longer than what is left, or shorter than itself: an error, then nothing.
        for bad in [[0xff, 0x00, 1, 0], [2, 0, 1, 0]] {
            let mut b = buf.clone();
            b.extend_from_slice(&bad);
            b.extend(attr(1, &[1]));
            let walked: Vec<_> = attrs(&b).collect();
            assert_eq!(walked.len(), 3);
            assert_eq!(
                walked[2],
                Err(AttrError {
                    len: u16::from_ne_bytes([bad[0], bad[1]]),
                    left: 12
                })
            );
        }
        // The last attribute's padding may be missing.
        assert_eq!(attrs(&buf[..7]).count(), 1);
    }
}
