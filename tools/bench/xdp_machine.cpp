// SPDX-License-Identifier: Apache-2.0
#include "xdp_machine.h"

#include <bpf/libbpf.h>
#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include "base/errors.h"

namespace stickylb::bench {
namespace {

std::string trim(std::string text) {
    const auto begin = text.find_first_not_of(" \t\n");
    const auto end = text.find_last_not_of(" \t\n");
    return begin == std::string::npos ? "" : text.substr(begin, end - begin + 1);
}

}  // namespace

CpuTicks cpu_ticks(int cpu) {
    std::ifstream stat("/proc/stat");
    const std::string name = "cpu" + std::to_string(cpu);
    for (std::string line; std::getline(stat, line);) {
        std::istringstream fields(line);
        std::string label;
        fields >> label;
        if (label != name)
            continue;
        CpuTicks ticks;
        unsigned long long value;
        for (int i = 0; fields >> value; ++i) {
            if (i < 8)  // user nice system idle iowait irq softirq steal (guest is counted in user)
                ticks.total += value;
            if (i == 7)
                ticks.steal = value;
        }
        return ticks;
    }
    return {};
}

Machine machine_facts(int bench_cpu) {
    Machine machine;
    utsname name{};
    if (uname(&name) == 0)
        machine.kernel = std::string(name.sysname) + " " + name.release + " " + name.version + " " + name.machine;
    std::ifstream cpuinfo("/proc/cpuinfo");
    for (std::string line; std::getline(cpuinfo, line);)
        if (line.rfind("model name", 0) == 0) {
            machine.cpu_model = trim(line.substr(line.find(':') + 1));
            break;
        }
    const std::time_t now = std::time(nullptr);
    char date[64];
    std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
    machine.date = date;
    machine.libbpf = libbpf_version_string();
    machine.cpus = sysconf(_SC_NPROCESSORS_ONLN);
    machine.bench_cpu = bench_cpu;
    std::ifstream loadavg("/proc/loadavg");
    std::getline(loadavg, machine.loadavg);
    return machine;
}

int pin_to_cpu(int requested) {
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    const int cpu = requested >= 0 ? requested : static_cast<int>(online - 1);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    stickylb::check_syscall(sched_setaffinity(0, sizeof(set), &set), "pin to CPU " + std::to_string(cpu));
    return cpu;
}

}  // namespace stickylb::bench
