#!/usr/bin/env bash
# Builds the Debian package kilntally_<version>_amd64.deb (Debian 12 and later, amd64).
#   deploy/build-deb.sh [--out DIR] [--version VERSION] [--config FILE] [--compress xz|zstd]
#     --out DIR          where the .deb goes (default: the repository's top directory)
#     --version VERSION  package version (default: KilnTallyVersion.current in Sources/KilnTallyCore/Version.swift)
#     --config FILE      shipped as the conffile /etc/kilntally/kilntally.toml (default: deploy/kilntally.example.toml;
#                        an integrator can ship a plant's own); it must pass `kilntally config check`
#     --compress C       xz (default: 36 MB, 25 s) or zstd (53 MB, under a second; dpkg >= 1.21.18, Debian 12)
# Prints the .deb's path as the last line of its output.
#
# Both products are built with `swift build -c release --static-swift-stdlib` in their own scratch directory,
# .build-deb/ (KILNTALLY_DEB_SCRATCH moves it): a second run reuses it and only packages again. Not .build/ itself:
# `swift test` holds .build/'s lock for as long as it runs, and the package test runs this script.
# Depends: is what dpkg-shlibdeps finds for the binaries' dynamic libraries (the installed packages' symbols files
# give the minimum versions), plus the packages the maintainer scripts and the daemon use without linking them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

OUT=$ROOT
VERSION=""
CONFIG=deploy/kilntally.example.toml
COMPRESS=xz
while (($#)); do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --out=*) OUT="${1#*=}"; shift ;;
        --version) VERSION="$2"; shift 2 ;;
        --version=*) VERSION="${1#*=}"; shift ;;
        --config) CONFIG="$2"; shift 2 ;;
        --config=*) CONFIG="${1#*=}"; shift ;;
        --compress) COMPRESS="$2"; shift 2 ;;
        --compress=*) COMPRESS="${1#*=}"; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "build-deb: unknown argument $1 (see deploy/build-deb.sh --help)" >&2; exit 64 ;;
    esac
done
case "$COMPRESS" in xz|zstd) ;; *) echo "build-deb: --compress takes xz or zstd, not $COMPRESS" >&2; exit 64 ;; esac
if [[ -z $VERSION ]]; then
    VERSION=$(sed -n 's/.*static let current = "\([^"]*\)".*/\1/p' Sources/KilnTallyCore/Version.swift)
    [[ -n $VERSION ]] || { echo "build-deb: no version in Sources/KilnTallyCore/Version.swift" >&2; exit 1; }
