# Sourced by scripts that need the Debian mirror: prints the first Debian archive URI (not -security) found in
# this machine's own apt sources, deb822 (*.sources) or one-line (*.list). Nothing is hard-coded here.
bilevel_apt_mirror() {
  local f uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    uri=$(awk 'tolower($1)=="uris:" { for (i = 2; i <= NF; i++) print $i }' "$f" |
          grep -E '/debian/?$' | grep -v -- '-security' | head -n1 || true)
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -r "$f" ] || continue
      uri=$(sed -E 's/\[[^]]*\]//' "$f" | awk '$1=="deb" { print $2 }' |
            grep -E '/debian/?$' | grep -v -- '-security' | head -n1 || true)
      [ -n "$uri" ] && break
    done
  fi
  if [ -z "$uri" ]; then
    echo "error: no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/" >&2
    return 1
  fi
  echo "${uri%/}"
}
