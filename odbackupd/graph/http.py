"""The HTTP session every Graph and login request goes through.

Two rules from GRAPH-NOTES.md live here so no caller can forget them:

* ``User-Agent: ISV|odbackupd|odbackupd/VERSION`` — Microsoft's decoration for
  independent software vendors; throttling is applied more kindly to decorated traffic.
* The CA to trust is the one configured for the account (``ca_bundle``). requests lets
  ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` override ``Session.verify`` for every request
  that does not pass ``verify=`` itself — and msal never does. :class:`GraphSession` keeps
  the environment's proxies and .netrc handling but makes ``Session.verify`` win over
  those two variables. Hand the same session to msal (``http_client=``).
"""
from __future__ import annotations

import os
from pathlib import Path

import requests

from .. import __version__

USER_AGENT = f"ISV|odbackupd|odbackupd/{__version__}"


class GraphSession(requests.Session):
    """A requests Session whose ``verify`` is not overridden by the environment."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # noqa: ANN001, ANN201
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None:  # the caller did not choose for this request: the session decides
            settings["verify"] = self.verify
        return settings


def make_session(ca_bundle: Path | str | None = None, *, pool_size: int = 8) -> GraphSession:
    """A session trusting ``ca_bundle`` (a PEM file) if given, else the environment's CA
    bundle variables, else certifi/system defaults; with our User-Agent and a connection
    pool large enough for ``pool_size`` parallel uploads."""
    s = GraphSession()
    if ca_bundle is not None:
        s.verify = str(ca_bundle)
    else:
        s.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    s.headers["User-Agent"] = USER_AGENT
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 4))
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s
