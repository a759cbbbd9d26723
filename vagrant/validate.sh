#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# `vagrant validate` of vagrant/Vagrantfile, offline (no box is downloaded, no VM
# created): with the libvirt provider's settings, and VirtualBox's too where VirtualBox
# is installed (vagrant refuses to validate for a provider it cannot use). ctest's vagrant_validate. Exit 77 (skip) without vagrant,
# unless STICKYLB_REQUIRE_PRIVILEGED=1 (CI): then a missing vagrant fails.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v vagrant >/dev/null; then
    if [[ "${STICKYLB_REQUIRE_PRIVILEGED:-0}" == 1 ]]; then
        echo "vagrant not found and STICKYLB_REQUIRE_PRIVILEGED=1 (apt-get install vagrant vagrant-libvirt)" >&2
        exit 1
    fi
    echo "[  SKIPPED ] vagrant not found (apt-get install vagrant vagrant-libvirt)"
    exit 77
fi

# Vagrant's per-project state goes to a directory of our own, not vagrant/.vagrant.
state="$(mktemp -d)"
trap 'rm -rf -- "${state}"' EXIT
export VAGRANT_DOTFILE_PATH="${state}" VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_NO_COLOR=1
cd "${here}"
providers=(libvirt)
command -v VBoxManage >/dev/null && providers+=(virtualbox)
for provider in "${providers[@]}"; do
    echo "vagrant validate (provider ${provider})"
    VAGRANT_DEFAULT_PROVIDER="${provider}" vagrant validate
done
