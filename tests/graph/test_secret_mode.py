"""A client secret file every local user can read is refused, naming the file and the chmod."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from odbackupd.graph.auth import Authenticator, CredentialUnavailable

from .test_auth import APP_ID, app_only_account, state_dir


@pytest.mark.graphemu(mode="business")
def test_world_readable_client_secret_is_refused(graph_emulator, tmp_path):
    emu = graph_emulator
    emu.register_app(APP_ID, secret="s3cr3t~value")
    shared = Path(tempfile.mkdtemp(prefix="odbackupd-secret-"))  # world-searchable, as /etc is
    try:
        os.chmod(shared, 0o755)
        secret = shared / "client-secret"
        secret.write_text("s3cr3t~value\n")
        os.chmod(secret, 0o644)
        acct = app_only_account(emu, tmp_path, setting=f'client_secret_file = "{secret}"')
        with pytest.raises(CredentialUnavailable) as info:
            Authenticator("me", acct, state_dir(tmp_path)).access_token()
        msg = str(info.value)
        assert f"client_secret_file {secret} is readable by every user (mode 0644)" in msg
        assert f"chmod 600 {secret}" in msg and "s3cr3t" not in msg
        os.chmod(secret, 0o600)
        assert Authenticator("me", acct, state_dir(tmp_path)).access_token()
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    emu.assert_no_violations()
