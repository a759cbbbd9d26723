#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The PHP settings of a stickylb backend, "NAME VALUE" a line, for Apache's
# php_admin_value (apache-app-conf.sh). The one place for the session settings that
# the lab, its tests, the Vagrant VMs and docs/sessions.md use.
#
#   php-settings.sh SAVE_PATH [NAME=VALUE]...
#
# SAVE_PATH: session.save_path, the agent ("127.0.0.1:11311") or the memcached servers
# ("10.89.0.11:11211,10.89.0.12:11211"). NAME=VALUE overrides a setting in place, or
# adds one.
set -euo pipefail

# The lock settings stickylb documents: with them, 20 requests of one user queued on
# its session lock all get it in turn (the waiting handler retries often enough and
# long enough). memcached.sess_lock_wait_min/max in ms.
readonly SESSION_LOCK_WAIT_MIN=20
readonly SESSION_LOCK_WAIT_MAX=100
readonly SESSION_LOCK_RETRIES=100

[[ $# -ge 1 && -n "$1" ]] || {
    echo "usage: $0 SAVE_PATH [NAME=VALUE]..." >&2
    exit 2
}
save_path="$1"
shift

names=(display_errors log_errors max_execution_time session.save_handler session.save_path
    memcached.sess_binary_protocol memcached.sess_locking memcached.sess_lock_wait_min
    memcached.sess_lock_wait_max memcached.sess_lock_retries)
# max_execution_time: php.ini-production's, pinned, as the stock handler's lock expiry
# follows it. sess_binary_protocol Off: the agent speaks the text protocol.
declare -A values=(
    [display_errors]=Off
    [log_errors]=On
    [max_execution_time]=30
    [session.save_handler]=memcached
    [session.save_path]="${save_path}"
    [memcached.sess_binary_protocol]=Off
    [memcached.sess_locking]=On
    [memcached.sess_lock_wait_min]="${SESSION_LOCK_WAIT_MIN}"
    [memcached.sess_lock_wait_max]="${SESSION_LOCK_WAIT_MAX}"
    [memcached.sess_lock_retries]="${SESSION_LOCK_RETRIES}"
)
for override in "$@"; do
    [[ "${override}" =~ ^[A-Za-z0-9_.]+=[^\"\\[:cntrl:]]*$ ]] || {
        echo "php-settings: NAME=VALUE wanted (no quotes, backslashes or control characters): '${override}'" >&2
        exit 2
    }
    name="${override%%=*}"
    [[ -v "values[${name}]" ]] || names+=("${name}")
    values["${name}"]="${override#*=}"
done
for name in "${names[@]}"; do
    printf '%s %s\n' "${name}" "${values[${name}]}"
done
