#!/usr/bin/env bash
# Builds the Debian package from this source tree (README, "Install (Debian
# package)"):   bash scripts/build-deb.sh
#
# An optimised release build (whole-program optimisation: about 5 minutes
# on 2 cores the first time), then the package assembled by hand with
# dpkg-deb from packaging/debian/; nothing from crates.io beyond the build.
# The last line printed is the path of the .deb.
#
# Environment:
#   SNIWALK_FEATURES  cargo features of the binary (default "etcd", which
#                     needs protoc from protobuf-compiler; "" for none)
#   DEB_MAINTAINER    the Maintainer field ("Name <address>")
#   DEB_REVISION      the Debian revision after the Cargo version (default 1)
#   DEB_OUT_DIR       where the .deb goes (default $CARGO_TARGET_DIR/debian)
set -euo pipefail
trap 'echo "build-deb: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."

packaging=packaging/debian
target_dir=${CARGO_TARGET_DIR:-target}
features=${SNIWALK_FEATURES-etcd}
maintainer=${DEB_MAINTAINER:-"sniwalk maintainers <sniwalk@example.org>"}
revision=${DEB_REVISION:-1}
out_dir=${DEB_OUT_DIR:-$target_dir/debian}

die() {
  echo "build-deb: $*" >&2
  exit 1
}
for tool in cargo dpkg dpkg-deb gzip strip objdump; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install dpkg-dev binutils)"
done
if [[ " ${features//,/ } " == *" etcd "* ]] && ! command -v protoc >/dev/null 2>&1; then
  die "the etcd feature needs protoc: apt-get install protobuf-compiler (or SNIWALK_FEATURES='' for a build without etcd)"
fi

# `cargo pkgid` ends in `#sniwalk@0.1.0` (or `#0.1.0`): the version.
upstream=$(cargo pkgid --offline 2>/dev/null || cargo pkgid)
upstream=${upstream##*[#@]}
version="$upstream-$revision"
arch=$(dpkg --print-architecture)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# Reproducible: every date in the package is the commit's. Exported only
# after the build: the C compiler's build scripts rebuild aws-lc when it
# changes.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

# 1. The binary (what ships: the release profile).
started=$(date +%s)
cargo build --release --locked ${features:+--features "$features"}
binary=$target_dir/release/sniwalk
echo "build-deb: release build done in $(($(date +%s) - started)) s" >&2
export SOURCE_DATE_EPOCH=$epoch

# 2. The file tree, as installed.
# Under debian/sniwalk/ of a scratch directory, where dpkg-shlibdeps
# expects a package's files.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/debian/sniwalk
install -d -m 0755 "$root"
doc=$root/usr/share/doc/sniwalk
install -D -m 0755 "$binary" "$root/usr/bin/sniwalk"
# Debug information stays in target/; the package gets what runs.
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/sniwalk"
install -D -m 0644 "$packaging/proxy.yaml" "$root/etc/sniwalk/proxy.yaml"
install -D -m 0644 "$packaging/sniwalk.service" "$root/lib/systemd/system/sniwalk.service"
# Owned by the package; postinst gives them to the sniwalk user (0750).
install -d -m 0755 "$root/var/lib/sniwalk" "$root/var/log/sniwalk"
install -d -m 0755 "$doc"
# The copyright file, with every crate linked into the binary.
first_year=$(git log --max-parents=0 --format=%ad --date=format:%Y 2>/dev/null | sort | sed -n 1p || true)
last_year=$(date -u -d "@$epoch" +%Y)
years=${first_year:-$last_year}
[ "$years" = "$last_year" ] || years="$years-$last_year"
{
  sed -n '1,/^$/p' "$packaging/copyright" | sed '$d'
  echo " ."
  echo " Crates in this build (cargo tree):"
  cargo tree --locked --offline -e normal ${features:+--features "$features"} \
    --prefix none --format '{p}: {l}' 2>/dev/null |
    grep -v '(proc-macro)' | sed -e 's/ (\*)$//' -e 's/^/  /' | sort -u
  echo
  sed -n '/^$/,$p' "$packaging/copyright" | sed -e '1d' -e "s/@YEARS@/$years/"
} >"$doc/copyright"
chmod 0644 "$doc/copyright"
date_rfc2822=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
sed -e "s/@VERSION@/$version/" -e "s/@COMMIT@/$commit/" \
  -e "s/@MAINTAINER@/$maintainer/" -e "s/@DATE@/$date_rfc2822/" \
  "$packaging/changelog.in" | gzip -9n >"$doc/changelog.Debian.gz"
gzip -9n <README.md >"$doc/README.md.gz"
chmod 0644 "$doc/changelog.Debian.gz" "$doc/README.md.gz"
# The man page and completions come from the binary's own clap
# definitions, so they match its --help.
install -d -m 0755 "$root/usr/share/man/man1" "$root/usr/share/bash-completion/completions" \
  "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
"$binary" man | gzip -9n >"$root/usr/share/man/man1/sniwalk.1.gz"
"$binary" completions bash >"$root/usr/share/bash-completion/completions/sniwalk"
"$binary" completions zsh >"$root/usr/share/zsh/vendor-completions/_sniwalk"
"$binary" completions fish >"$root/usr/share/fish/vendor_completions.d/sniwalk.fish"
# The JSON Schema of proxy.yaml, for editors (README, Command line).
install -d -m 0755 "$root/usr/share/sniwalk"
"$binary" schema >"$root/usr/share/sniwalk/proxy.schema.json"
# Lintian tags overridden on purpose, each with its reason (if any).
if [ -f "$packaging/lintian-overrides" ]; then
  install -D -m 0644 "$packaging/lintian-overrides" "$root/usr/share/lintian/overrides/sniwalk"
fi
find "$root/usr/share" -type f -exec chmod 0644 {} +

# 3. Depends: the shared libraries the binary links (glibc, libgcc_s),
# with the versions its symbols need.
mkdir -p "$root/DEBIAN"
printf 'Source: sniwalk\n\nPackage: sniwalk\nArchitecture: any\n' >"$work/debian/control"
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
  shlibs=$(cd "$work" && dpkg-shlibdeps -O debian/sniwalk/usr/bin/sniwalk | sed -n 's/^shlibs:Depends=//p')
else
  # Without dpkg-dev: glibc at the newest symbol version used.
  glibc=$(objdump -T "$root/usr/bin/sniwalk" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
  shlibs="libc6 (>= $glibc)"
  if objdump -p "$root/usr/bin/sniwalk" | grep -q 'NEEDED.*libgcc_s'; then
    shlibs="$shlibs, libgcc-s1 (>= 4.2)"
  fi
fi
[ -n "$shlibs" ] || die "could not compute the shared library dependencies of the binary"
# adduser: postinst creates the sniwalk system user with it.
depends="$shlibs, adduser"

# 4. Control files.
installed_size=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@MAINTAINER@/$maintainer/" \
  -e "s/@INSTALLED_SIZE@/$installed_size/" -e "s/@DEPENDS@/$depends/" \
  "$packaging/control.in" >"$root/DEBIAN/control"
install -m 0644 "$packaging/conffiles" "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "$packaging/$script" "$root/DEBIAN/$script"
done
# Checksums of every file but the conffiles (dpkg keeps theirs itself).
(
  cd "$root"
  find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\n' | LC_ALL=C sort |
    xargs -d '\n' md5sum
) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

# 5. The package.
find "$root" -exec touch --no-dereference -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out_dir"
deb="$out_dir/sniwalk_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "build-deb: $(du -h "$deb" | cut -f1) package, $installed_size KiB installed" >&2
echo "$deb"
