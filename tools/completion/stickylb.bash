# SPDX-License-Identifier: Apache-2.0
# bash completion for stickylb. The objects and verbs here are checked against
# the CLI grammar by tests/unit/cli_test.cpp.

_stickylb_verbs() {
    case "$1" in
        vip) echo "show help" ;;
        backend) echo "show drain enable set help" ;;
        flow) echo "show flush help" ;;
        affinity) echo "show flush save restore help" ;;
        session) echo "show help" ;;
        cluster) echo "show help" ;;
        stats) echo "show help" ;;
        health) echo "show help" ;;
        version) echo "help" ;;
    esac
}

# Keywords a verb takes after its positional arguments.
_stickylb_keywords() {
    case "$1 $2" in
        "backend show") echo "vip name" ;;
        "backend drain") echo "force" ;;
        "backend set") echo "weight" ;;
        "flow show"|"affinity show") echo "vip backend client" ;;
        "flow flush"|"affinity flush"|"stats show"|"health show") echo "vip" ;;
    esac
}

_stickylb() {
    local cur prev words cword
    _init_completion || return
    local objects="vip backend flow affinity session cluster stats health version help"
    local options="-j --json -p --pretty -s --socket -h --help -V --version"

    case "$prev" in
        -s|--socket) _filedir; return ;;
    esac

    # Skip the options to find OBJECT and COMMAND.
    local i=1 object="" verb="" nargs=0
    while [[ $i -lt $cword ]]; do
        case "${words[i]}" in
            -s|--socket) ((i++)) ;;
            -*) ;;
            *)
                if [[ -z "$object" ]]; then object="${words[i]}"
                elif [[ -z "$verb" ]]; then verb="${words[i]}"
                else ((nargs++)); fi ;;
        esac
        ((i++))
    done

    if [[ -z "$object" ]]; then
        if [[ "$cur" == -* ]]; then
            COMPREPLY=($(compgen -W "$options" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$objects" -- "$cur"))
        fi
        return
    fi
    # Expand abbreviated objects and verbs the way the CLI does.
    local o v
    for o in $objects; do [[ "$o" == "$object"* ]] && { object=$o; break; }; done
    if [[ -z "$verb" ]]; then
        COMPREPLY=($(compgen -W "$(_stickylb_verbs "$object")" -- "$cur"))
        return
    fi
    for v in $(_stickylb_verbs "$object"); do [[ "$v" == "$verb"* ]] && { verb=$v; break; }; done

    # Values are names and addresses the CLI cannot know: offer only keywords.
    case "$prev" in
        vip|name|backend|client|weight) return ;;
    esac
    COMPREPLY=($(compgen -W "$(_stickylb_keywords "$object" "$verb")" -- "$cur"))
} &&
    complete -F _stickylb stickylb
