"""Replaces a route with one RTM_NEWROUTE (NLM_F_REPLACE) longer than routeguard's copy limit.

Usage: long_route_replace.py DEV BYTES
Sends, with sendto(), a request for 10.77.0.0/24 dev DEV whose message is padded to about BYTES
bytes with an attribute type the kernel ignores (above RTA_MAX; rtnetlink parses route requests
liberally). Prints "<pid> <error>" where error is the kernel's (negative) ack code, 0 on success.
"""
import os
import socket
import struct
import sys

RTM_NEWROUTE = 24
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_CREATE = 0x400
NLM_F_REPLACE = 0x100
RTA_DST = 1
RTA_OIF = 4
# Not a route attribute on any kernel: skipped by the liberal parse rtnetlink uses.
RTA_PADDING = 0x3FF0
NLMSG_ERROR = 2
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

dev, size = sys.argv[1], int(sys.argv[2])

# struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags
body = struct.pack(
    "=BBBBBBBBI", socket.AF_INET, 24, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_LINK, RTN_UNICAST, 0
)
attrs = struct.pack("=HH4s", 8, RTA_DST, socket.inet_aton("10.77.0.0"))
attrs += struct.pack("=HHI", 8, RTA_OIF, socket.if_nametoindex(dev))
pad = max(0, size - 16 - len(body) - len(attrs) - 4) & ~3
attrs += struct.pack("=HH", 4 + pad, RTA_PADDING) + b"\0" * pad
payload = body + attrs
seq = 4343
flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
msg = struct.pack("=IHHII", 16 + len(payload), RTM_NEWROUTE, flags, seq, 0) + payload

s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.sendto(msg, (0, 0))
reply, _ = s.recvfrom(65536)
_, rtype, _, rseq, _ = struct.unpack_from("=IHHII", reply)
if rtype != NLMSG_ERROR or rseq != seq:
    sys.exit(f"unexpected reply type {rtype} seq {rseq}")
(error,) = struct.unpack_from("=i", reply, 16)
print(os.getpid(), error, flush=True)
