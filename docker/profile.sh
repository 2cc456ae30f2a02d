# shellcheck shell=sh
# /etc/profile.d/dllab.sh: login shells (JupyterLab terminals, `bash -l`) get the venv on PATH,
# which Debian's /etc/profile resets.
case ":$PATH:" in
    *:/opt/venv/bin:*) ;;
    *) PATH="/opt/venv/bin:$PATH" ;;
esac
export PATH
