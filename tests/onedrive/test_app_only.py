"""App-only (client credentials) backups to a SharePoint library: no user, no odctl login,
the client secret handed over as a systemd credential — the unattended Business setup."""
from __future__ import annotations

import uuid

import pytest

from odbackupd.snapshot.catalog import find_snapshot
from odbackupd.snapshot.restore import restore_snapshot, verify_snapshot
from tests.layout import HOST
from tests.snapshot.treegen import assert_same_tree, make_awkward_tree

APP_ID = str(uuid.UUID(int=0xA11AB5E, version=4))
SECRET = "app~only~s3cret~value"


@pytest.mark.graphemu(mode="business")
def test_app_only_backup_to_a_site_with_the_secret_as_a_credential(od, tmp_path, monkeypatch):
    emu = od.emu
    emu.register_app(APP_ID, secret=SECRET)
    creds = tmp_path / "credentials"  # what systemd builds for LoadCredential=
    creds.mkdir(mode=0o700)
    (creds / "odbackupd_graph").write_text(SECRET + "\n")
    src = make_awkward_tree(tmp_path)
    od.write([src])
    text = od.config_path.read_text()
    text = text.replace(f'client_id = "{emu.client_id}"', f'client_id = "{APP_ID}"')
    text = text.replace('[destination.od]', 'client_secret_file = "odbackupd_graph"\n'
                        'site = "contoso.sharepoint.com:/sites/backups"\n\n[destination.od]')
    od.config_path.write_text(text)

    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))  # the --once child inherits it
    proc = od.once()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "completed" in out
    assert SECRET not in out + err
    dest = od.destination()
    m = find_snapshot(dest, "t", "latest")
    # it went to the site's document library, not to any user's drive
    assert emu.item(f"{od.folder}/{HOST}/t/{m.snapshot}/manifest.json", drive_id=emu.site_drive_id)
    assert verify_snapshot(dest, m).ok
    restore_snapshot(dest, m, tmp_path / "out", special_files=True)
    dest.close()
    assert_same_tree(src, tmp_path / "out" / str(src).lstrip("/"))
    assert not (od.state_dir / "tokens").exists() or not any((od.state_dir / "tokens").iterdir())
    emu.assert_no_violations()
