// SPDX-License-Identifier: Apache-2.0
#pragma once
// The kinds of health check: one type for the config schema and the checker, so a
// kind added here reaches both (its YAML name in config.cpp, its probe in health.cpp).

namespace stickylb {

enum class HealthCheckKind { tcp, http };

}  // namespace stickylb
