# bash completion for vm-rpctool and vmware-rpctool
_vm_rpctool() {
    local cur prev
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    case "$prev" in
        --backdoor)
            if [[ "$cur" == unix:* ]]; then
                local IFS=$'\n' f
                COMPREPLY=()
                for f in $(compgen -f -- "${cur#unix:}"); do COMPREPLY+=("unix:$f"); done
            else
                COMPREPLY=($(compgen -W 'auto port unix:' -- "$cur"))
                [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == unix: ]] && compopt -o nospace 2>/dev/null
            fi
            return ;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W '--backdoor --batch --no-hb --help --' -- "$cur"))
    else
        COMPREPLY=($(compgen -W "'info-get guestinfo.' 'info-set guestinfo.' 'log '" -- "$cur"))
    fi
}
complete -F _vm_rpctool vm-rpctool vmware-rpctool
