# Shared start of the one-call GPU scripts (gpu_checks.sh, nuswide_zsl_gpu.sh); sourced, not run.
#
#   . "$HERE/gpu_env.sh"; gpu_script_args SCRIPT_NAME HELP_LINES "$@"
#
# Reads --dry-run, --out DIR and -h/--help (prints lines HELP_LINES, a sed range such as 2,26, of the
# calling script); starts from the caller's DRY and OUT (its environment defaults). Sets DRY (0 or 1),
# OUT (an absolute folder, created; a new temporary folder when none was given) and NCPU. Bad arguments:
# a message on stderr and exit status 2.

gpu_script_args() {
  local name=$1 help=$2
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry-run) DRY=1 ;;
      --out) OUT=$2; shift ;;
      -h|--help) sed -n "${help}p" "$0"; exit 0 ;;
      *) echo "$name: unknown argument $1 (expected --dry-run, --out DIR)" >&2; exit 2 ;;
    esac
    shift
  done
  [ "$DRY" = "0" ] || DRY=1
  OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/${name%.sh}.XXXXXX")}
  mkdir -p "$OUT"
  OUT=$(cd "$OUT" && pwd)
  NCPU=$(nproc 2>/dev/null || echo 1)
}
