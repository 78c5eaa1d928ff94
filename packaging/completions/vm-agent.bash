# bash completion for vm-agent
_vm_agent() {
    local cur prev
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    case "$prev" in
        --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --backdoor) COMPREPLY=($(compgen -W 'auto port unix:' -- "$cur")); return ;;
    esac
    COMPREPLY=($(compgen -W '--session --config --backdoor --help --version' -- "$cur"))
}
complete -F _vm_agent vm-agent
