# bash completion for hvsim
_hvsim() {
    local cur prev
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    case "$prev" in
        --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --state-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --spec|--package|--file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --format) COMPREPLY=($(compgen -W 'cab zip tgz' -- "$cur")); return ;;
    esac
    case "${COMP_WORDS[1]}" in
        serve) COMPREPLY=($(compgen -W '--config --state-dir --help' -- "$cur")) ;;
        exec) COMPREPLY=($(compgen -W '--vm --help --' -- "$cur")) ;;
        vm) if [[ $COMP_CWORD -eq 2 ]]; then
                COMPREPLY=($(compgen -W 'list show set-var get-var set-option namespace-set power clipboard tclo snapshot guest customize help' -- "$cur"))
            elif [[ ${COMP_WORDS[2]} == customize ]]; then
                COMPREPLY=($(compgen -W '--spec --command --file --format --skip-reboot --ignore-cloud-init --process-timeout --package --timeout --help' -- "$cur"))
            else
                COMPREPLY=($(compgen -W '--json --quiesce --timeout --capture --no-scripts --script-arg --fault --help' -- "$cur"))
            fi ;;
        wbem) [[ $COMP_CWORD -eq 2 ]] && COMPREPLY=($(compgen -W 'get set help' -- "$cur")) \
                || COMPREPLY=($(compgen -W '--json --enable --wsman --port --http-port --auth-model --keepalive-timeout --keepalive-max-requests --log-level --ssl-protocols --control --help' -- "$cur")) ;;
        *) [[ $COMP_CWORD -eq 1 ]] && COMPREPLY=($(compgen -W 'serve vm wbem exec demo help --help --version' -- "$cur")) ;;
    esac
}
complete -F _hvsim hvsim
