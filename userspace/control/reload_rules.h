// SPDX-License-Identifier: Apache-2.0
#pragma once
// What a reload (SIGHUP, `stickylb daemon reload`) may change: everything but the
// keys of one table, which take effect on restart. A reload compares them, warns
// about the ones that changed and keeps the running values, all from that table.
#include <string_view>
#include <vector>

#include "control/config.h"

namespace stickylb {

// The restart-only keys whose value differs between RUNNING and NEXT, in table order.
std::vector<std::string_view> restart_only_changes(const DaemonConfig& running, const DaemonConfig& next);
// Every restart-only key of NEXT set back to RUNNING's value.
void keep_restart_only_keys(DaemonConfig& next, const DaemonConfig& running);
// The names of all restart-only keys, in table order (docs and tests).
std::vector<std::string_view> restart_only_keys();

}  // namespace stickylb
