"""The system test's odbackupd-intake step, in the booted container with the installed .deb.

As the README sets it up: python3-aiohttp from the mirror, /srv/intake/pve1 (mode 1730,
owned by the daemon, group odbackupd-intake) and its partial directory, a drop-directory
job, ``odctl intake add-user pve1``, the socket enabled. A file PUT with the token through
the socket (systemd starts the service) lands, is stored by the daemon as a snapshot of
pve1-dumps+drop, removed, and restores byte-identical; the journal says who sent what
with structured fields and never the token. The unit scores <= 2.0.
"""
from __future__ import annotations

import hashlib
import json
import os

from .systest import CONFIG, check

PUT = r"""
import json, sys, urllib.request, urllib.error
url, path = sys.argv[1:3]
token = sys.stdin.read().strip()  # not in argv: ps would show it
req = urllib.request.Request(url, data=open(path, "rb").read(), method="PUT",
                             headers={"Authorization": "Bearer " + token})
try:
    with urllib.request.urlopen(req, timeout=60) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
"""


def intake_step(t) -> str:  # noqa: ANN001 - the SystemTest
    t.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-aiohttp", timeout=600)
    for unit in ("odbackupd-intake.socket", "odbackupd-intake.service"):
        state = t.sh(f"systemctl is-enabled {unit}", check=False).stdout.strip()
        check(state in ("disabled", "static", "indirect"), f"{unit} is {state!r} after install")
    verify = t.sh("systemd-analyze verify odbackupd-intake.service odbackupd-intake.socket",
                  check=False)
    check(verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(),
          f"systemd-analyze verify said:\n{verify.stdout}{verify.stderr}")
    out = t.sh("systemd-analyze security --no-pager odbackupd-intake.service").stdout
    line = next((ln for ln in out.splitlines() if "Overall exposure level" in ln), "")
    score = float(line.split(":")[1].split()[0])
    check(score <= 2.0, f"odbackupd-intake exposure {score} > 2.0:\n{out}")
    t.sh("install -d -m 0755 /srv/intake"
         " && install -d -o odbackupd -g odbackupd-intake -m 1730 /srv/intake/pve1"
         " && install -d -o odbackupd-intake -g odbackupd-intake -m 0700 /srv/intake/pve1.partial")
    t.ct.write("/etc/systemd/system/odbackupd.service.d/intake.conf",
               "[Service]\nReadWritePaths=/srv/intake/pve1\n")
    t.write_config('[job.pve1-dumps]\ndrop_dir = "/srv/intake/pve1"\nquiet_period = "1s"\n\n'
                   '[intake.user.pve1]\ntoken_file = "intake_pve1"\ndrop_job = "pve1-dumps"\n')
    token = t.odctl("intake add-user pve1").stdout.strip()
    check(token and token not in t.ct.path("/etc/odbackupd/intake/pve1").read_text(),
          "odctl intake add-user wrote the token itself, not its hash")
    t.sh(f"odbackupd-intake --config {CONFIG} --check-config")
    t.sh("systemctl daemon-reload && systemctl restart odbackupd"
         " && systemctl enable --now odbackupd-intake.socket")
    payload = os.urandom(3 << 20)
    t.ct.path("/root/pve1.vma").write_bytes(payload)
    t.ct.write("/root/put.py", PUT)
    url = "http://127.0.0.1:8421/upload/pve1.vma"
    got = t.sh(f"python3 /root/put.py {url} /root/pve1.vma", input=token).stdout
    status, _, body = got.partition(" ")
    check(status == "201", f"PUT answered {got!r}\n{t.journal('-u odbackupd-intake -n 30 -o cat')}")
    check(json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest(), f"PUT answered {body}")
    check(t.ct.show("User", "odbackupd-intake.service") == "odbackupd-intake", "not its own user")
    refused = t.sh(f"python3 /root/put.py {url} /root/pve1.vma", input="wrong-token").stdout
    check(refused.startswith("401"), f"a wrong token got {refused!r}")
    t.ct.wait_until("the daemon to store and remove the intake file",
                    lambda: t.sh("test -e /srv/intake/pve1/pve1.vma",
                                 check=False).returncode != 0, 90)
    snaps = t.snapshot_ids("pve1-dumps+drop")
    check(len(snaps) == 1, f"expected one pve1-dumps+drop snapshot, found {sorted(snaps)}")
    t.sh("rm -rf /root/intake-restore"
         " && odctl restore pve1-dumps+drop latest --to /root/intake-restore")
    back = t.ct.path("/root/intake-restore/srv/intake/pve1/pve1.vma").read_bytes()
    check(back == payload, "the restored intake file differs from what was sent")
    from odbackupd import journal

    records = t.journal(f"-t odbackupd-intake MESSAGE_ID={journal.MSG_INTAKE_STORED.hex} -o json")
    entries = [json.loads(ln) for ln in records.splitlines() if ln]
    check(entries and entries[-1].get("INTAKE_USER") == "pve1"
          and entries[-1].get("INTAKE_SHA256") == hashlib.sha256(payload).hexdigest(),
          "no structured intake entry in the journal: "
          f"{entries[-1:] or t.journal('-t odbackupd-intake -o cat')}")
    check(token not in t.journal("-o cat"), "the token is in the journal")
    return (f"{score} exposure; PUT -> 201, stored as snapshot {snaps.pop()}, "
            "restored byte-identical")
