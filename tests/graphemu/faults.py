"""Fault injection: scheduled rules and seeded random rates.

Every request gets an endpoint label (``graph.children.list``, ``upload.fragment``,
``download.get``, ``identity.token``, ... see ``GraphEmulator.endpoints``). Faults match
labels with shell-style globs.

Scheduled rules (exact, for tests that want "the 3rd fragment PUT gets a 503")::

    emu.faults.add("error", "upload.fragment", nth=3, status=503)
    emu.faults.add("lost_response", "upload.fragment", nth=2)          # commit, then hang up
    emu.faults.add("partial_commit", "upload.fragment", keep=100_000)  # keep K bytes, reset
    emu.faults.add("throttle", "graph.*", retry_after="date", times=2)

``nth`` counts matching requests from the moment the rule was added (1 = the next one);
the rule then fires ``times`` times in a row (``times=None``: forever), or every
``every``-th match when ``every`` is given.

Random rates (deterministic for a given seed and request order)::

    emu.faults.set(throttle_rate=0.1, error_rate=0.05, lost_response_rate=0.1)

Actions and their parameters:

=========================  ==========================================================
``throttle``               ``status`` (429, 503 or 509), ``retry_after``: int seconds,
                           ``"date"`` / ``"date+N"`` for an HTTP-date 2 / N seconds
                           ahead (emulator clock), or ``None`` for no header
``error``                  ``status`` (500/502/503/504...), ``code``, ``retry_after``
``reset``                  TCP RST before the request is processed
``drop``                   close the connection without answering, nothing processed
``lost_response``          process the request (commit the fragment, create the
                           folder...) then close the connection without answering
``error_after``            process it, then answer ``status`` (default 503) anyway
``partial_commit``         fragments: commit only the first ``keep`` bytes (default
                           half, not 320 KiB aligned) then ``then`` = "reset" | "503"
``missing_ranges``         fragments: 202 without ``nextExpectedRanges``
``hashes_missing``         last fragment / commit: the driveItem has no ``file.hashes``
                           (a later GET has them)
``expire_session``         fragments/status: the upload session expires first (404)
``revoke_access``          all access tokens of the caller's user stop working (401)
``rps_401``                a transient 401 "Unable to initialize RPS"
``revoke_refresh``         token endpoint: the refresh token is revoked (invalid_grant)
``mfa_required``           token endpoint: invalid_grant AADSTS50076
``empty_page``             children: a page of 0 items that still has a nextLink
``truncate``               downloads: send ``keep`` bytes (default half) then reset
``ignore_range``           downloads: answer 200 with the whole file despite Range
``delay``                  sleep ``seconds`` before answering (real time)
=========================  ==========================================================
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass, field
from typing import Any

ACTIONS = {
    "throttle", "error", "reset", "drop", "lost_response", "error_after", "partial_commit",
    "missing_ranges", "expire_session", "revoke_access", "rps_401", "revoke_refresh",
    "mfa_required", "empty_page", "truncate", "ignore_range", "delay", "hashes_missing",
}

# rate name -> (action, default endpoint glob)
RATES: dict[str, tuple[str, str]] = {
    "throttle_rate": ("throttle", "graph.*|upload.*|download.*"),
    "error_rate": ("error", "graph.*|upload.*|download.*"),
    "reset_rate": ("reset", "graph.*|upload.*|download.*"),
    "lost_response_rate": ("lost_response", "upload.fragment"),
    "partial_commit_rate": ("partial_commit", "upload.fragment"),
    "missing_ranges_rate": ("missing_ranges", "upload.fragment"),
    "empty_page_rate": ("empty_page", "graph.children.list"),
    "rps_401_rate": ("rps_401", "graph.*"),
    "truncate_rate": ("truncate", "download.get"),
}


@dataclass
class FaultRule:
    action: str
    endpoint: str = "*"
    nth: int = 1
    times: int | None = 1
    every: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seen: int = 0
    fired: int = 0

    def matches(self, label: str) -> bool:
        return any(fnmatch.fnmatchcase(label, pat) for pat in self.endpoint.split("|"))

    def step(self) -> bool:
        """Count one matching request; True if the rule fires for it."""
        self.seen += 1
        if self.every:
            fire = self.seen >= self.nth and (self.seen - self.nth) % self.every == 0
        else:
            fire = self.seen >= self.nth and (self.times is None or self.fired < self.times)
        if fire and self.times is not None and self.fired >= self.times:
            fire = False
        if fire:
            self.fired += 1
        return fire

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def get(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)


class Faults:
    """Holds the rules and rates; ``draw(label)`` decides what hits one request."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.rules: list[FaultRule] = []
        self.rates: dict[str, float] = {name: 0.0 for name in RATES}
        self.rate_endpoints: dict[str, str] = {n: ep for n, (_, ep) in RATES.items()}
        self.rate_params: dict[str, Any] = {
            "throttle_status": 429, "retry_after": 1, "error_status": 503,
        }
        self.history: list[tuple[int, str, str]] = []  # (request seq, label, action)
        self._seq = 0

    def set(self, **settings: Any) -> None:
        """Set random fault rates (0..1) and their parameters.

        Rates: see ``RATES``. Parameters: ``throttle_status``, ``retry_after``,
        ``error_status``; ``<rate>_endpoints`` overrides where a rate applies.
        """
        with self._lock:
            for key, value in settings.items():
                if key in self.rates:
                    self.rates[key] = float(value)
                elif key.endswith("_endpoints") and key[: -len("_endpoints")] in self.rates:
                    self.rate_endpoints[key[: -len("_endpoints")]] = value
                elif key in self.rate_params:
                    self.rate_params[key] = value
                else:
                    raise TypeError(f"unknown fault setting {key!r}")

    def add(self, action: str, endpoint: str = "*", nth: int = 1, times: int | None = 1,
            every: int | None = None, **params: Any) -> FaultRule:
        if action not in ACTIONS:
            raise ValueError(f"unknown fault action {action!r}; known: {sorted(ACTIONS)}")
        rule = FaultRule(action, endpoint, nth, times, every, params)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule and zero every rate (the RNG keeps its position)."""
        with self._lock:
            self.rules.clear()
            for name in self.rates:
                self.rates[name] = 0.0

    def reseed(self, seed: int) -> None:
        with self._lock:
            self.seed = seed
            self._rng = random.Random(seed)
            self._seq = 0
            self.history.clear()

    def draw(self, label: str) -> list[FaultRule]:
        fired: list[FaultRule] = []
        with self._lock:
            self._seq += 1
            for rule in self.rules:
                if rule.matches(label) and rule.step():
                    fired.append(rule)
            self.rules = [r for r in self.rules if not r.exhausted]
            for name, (action, _) in RATES.items():
                rate = self.rates[name]
                if rate <= 0:
                    continue
                pats = self.rate_endpoints[name].split("|")
                if not any(fnmatch.fnmatchcase(label, p) for p in pats):
                    continue
                if self._rng.random() < rate:
                    params: dict[str, Any] = {}
                    if action == "throttle":
                        params = {"status": self.rate_params["throttle_status"],
                                  "retry_after": self.rate_params["retry_after"]}
                    elif action == "error":
                        params = {"status": self.rate_params["error_status"]}
                    fired.append(FaultRule(action, label, params=params, fired=1))
            for rule in fired:
                self.history.append((self._seq, label, rule.action))
        return fired
