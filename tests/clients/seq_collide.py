"""Sends RTM_DELRULE requests for one priority carrying the sequence numbers iproute2 is about to
use (it starts at time(NULL) and adds one per request), to try to take the attribution of a
removal `ip` makes in the same namespace.

Usage: seq_collide.py refused|unread PRIORITY HOLD_SECONDS
  refused: NLM_F_ACK set; the acks (EPERM for an unprivileged sender) are read once a line comes
           on stdin, so the requests are still unanswered while `ip` removes the rule.
  unread:  no NLM_F_ACK, and nothing ever read from the socket.
Prints "<pid> <seq>,<seq>,..." once every request went out; in `refused` mode, then the acks'
error codes, comma-separated, on a second line. Keeps the socket open for HOLD_SECONDS.
"""
import os
import socket
import struct
import sys
import time

RTM_DELRULE = 33
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
FRA_PRIORITY = 6
NLMSG_ERROR = 2

mode, prio, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
if mode not in ("refused", "unread"):
    sys.exit("mode must be refused or unread")
flags = NLM_F_REQUEST | (NLM_F_ACK if mode == "refused" else 0)

# struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action; u32 flags
body = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
payload = body + struct.pack("=HHI", 8, FRA_PRIORITY, prio)
now = int(time.time())
seqs = list(range(now - 1, now + 6))

s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
for seq in seqs:
    msg = struct.pack("=IHHII", 16 + len(payload), RTM_DELRULE, flags, seq, 0) + payload
    s.send(msg)
print(os.getpid(), ",".join(map(str, seqs)), flush=True)
if mode == "refused":
    sys.stdin.readline()
    errors = []
    for seq in seqs:
        reply = s.recv(65536)
        _, rtype, _, rseq, _ = struct.unpack_from("=IHHII", reply)
        if rtype != NLMSG_ERROR or rseq != seq:
            sys.exit(f"unexpected reply type {rtype} seq {rseq}")
        errors.append(str(struct.unpack_from("=i", reply, 16)[0]))
    print(",".join(errors), flush=True)
time.sleep(hold)