fi
ARCH=$(dpkg --print-architecture)
[[ $ARCH == amd64 ]] || { echo "build-deb: builds amd64 packages only, this is $ARCH" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps strip; do
    command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing (apt-get install dpkg-dev binutils)" >&2; exit 1; }
done
[[ -f $CONFIG ]] || { echo "build-deb: no config file $CONFIG" >&2; exit 64; }
CONFIG=$(realpath "$CONFIG")
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SCRATCH=${KILNTALLY_DEB_SCRATCH:-$ROOT/.build-deb}

# 1. Binaries. --disable-local-rpath: no $ORIGIN RUNPATH, so nothing beside /usr/bin is ever loaded as a library.
start=$SECONDS
SWIFT_FLAGS=(-c release --static-swift-stdlib --disable-local-rpath --scratch-path "$SCRATCH")
for product in kilntallyd kilntally; do
    echo "build-deb: swift build ${SWIFT_FLAGS[*]} --product $product" >&2
    swift build "${SWIFT_FLAGS[@]}" --product "$product" >&2
done
BIN=$(swift build "${SWIFT_FLAGS[@]}" --show-bin-path)
echo "build-deb: binaries built in $((SECONDS - start))s" >&2
# The conffile must be one the packaged kilntally accepts (exit 78 and every error otherwise).
"$BIN/kilntally" config check --config "$CONFIG" >&2

# 2. The tree, as installed.
start=$SECONDS
STAGE=$SCRATCH/deb/kilntally_${VERSION}_$ARCH
rm -rf "$STAGE"
install -d "$STAGE/DEBIAN" "$STAGE/usr/bin" "$STAGE/lib/systemd/system" "$STAGE/usr/lib/sysusers.d" \
    "$STAGE/usr/lib/tmpfiles.d" "$STAGE/etc/kilntally/profiles" "$STAGE/usr/share/kilntally/profiles" \
    "$STAGE/usr/share/doc/kilntally/docs" "$STAGE/usr/share/doc/kilntally/examples"
for product in kilntallyd kilntally; do
    # The DWARF goes (about 16 MB each); the symbol table stays, so a core dump's stack has function names.
    strip --strip-debug -o "$STAGE/usr/bin/$product" "$BIN/$product"
    chmod 0755 "$STAGE/usr/bin/$product"
done
install -m 0644 systemd/kilntallyd.service "$STAGE/lib/systemd/system/kilntallyd.service"
install -m 0644 systemd/kilntally.sysusers "$STAGE/usr/lib/sysusers.d/kilntally.conf"
install -m 0644 systemd/kilntally.tmpfiles "$STAGE/usr/lib/tmpfiles.d/kilntally.conf"
install -m 0644 "$CONFIG" "$STAGE/etc/kilntally/kilntally.toml"
install -m 0644 profiles/*.toml "$STAGE/usr/share/kilntally/profiles/"
install -m 0644 README.md "$STAGE/usr/share/doc/kilntally/README.md"
install -m 0644 docs/*.md "$STAGE/usr/share/doc/kilntally/docs/"
install -m 0644 deploy/kilntally.example.toml "$STAGE/usr/share/doc/kilntally/examples/kilntally.example.toml"
install -m 0644 deploy/debian/copyright "$STAGE/usr/share/doc/kilntally/copyright"
# Shell completions (from the staged binary itself) and man pages (swift-argument-parser's generate-manual plugin).
install -d "$STAGE/usr/share/bash-completion/completions" "$STAGE/usr/share/zsh/vendor-completions" \
    "$STAGE/usr/share/fish/vendor_completions.d" "$STAGE/usr/share/man/man1"
"$STAGE/usr/bin/kilntally" --generate-completion-script bash > "$STAGE/usr/share/bash-completion/completions/kilntally"
"$STAGE/usr/bin/kilntally" --generate-completion-script zsh > "$STAGE/usr/share/zsh/vendor-completions/_kilntally"
"$STAGE/usr/bin/kilntally" --generate-completion-script fish > "$STAGE/usr/share/fish/vendor_completions.d/kilntally.fish"
chmod 0644 "$STAGE"/usr/share/bash-completion/completions/kilntally "$STAGE"/usr/share/zsh/vendor-completions/_kilntally \
    "$STAGE"/usr/share/fish/vendor_completions.d/kilntally.fish
# The plugin builds the products its own way (release, dynamic): in a scratch path of its own, or it would replace
# the static binaries above.
MAN_SCRATCH=$SCRATCH-man
MAN_OUT=$MAN_SCRATCH/plugins/GenerateManual/outputs
rm -rf "$MAN_OUT"
swift package --scratch-path "$MAN_SCRATCH" generate-manual >&2
for page in $(find "$MAN_OUT" -name '*.1' | sort); do
    gzip -9n -c "$page" > "$STAGE/usr/share/man/man1/$(basename "$page").gz"
    chmod 0644 "$STAGE/usr/share/man/man1/$(basename "$page").gz"
done
ls "$STAGE/usr/share/man/man1/kilntally.1.gz" "$STAGE/usr/share/man/man1/kilntallyd.1.gz" >/dev/null
for script in postinst prerm postrm; do
    install -m 0755 "deploy/debian/$script" "$STAGE/DEBIAN/$script"
done
echo /etc/kilntally/kilntally.toml > "$STAGE/DEBIAN/conffiles"

# 3. Depends. dpkg-shlibdeps wants a debian/control naming the package; it runs in a scratch directory.
SHLIBS_DIR=$SCRATCH/deb/shlibdeps
rm -rf "$SHLIBS_DIR"
mkdir -p "$SHLIBS_DIR/debian"
printf 'Source: kilntally\n\nPackage: kilntally\nArchitecture: %s\n' "$ARCH" > "$SHLIBS_DIR/debian/control"
SHLIBS=$(cd "$SHLIBS_DIR" && dpkg-shlibdeps -O -e"$STAGE/usr/bin/kilntallyd" -e"$STAGE/usr/bin/kilntally")
SHLIBS=${SHLIBS#shlibs:Depends=}
[[ -n $SHLIBS ]] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
# Not linked, but used:
#   systemd-sysusers | adduser   postinst creates the user with one or the other
#   tzdata                       /etc/localtime for the CLI's local times (glibc); the shift calendar's zones come
#                                from the ICU data built into the binaries, not from tzdata
DEPENDS="$SHLIBS, systemd-sysusers | adduser, tzdata"

INSTALLED_SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: kilntally
Version: $VERSION
Architecture: $ARCH
Maintainer: kilntally maintainers <kilntally@localhost>
Installed-Size: $INSTALLED_SIZE
Depends: $DEPENDS
Recommends: systemd
Suggests: mosquitto-clients
Section: misc
Priority: optional
Description: edge daemon for waste co-processing plants: Modbus to shift tally to MQTT
 kilntallyd polls weighbridges, belt scales and feeders over Modbus RTU and TCP
 (libmodbus), keeps every reading in a bounded store, accounts the waste fed per
 shift in an append-only hash-chained ledger (tickets, shift reports, mass
 balance) and publishes both to a hub over MQTT (libmosquitto) without losing or
 counting anything twice. kilntally is its command-line tool: config check,
 probe, profiles, status, store and ledger verification.
 .
 The service is not started on installation: edit /etc/kilntally/kilntally.toml,
 check it with "kilntally config check", then "systemctl enable --now kilntallyd".
CONTROL
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$STAGE/DEBIAN/md5sums"

# 4. The package. Everything is root:root (--root-owner-group); postinst gives the config its group.
DEB=$OUT/kilntally_${VERSION}_$ARCH.deb
dpkg-deb --build --root-owner-group -Z"$COMPRESS" "$STAGE" "$DEB" >&2
echo "build-deb: packaged in $((SECONDS - start))s: Depends: $DEPENDS" >&2
echo "$DEB"
