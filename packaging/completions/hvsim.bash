# bash completion for hvsim
_hvsim() {
    local cur prev
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    case "$prev" in
        --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --state-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    esac
    case "${COMP_WORDS[1]}" in
        serve) COMPREPLY=($(compgen -W '--config --state-dir --help' -- "$cur")) ;;
        exec) COMPREPLY=($(compgen -W '--vm --help --' -- "$cur")) ;;
        vm) [[ $COMP_CWORD -eq 2 ]] && COMPREPLY=($(compgen -W 'list show set-var get-var tclo guest help' -- "$cur")) \
                || COMPREPLY=($(compgen -W '--json --help' -- "$cur")) ;;
        *) [[ $COMP_CWORD -eq 1 ]] && COMPREPLY=($(compgen -W 'serve vm exec demo help --help --version' -- "$cur")) ;;
    esac
}
complete -F _hvsim hvsim
