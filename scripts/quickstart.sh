#!/usr/bin/env bash
# Quick start: install odbackupd's dependencies, then make a real encrypted backup of a
# sample tree to the embedded default destination (the local directory
# /var/backups/odbackupd), verify it, restore it, and restore it again with only the
# standard tools (age, zstd, tar). Run as root (or with sudo) on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then exec sudo -E bash "$0" "$@"; fi
bash scripts/setup-dev.sh
export PATH="$PWD/.venv/bin:$PATH"

DEMO=/tmp/odbackupd-quickstart
rm -rf "$DEMO"
mkdir -p "$DEMO/src"
cp -a /etc/ssh /etc/apt /usr/share/common-licenses "$DEMO/src/" 2>/dev/null || true
ln -s ssh/sshd_config "$DEMO/src/a-symlink" 2>/dev/null || true
age-keygen -o "$DEMO/key.txt" 2>/dev/null
RECIPIENT=$(age-keygen -y "$DEMO/key.txt")
cat > "$DEMO/odbackupd.toml" <<TOML
# No [destination] section: the job goes to the built-in "local" destination,
# /var/backups/odbackupd. Only the public recipient is here; the identity stays offline.
[daemon]
state_dir = "$DEMO/state"
spool_dir = "$DEMO/spool"

[job.demo]
sources = ["$DEMO/src"]
recipients = ["$RECIPIENT"]
volume_size = "1MiB"
keep_last = 5
TOML
set -x
odbackupd --config "$DEMO/odbackupd.toml" --check-config
odbackupd --config "$DEMO/odbackupd.toml" --once demo
odctl --config "$DEMO/odbackupd.toml" snapshots demo
odctl --config "$DEMO/odbackupd.toml" verify demo --download --identity "$DEMO/key.txt"
odctl --config "$DEMO/odbackupd.toml" restore demo latest --to "$DEMO/restored" --identity "$DEMO/key.txt"
diff -r --no-dereference "$DEMO/src" "$DEMO/restored$DEMO/src"
SNAP=$(ls -d "/var/backups/odbackupd/$(hostname)/demo/"*/ | tail -1)   # HOST/JOB/SNAPSHOT
mkdir -p "$DEMO/with-standard-tools"
( cd "$SNAP" && for v in vol.*; do age -d -i "$DEMO/key.txt" "$v"; done | zstd -d | tar -x -C "$DEMO/with-standard-tools" )
diff -r --no-dereference "$DEMO/src" "$DEMO/with-standard-tools$DEMO/src"
set +x
echo
echo "quickstart: backup, verify and restore OK; snapshot in $SNAP"
ls -l "$SNAP"
