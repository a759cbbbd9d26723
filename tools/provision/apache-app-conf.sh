#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Prints the Apache config of the PHP application for one backend
# (apache-app.conf.in filled in; PHP settings from php-settings.sh).
#
#   apache-app-conf.sh --name beN --doc-root DIR --run-dir DIR --access-log FILE
#                      --save-path SAVE_PATH [--php-ini NAME=VALUE]...
#
# --name     the backend's name (GET / answers "backend=NAME")
# --doc-root where tools/provision/php/ is installed (readable by www-data)
# --run-dir  writable by www-data (hold.php writes hold.pid there)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

name="" doc_root="" run_dir="" access_log="" save_path="" php_ini=()
while (($#)); do
    [[ $# -ge 2 ]] || { echo "apache-app-conf: $1 needs a value" >&2; exit 2; }
    case "$1" in
    --name) name="$2" ;;
    --doc-root) doc_root="$2" ;;
    --run-dir) run_dir="$2" ;;
    --access-log) access_log="$2" ;;
    --save-path) save_path="$2" ;;
    --php-ini) php_ini+=("$2") ;;
    *) echo "apache-app-conf: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift 2
done
for required in name doc_root run_dir access_log save_path; do
    [[ -n "${!required}" ]] || { echo "apache-app-conf: --${required//_/-} is required" >&2; exit 2; }
done

settings="" name_value=""
php_settings="$("${here}/php-settings.sh" "${save_path}" "${php_ini[@]}")"
while IFS= read -r name_value; do
    settings+="php_admin_value ${name_value%% *} \"${name_value#* }\""$'\n'
done <<<"${php_settings}"
template="$(<"${here}/apache-app.conf.in")"
template="${template//@NAME@/${name}}"
template="${template//@DOC_ROOT@/${doc_root}}"
template="${template//@RUN_DIR@/${run_dir}}"
template="${template//@ACCESS_LOG@/${access_log}}"
template="${template//@PHP_SETTINGS@/${settings}}"
printf '%s\n' "${template}"
