#!/usr/bin/env bash
# Builds the .deb and the .rpm from this tree and lints both:
#   scripts/build-packages.sh [--deb-only|--rpm-only] [--no-lint]     (or: make packages)
# Results land in dist/: odbackupd_VERSION_all.deb and odbackupd-VERSION-1.noarch.rpm.
# Needs Debian's dpkg-dev, debhelper, dh-python, pybuild-plugin-pyproject, python3-all,
# lintian, rpm and rpmlint (scripts/setup-dev.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# Packages build with the distribution's Python and tools, never a virtualenv's or pyenv's.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH VIRTUAL_ENV
DEB=1; RPM=1; LINT=1
for a in "$@"; do
    case "$a" in
        --deb-only) RPM=0 ;;
        --rpm-only) DEB=0 ;;
        --no-lint) LINT=0 ;;
        *) echo "usage: $0 [--deb-only|--rpm-only] [--no-lint]" >&2; exit 2 ;;
    esac
done
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' odbackupd/__init__.py)
[ -n "$VERSION" ] || { echo "build-packages: no __version__ in odbackupd/__init__.py" >&2; exit 1; }
deb_version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
if [ "$deb_version" != "$VERSION" ]; then
    echo "build-packages: packaging/debian/changelog is at $deb_version but odbackupd is $VERSION;" \
         "add a changelog entry (dch -v $VERSION)" >&2
    exit 1
fi
BUILD="$ROOT/build/packages"
DIST="$ROOT/dist"
rm -rf "$BUILD"
mkdir -p "$BUILD" "$DIST"
SRC="$BUILD/odbackupd-$VERSION"
mkdir -p "$SRC"
# The tree as git sees it (tracked and new files, nothing ignored: no .venv, no caches).
git ls-files -z --cached --others --exclude-standard \
    | (cd "$ROOT" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
    | tar -C "$ROOT" --null -T - -cf - | tar -C "$SRC" -xf -
rm -rf "$SRC/debian"
cp -a packaging/debian "$SRC/debian"

if [ "$DEB" = 1 ]; then
    (cd "$SRC" && dpkg-buildpackage -us -uc -b --no-sign) > "$BUILD/deb.log" 2>&1 || {
        tail -40 "$BUILD/deb.log" >&2; echo "build-packages: dpkg-buildpackage failed (log: $BUILD/deb.log)" >&2; exit 1; }
    cp "$BUILD"/odbackupd_"$VERSION"_all.deb "$DIST/"
    echo "built $DIST/odbackupd_${VERSION}_all.deb"
    if [ "$LINT" = 1 ]; then
        lintian --fail-on error,warning --suppress-tags-from-file /dev/null \
            "$BUILD"/odbackupd_"$VERSION"_*.changes
        echo "lintian: clean"
    fi
fi

if [ "$RPM" = 1 ]; then
    TOP="$BUILD/rpm"
    mkdir -p "$TOP"/{SOURCES,SPECS,BUILD,RPMS,SRPMS,BUILDROOT}
    tar -C "$BUILD" --exclude="odbackupd-$VERSION/debian" -czf "$TOP/SOURCES/odbackupd-$VERSION.tar.gz" "odbackupd-$VERSION"
    cp packaging/rpm/odbackupd.spec "$TOP/SPECS/"
    cp systemd/sysusers.d/odbackupd.conf "$TOP/SOURCES/odbackupd.sysusers"
    # --nodeps: the BuildRequires are Fedora package names; here they come from dpkg, which rpm cannot see.
    rpmbuild --nodeps --define "_topdir $TOP" --define "version_override $VERSION" \
        -ba "$TOP/SPECS/odbackupd.spec" > "$BUILD/rpm.log" 2>&1 || {
        tail -40 "$BUILD/rpm.log" >&2; echo "build-packages: rpmbuild failed (log: $BUILD/rpm.log)" >&2; exit 1; }
    cp "$TOP"/RPMS/noarch/odbackupd-"$VERSION"-*.noarch.rpm "$DIST/"
    echo "built $(ls "$DIST"/odbackupd-"$VERSION"-*.noarch.rpm)"
    if [ "$LINT" = 1 ]; then
        rpmlint -r packaging/rpm/odbackupd.rpmlintrc "$TOP"/RPMS/noarch/*.rpm "$TOP"/SRPMS/*.rpm "$TOP/SPECS/odbackupd.spec"
        echo "rpmlint: clean"
    fi
fi
