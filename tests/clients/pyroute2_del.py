"""Deletes one route and one policy rule with pyroute2, a netlink library other than iproute2.

Usage: pyroute2_del.py DST TABLE RULE_PRIORITY
Run inside the test's namespace (`ip netns exec NS python3 ...`). Prints this process's pid.
"""
import os
import sys

from pyroute2 import IPRoute

dst, table, prio = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print(os.getpid(), flush=True)
with IPRoute() as ipr:
    ipr.route("del", dst=dst, table=table)
    ipr.rule("del", priority=prio, table=table)
