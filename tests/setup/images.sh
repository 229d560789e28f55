#!/usr/bin/env bash
# Build, once per machine, the podman image the molecule test hosts run from, and print its name on stdout.
#
#   tests/setup/images.sh [SUITE]      SUITE: a Debian release debootstrap knows (bookworm by default, trixie too)
#
# The image is a debootstrap --variant=minbase tree with sshd, Python and the database servers, imported with
# `podman import` (no registry is reachable here). Its tag is a hash of the suite, the package list and the recipe
# version below, so changing either builds a new image; an existing image with that tag is reused as it is.
# The Debian mirror comes from this machine's apt sources (or APPVAULT_DEBIAN_MIRROR). Needs root.
set -euo pipefail

suite=${1:-bookworm}
# Bump when the build steps change in a way the package list does not show.
RECIPE=1
PACKAGES=(openssh-server python3 sudo postgresql mariadb-server mariadb-client rsync zstd age sqlite3 tar gzip procps)

log() { echo "images.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap and rootful podman)"
case $suite in *[!a-z]* | '') die "not a Debian suite name: $suite" ;; esac
for tool in podman debootstrap runc; do
  command -v "$tool" >/dev/null || die "$tool is not installed (run tests/setup/system-deps.sh)"
done

hash=$(printf '%s\n' "recipe $RECIPE" "$suite" "${PACKAGES[@]}" | sha256sum | cut -c1-12)
image="localhost/appvault-$suite:$hash"

# Podman here must use runc (crun refuses the hybrid cgroup layout) and ulimits within the hard limits (its
# defaults exceed them, and every container start fails). Written only where not already set.
configure_podman() {
  local conf=/etc/containers/containers.conf
  if [ -e "$conf" ] && grep -Eq '^[[:space:]]*runtime[[:space:]]*=[[:space:]]*"runc"' "$conf" \
      && grep -Eq '^[[:space:]]*default_ulimits[[:space:]]*=' "$conf"; then
    return 0
  fi
  if [ ! -e "$conf" ]; then
    log "writing $conf (runtime runc, ulimits within the hard limits)"
    mkdir -p /etc/containers
    cat >"$conf" <<'EOF'
# Written by appvault.backup tests/setup/images.sh: podman on these machines needs runc (crun refuses the
# hybrid cgroup layout) and container ulimits within the hard limits.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF
    return 0
  fi
  # An existing file of the administrator's: add a drop-in rather than editing it.
  log "writing /etc/containers/containers.conf.d/50-appvault-tests.conf"
  mkdir -p /etc/containers/containers.conf.d
  cat >/etc/containers/containers.conf.d/50-appvault-tests.conf <<'EOF'
# Written by appvault.backup tests/setup/images.sh (see there).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF
}

# The first archive URI of this machine's Debian sources (deb822 or one-line format), not a security/updates one.
debian_mirror() {
  if [ -n "${APPVAULT_DEBIAN_MIRROR:-}" ]; then
    echo "$APPVAULT_DEBIAN_MIRROR"
    return 0
  fi
  local uri='' file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -e "$file" ] || continue
    uri=$(awk 'BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; suites = ""; types = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) uris = substr($i, 6)
          else if ($i ~ /^Suites:/) suites = substr($i, 8)
          else if ($i ~ /^Types:/) types = substr($i, 7)
          else if ($i ~ /^Enabled:/) enabled = substr($i, 9)
        }
        if (types ~ /(^|[[:space:]])deb([[:space:]]|$)/ && enabled !~ /no/ && suites ~ /(^|[[:space:]])[a-z]+([[:space:]]|$)/) {
          split(uris, u, " "); for (k in u) if (u[k] != "") { print u[k]; exit }
        }
      }' "$file")
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ]; then
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -e "$file" ] || continue
      uri=$(sed -E 's/\[[^]]*\]//' "$file" | awk '$1 == "deb" && $3 ~ /^[a-z]+$/ { print $2; exit }')
      [ -n "$uri" ] && break
    done
  fi
  [ -n "$uri" ] || die "no Debian archive URI in /etc/apt/sources.list*; set APPVAULT_DEBIAN_MIRROR"
  echo "${uri%/}"
}

configure_podman

# One build at a time per suite on this machine (two checkouts may run make test at once).
exec 9>"/run/lock/appvault-image-$suite.lock"
flock 9

if podman image exists "$image"; then
  echo "$image"
  exit 0
fi

mirror=$(debian_mirror)
workdir=$(mktemp -d /var/tmp/appvault-image-XXXXXX)
cleanup() {
  umount "$workdir/root/proc" 2>/dev/null || true
  rm -rf --one-file-system "$workdir"
}
trap cleanup EXIT
root="$workdir/root"
started=$SECONDS
log "building $image from $suite (debootstrap, about a minute and a half)"
if ! debootstrap --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" "$suite" "$root" "$mirror" \
    >"$workdir/debootstrap.log" 2>&1; then
  tail -n 40 "$workdir/debootstrap.log" >&2
  die "debootstrap failed"
fi

# Make it a test host: no baked-in SSH host keys (each container generates its own), PAM sessions that work
# without the audit capability, a UTF-8 locale, and PostgreSQL clusters in UTF-8 (debootstrap runs the
# package scripts with LANG=C, which would make them SQL_ASCII).
rm -f "$root"/etc/ssh/ssh_host_*
sed -i -E 's/^session[[:space:]]+required[[:space:]]+pam_loginuid\.so/session optional pam_loginuid.so/' "$root/etc/pam.d/sshd"
echo 'LANG=C.UTF-8' >"$root/etc/default/locale"
mount -t proc proc "$root/proc"
for version_dir in "$root"/etc/postgresql/*/main; do
  [ -d "$version_dir" ] || continue
  version=$(basename "$(dirname "$version_dir")")
  chroot "$root" pg_dropcluster "$version" main
  chroot "$root" env LANG=C.UTF-8 pg_createcluster --locale=C.UTF-8 "$version" main >/dev/null
done
umount "$root/proc"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/* "$root"/run/*

tar --numeric-owner -C "$root" -c . | podman import --quiet \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/usr/sbin/sshd","-D","-e"]' \
  --change "LABEL appvault.image.recipe=$hash" \
  --message "appvault test host: debootstrap $suite, ${PACKAGES[*]}" \
  - "$image" >/dev/null
log "built $image in $((SECONDS - started)) s"

# Older builds of this suite only take disk space (about 1 GB each); remove those no container uses.
podman images --format '{{.Repository}}:{{.Tag}}' "localhost/appvault-$suite" | while read -r old; do
  [ "$old" = "$image" ] || podman rmi "$old" >/dev/null 2>&1 || true
done
echo "$image"
