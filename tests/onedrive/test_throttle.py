"""One Retry-After gate per app in the process: a 429 to one worker pauses all of them."""
from __future__ import annotations

import threading

from .conftest import wait_until
from .test_upload import CHUNK, _volume


def test_a_429_to_one_worker_pauses_every_worker_of_the_app(od, tmp_path):
    emu = od.emu
    src = tmp_path / "src"
    src.mkdir()
    od.write([src])
    od.login()
    a, b = od.destination(), od.destination()  # e.g. two jobs running at once
    assert a.client.gate is b.client.gate
    fa, ea = _volume(tmp_path, 3 * CHUNK, "a")
    fb, eb = _volume(tmp_path, 3 * CHUNK, "b")
    emu.faults.add("throttle", "upload.fragment", nth=2, retry_after=2)
    errors: list[BaseException] = []

    def upload_a() -> None:
        try:
            a.put_file("t", "s1", "a", fa, ea)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=upload_a)
    t.start()
    wait_until(lambda: a.client.throttled >= 1, "the 429")
    b.put_file("t", "s1", "b", fb, eb)  # b never saw a 429 itself
    t.join(30)
    assert not errors, errors

    log = emu.requests
    i = next(i for i, r in enumerate(log) if r["sets_gate"])
    gate = log[i]["sets_gate"]
    later = log[i + 1:]
    assert any("/b:/createUploadSession" in r["path"] for r in later)
    assert all(r["t"] >= gate - emu.config.retry_after_tolerance
               for r in later if r["host"] != "login")
    assert emu.retry_after_violations == 0
    a.close()
    b.close()
    emu.assert_no_violations()
