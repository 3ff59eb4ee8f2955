"""Deletes several IPv4 policy rules by priority in ONE sendmsg() on a raw netlink socket.

Usage: batch_rule_del.py PRIORITY...
Each RTM_DELRULE names only FRA_PRIORITY and asks for an ack. Prints "<pid> <result>": the
acks' error codes joined by commas (0 on success), or "send-errno=<N>" when sendmsg() itself
failed (a refused send: rtnetlink saw none of it and sends no ack).
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

prios = [int(p) for p in sys.argv[1:]]
msgs = b""
for i, prio in enumerate(prios):
    # struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action; u32 flags
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    body += struct.pack("=HHI", 8, FRA_PRIORITY, prio)
    msgs += struct.pack("=IHHII", 16 + len(body), RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK, 5000 + i, 0) + body

s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
try:
    s.sendmsg([msgs], [], 0, (0, 0))
except OSError as e:
    print(os.getpid(), f"send-errno={e.errno}", flush=True)
    sys.exit(0)
codes = []
while len(codes) < len(prios):
    reply = s.recv(65536)
    off = 0
    while off + 16 <= len(reply):
        length, rtype, _, _, _ = struct.unpack_from("=IHHII", reply, off)
        if rtype == NLMSG_ERROR:
            codes.append(struct.unpack_from("=i", reply, off + 16)[0])
        off += (length + 3) & ~3
print(os.getpid(), ",".join(str(c) for c in codes), flush=True)
