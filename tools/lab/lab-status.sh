# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# tools/lab/lab.sh's `status`, sourced by it: what of the lab exists, its links and
# its processes.

# "eth0 10.89.0.2/24 fd00:89::2/64 mtu 1600 [xdp]" of a host namespace.
describe_eth0() {
    local ns="$1" v4 v6 link mtu
    v4="$(ip -n "${ns}" -o -4 addr show dev eth0 2>/dev/null | awk 'NR == 1 {print $4}')"
    v6="$(ip -n "${ns}" -o -6 addr show dev eth0 scope global 2>/dev/null | awk '{last = $4} END {print last}')"
    link="$(ip -n "${ns}" -o link show dev eth0 2>/dev/null || true)"
    mtu="$(sed -n 's/.* mtu \([0-9]*\).*/\1/p' <<<"${link}")"
    printf 'eth0 %s %s mtu %s' "${v4:-none}" "${v6:-none}" "${mtu:-?}"
    if grep -q 'prog/xdp' <<<"${link}"; then
        printf ' (XDP attached)'
    fi
    if [[ "${ns}" == "${PREFIX}"-be* ]] && tc -n "${ns}" filter show dev eth0 ingress 2>/dev/null | grep -q bpf; then
        printf ' (tc ingress bpf)'
    fi
}

cmd_status() {
    local namespaces ns pidfile pid name kind
    namespaces="$(lab_namespaces)"
    if [[ -z "${namespaces}" ]]; then
        log "no lab of prefix ${PREFIX}"
    else
        if [[ -f "${STATE_DIR}/mode" ]]; then
            log "mode $(cat "${STATE_DIR}/mode"), $(lab_setting backends) backends, state ${STATE_DIR}"
            if [[ "$(lab_setting app)" == php ]]; then
                log "app php (Apache + mod_php), $(lab_setting memcached) memcached, sessions $(lab_setting sessions)"
            elif [[ "$(lab_setting memcached)" =~ ^[1-9] ]]; then
                log "app python, $(lab_setting memcached) memcached"
            fi
        else
            log "no state in ${STATE_DIR} (half-built lab?)"
        fi
        for ns in ${namespaces}; do
            if [[ "${ns}" == "${NS_BRIDGE}" ]]; then
                log "${ns}: ports $(ip -n "${ns}" -o link show master br0 2>/dev/null |
                    awk -F': ' '{split($2, a, "@"); printf "%s ", a[1]}')"
                local port
                for port in $(ip -n "${ns}" -o link show 2>/dev/null | awk -F': ' '{split($2, a, "@"); print a[1]}' |
                    grep -E '^p-lb[0-9]*$'); do
                    if ip -n "${ns}" -o link show dev "${port}" 2>/dev/null | grep -q 'prog/xdp'; then
                        log "${ns}: ${port} has an XDP program"
                    fi
                done
                continue
            fi
            log "${ns}: $(describe_eth0 "${ns}")"
        done
        local index
        for ((index = 1; index <= $(lab_setting backends || true) + 0; index++)); do
            namespace_exists "$(backend_ns "${index}")" || log "$(backend_ns "${index}"): gone (kill-host ${index})"
        done
    fi
    if [[ -d "${STATE_DIR}" ]]; then
        for pidfile in "${STATE_DIR}"/*.pid; do
            [[ -e "${pidfile}" ]] || continue
            name="$(basename "${pidfile}" .pid)"
            name="${name%-agent}"
            kind="$(pidfile_kind "${pidfile}")"
            pid="$(tr -dc '0-9' <"${pidfile}")"
            if pidfile_process "${pidfile}" "${kind}" >/dev/null; then
                log "${kind} ${name}: pid ${pid} running ($(ps -o pid= -g "${pid}" 2>/dev/null | wc -l) processes in its group)"
            else
                log "${kind} ${name}: pid ${pid:-?} not running"
            fi
        done
    fi
}
