# Shared by build-base-image.sh and build-stack-images.sh: the Debian mirror to build root
# filesystems from. Usage: source scripts/_debian_mirror.sh; mirror=$(debian_mirror) || exit 1
#
# DEBIAN_MIRROR when set; otherwise the mirror this host's apt uses: a deb822 `URIs:` field
# (*.sources) or a one-line `deb URI SUITE` entry (*.list), the first that is not the security
# archive.
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    return 0
  fi
  local files=() found=""
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && files+=("$f")
  done
  if ((${#files[@]})); then
    found=$(awk '/^URIs:/ {print $2} /^deb / {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; break}}' \
      "${files[@]}" | grep -v -- '-security' | head -n 1)
  fi
  if [ -z "$found" ]; then
    echo "no Debian mirror found in /etc/apt/sources.list*; set DEBIAN_MIRROR" >&2
    return 1
  fi
  echo "$found"
}
