#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# A stickylb PHP backend host (as root): Debian's Apache 2.4 prefork + mod_php +
# php-memcached serving tools/provision/php/ (config from apache-app-conf.sh, PHP
# settings from php-settings.sh: the lab's), and stickylb-agent as a systemd service
# (userspace/agent/stickylb-agent.service, settings from agent-config.sh).
# The network part (VIP on lo, arp_ignore/announce) is host-network.sh's.
#
#   host-backend.sh --name beN --upstream HOST:PORT [--upstream HOST:PORT]...
#                   [--sessions agent|stock] [--php-ini NAME=VALUE]...
#
# --sessions agent (default): PHP -> stickylb-agent on 127.0.0.1:11311 -> memcached;
# stock: PHP talks to the memcached servers (--upstream) directly.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
readonly AGENT_LISTEN=127.0.0.1:11311
readonly DOC_ROOT=/var/www/stickylb
readonly RUN_DIR=/var/lib/stickylb-app/run

name="" sessions=agent upstreams=() php_ini=()
while (($#)); do
    [[ $# -ge 2 ]] || { echo "host-backend: $1 needs a value" >&2; exit 2; }
    case "$1" in
    --name) name="$2" ;;
    --upstream) upstreams+=("$2") ;;
    --sessions) sessions="$2" ;;
    --php-ini) php_ini+=(--php-ini "$2") ;;
    *) echo "host-backend: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift 2
done
[[ -n "${name}" ]] || { echo "host-backend: --name is required" >&2; exit 2; }
((${#upstreams[@]} >= 1)) || { echo "host-backend: at least one --upstream is required" >&2; exit 2; }
[[ "${sessions}" == agent || "${sessions}" == stock ]] || { echo "host-backend: --sessions agent|stock" >&2; exit 2; }

if [[ "${sessions}" == agent ]]; then
    "${here}/host-build.sh" stickylb-agent
    mkdir -p /etc/stickylb
    agent_args=()
    for upstream in "${upstreams[@]}"; do agent_args+=(--upstream "${upstream}"); done
    "${here}/agent-config.sh" --backend "${name}" --listen "${AGENT_LISTEN}" "${agent_args[@]}" \
        >/etc/stickylb/agent.yaml
    install -m 0644 "${repo}/userspace/agent/stickylb-agent.service" /etc/systemd/system/stickylb-agent.service
    systemctl daemon-reload
    systemctl enable stickylb-agent.service
    systemctl restart stickylb-agent.service
    save_path="${AGENT_LISTEN}"
else
    "${repo}/tools/install-deps.sh"
    save_path="$(IFS=,; printf '%s' "${upstreams[*]}")"
fi

echo "host-backend: Apache + mod_php serving ${DOC_ROOT} as ${name} (sessions ${sessions}: ${save_path})"
mkdir -p "${DOC_ROOT}" "${RUN_DIR}"
install -m 0644 "${here}"/php/*.php "${DOC_ROOT}/"
chown www-data:www-data "${RUN_DIR}"
"${here}/apache-app-conf.sh" --name "${name}" --doc-root "${DOC_ROOT}" --run-dir "${RUN_DIR}" \
    --access-log /var/log/apache2/stickylb-access.log --save-path "${save_path}" "${php_ini[@]}" \
    >/etc/apache2/conf-available/stickylb-app.conf
a2dismod -q mpm_event >/dev/null 2>&1 || true
a2enmod -q mpm_prefork php8.2 env dir authz_core >/dev/null
a2dissite -q 000-default >/dev/null 2>&1 || true
a2enconf -q stickylb-app >/dev/null
apache2ctl configtest
systemctl enable apache2.service
systemctl restart apache2.service
