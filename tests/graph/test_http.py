"""The shared HTTP session: our CA beats REQUESTS_CA_BUNDLE, and every request is
decorated with the ISV User-Agent Microsoft asks for."""
from __future__ import annotations

import pytest
import requests

from odbackupd.graph.http import USER_AGENT, make_session


def test_account_ca_wins_over_environment_and_user_agent_is_isv(graph_emulator, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    url = graph_emulator.graph_url + "/me/drive"
    # the trap: a plain session trusting the environment cannot reach the private CA
    with pytest.raises(requests.exceptions.SSLError):
        requests.Session().get(url, timeout=10)
    s = make_session(graph_emulator.ca_pem)
    r = s.get(url, headers={"Authorization": "Bearer " + graph_emulator.access_token()}, timeout=10)
    assert r.status_code == 200, r.text
    assert graph_emulator.requests[-1]["user_agent"] == USER_AGENT
    assert USER_AGENT.startswith("ISV|odbackupd|odbackupd/")
