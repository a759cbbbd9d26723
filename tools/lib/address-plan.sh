# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash disable=SC2034 # read by the scripts that source it
# The lab's address plan: one Ethernet segment, IPv4 10.89.0.0/24 and IPv6
# fd00:89::/64, only ever inside network namespaces. The lab, the demo, the
# benchmarks and the tests (CMake reads these lines for the C++ fixtures) all use it.
# Plain NAME=VALUE lines only: it is read by more than bash.
LAB_NET4=10.89.0
LAB_NET6=fd00:89:
LAB_VIP4=10.89.0.250
LAB_VIP6=fd00:89::250
LAB_LB_HOST=2
LAB_MAX_LBS=7
LAB_CLIENT_HOST=100
LAB_CLIENT_EXTRA_LAST=240
LAB_BACKEND_BASE=20
LAB_MAX_BACKENDS=32
LAB_MEMCACHED_BASE=10
LAB_MAX_MEMCACHED=9
LAB_MEMCACHED_PORT=11211
LAB_METRICS_PORT=9478
LAB_AGENT_METRICS_PORT=9479
