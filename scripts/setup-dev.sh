#!/usr/bin/env bash
# Installs what odbackupd's tests need on Debian 12: the real command-line tools the tests
# compare against (age, zstd, GNU tar, dbus-daemon, gdbus), what builds and lints the
# packages (dpkg-buildpackage with dh-python, rpmbuild, lintian, rpmlint, mandoc), nginx and
# chromium for odbackupd-intake's tests, what the
# system test boots a Debian container with (debootstrap, systemd-nspawn), and a
# virtualenv with the Python dependencies. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
APT_PACKAGES="age zstd tar dbus attr python3-venv libglib2.0-bin"
# tests/odctl/test_zsh.py: the zsh completion in a real zsh
APT_PACKAGES="$APT_PACKAGES zsh"
# packages: scripts/build-packages.sh; man pages: mandoc -Tlint
APT_PACKAGES="$APT_PACKAGES dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all
    python3-setuptools python3-build python3-installer fakeroot lintian rpm rpmlint mandoc"
# tests/prometheus: promtool (check metrics/rules, test rules) and a real node_exporter
APT_PACKAGES="$APT_PACKAGES prometheus prometheus-node-exporter"
# tests/odctl/test_ansible.py: ansible-playbook --syntax-check on contrib/ansible
APT_PACKAGES="$APT_PACKAGES ansible"
# tests/intake: odbackupd-intake behind Debian's nginx, its upload page in a headless
# chromium driven by chromedriver (selenium comes from pyproject's test extra)
APT_PACKAGES="$APT_PACKAGES nginx chromium chromium-driver"
# tests/mount: odctl mount for real (fusermount3, /dev/fuse); pyfuse3 builds against libfuse3-dev
APT_PACKAGES="$APT_PACKAGES fuse3 libfuse3-dev pkg-config"
# tests/system: a Debian 12 container booted with systemd
APT_PACKAGES="$APT_PACKAGES debootstrap systemd-container"
missing=""
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
