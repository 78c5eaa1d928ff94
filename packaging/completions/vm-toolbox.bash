# bash completion for vm-toolbox and vmware-toolbox-cmd
_vm_toolbox() {
    local cur cmd i
    cur="${COMP_WORDS[COMP_CWORD]}"
    cmd=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        [[ "${COMP_WORDS[i]}" != -* ]] && { cmd="${COMP_WORDS[i]}"; break; }
    done
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W '-q -h -v --quiet --help --version' -- "$cur"))
        return
    fi
    if [[ -z "$cmd" ]]; then
        COMPREPLY=($(compgen -W 'config device disk globalconf help info logging script stat timesync' -- "$cur"))
        return
    fi
    if (( COMP_CWORD == i + 1 )); then
        local subs=""
        case "$cmd" in
            stat) subs='hosttime speed sessionid balloon swap memlimit memres cpures cpulimit raw' ;;
            timesync) subs='enable disable status' ;;
            device) subs='list status enable disable' ;;
            disk) subs='list shrink shrinkonly wipe' ;;
            script) subs='power resume suspend shutdown' ;;
            config) subs='get set remove' ;;
            logging) subs='level' ;;
            info) subs='update' ;;
            globalconf) subs='enable disable refresh status' ;;
            help) subs='config device disk globalconf info logging script stat timesync' ;;
        esac
        COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    elif [[ "$cmd" == script ]] && (( COMP_CWORD == i + 2 )); then
        COMPREPLY=($(compgen -W 'default current enable disable set' -- "$cur"))
    fi
}
complete -F _vm_toolbox vm-toolbox vmware-toolbox-cmd
