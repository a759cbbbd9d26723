// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the XDP benchmark records about the machine it ran on, and its CPU pinning.
#include <string>

namespace stickylb::bench {

// Ticks of one CPU from /proc/stat: total and stolen by the hypervisor.
struct CpuTicks {
    unsigned long long total = 0, steal = 0;
};
CpuTicks cpu_ticks(int cpu);

struct Machine {
    std::string kernel, cpu_model, date, libbpf;
    long cpus = 0;
    int bench_cpu = 0;
    std::string loadavg;
    double steal_percent = -1;  // of the bench CPU's time during the run, stolen by the hypervisor
};
Machine machine_facts(int bench_cpu);

// Pins this thread to CPU REQUESTED (-1: the last online one); returns it.
int pin_to_cpu(int requested);

}  // namespace stickylb::bench
