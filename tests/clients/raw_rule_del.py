"""Deletes an IPv4 policy rule by priority with a hand-built RTM_DELRULE on a raw netlink socket.

Usage: raw_rule_del.py sendto|write|writev|writev-split PRIORITY
`sendto` uses sendto()/recvfrom(), `write` uses write()/read() on the socket's fd, `writev`
writev() with the header and the body in two iovecs (`writev-split`: the header itself split in
two, then the body), then read(): the system calls routeguard must see besides sendmsg().
Prints "<pid> <error>" where error is the kernel's (negative) ack code, 0 on success.
"""
import os
import socket
import struct
import sys

RTM_DELRULE = 33
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
FRA_PRIORITY = 6
NLMSG_ERROR = 2

mode, prio = sys.argv[1], int(sys.argv[2])

# struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action; u32 flags
body = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
attr = struct.pack("=HHI", 8, FRA_PRIORITY, prio)
seq = 4242
payload = body + attr
msg = struct.pack("=IHHII", 16 + len(payload), RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + payload

s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
if mode == "sendto":
    s.sendto(msg, (0, 0))
    reply, _ = s.recvfrom(65536)
elif mode == "write":
    os.write(s.fileno(), msg)
    reply = os.read(s.fileno(), 65536)
elif mode == "writev":
    os.writev(s.fileno(), [msg[:16], msg[16:]])
    reply = os.read(s.fileno(), 65536)
elif mode == "writev-split":
    os.writev(s.fileno(), [msg[:8], msg[8:16], msg[16:]])
    reply = os.read(s.fileno(), 65536)
else:
    sys.exit("mode must be sendto, write, writev or writev-split")

_, rtype, _, rseq, _ = struct.unpack_from("=IHHII", reply)
if rtype != NLMSG_ERROR or rseq != seq:
    sys.exit(f"unexpected reply type {rtype} seq {rseq}")
(error,) = struct.unpack_from("=i", reply, 16)
print(os.getpid(), error, flush=True)
