"""odbackupd-intake over loopback, the real process: PUT, tus, tokens, areas, names, limits."""
from __future__ import annotations

import base64
import hashlib
import os
import signal
import threading

import pytest

from .conftest import TOKENS, Intake, send_partial

MiB = 1 << 20


def test_put_lands_the_whole_file_and_answers_size_and_sha256(intake: Intake) -> None:
    data = os.urandom(3 * MiB + 17)
    status, body = intake.put("vzdump-qemu-100.vma.zst", data)
    assert status == 201
    assert body == {"name": "vzdump-qemu-100.vma.zst", "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest()}
    assert intake.waiting() == {"vzdump-qemu-100.vma.zst": data}
    assert intake.partials() == [] and intake.waiting("bob") == {}
    assert "alice sent vzdump-qemu-100.vma.zst (3145745 bytes" in intake.log()


def test_chunked_put_without_content_length(intake: Intake) -> None:
    data = os.urandom(2 * MiB + 5)
    chunks = (data[i:i + 300_000] for i in range(0, len(data), 300_000))
    status, body = intake.put("dump.sql", chunks, headers={"Transfer-Encoding": "chunked"})
    assert status == 201 and body["size"] == len(data)
    assert intake.waiting() == {"dump.sql": data}


def test_a_name_never_overwrites_even_when_sent_at_once(intake: Intake) -> None:
    payloads = [os.urandom(MiB + i) for i in range(6)]
    results: list = [None] * len(payloads)

    def send(i: int) -> None:
        results[i] = intake.put("same.bin", payloads[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(s == 201 for s, _ in results)
    names = sorted(b["name"] for _, b in results)
    assert names == sorted(["same.bin"] + [f"same-{n}.bin" for n in range(2, 7)])
    waiting = intake.waiting()
    assert sorted(waiting.values()) == sorted(payloads)  # every upload intact, none lost
    for _status, body in results:
        assert hashlib.sha256(waiting[body["name"]]).hexdigest() == body["sha256"]


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", f"Basic {TOKENS['alice']}",
                                  "Bearer ", f"bearer {TOKENS['alice']}x"])
def test_no_valid_token_is_401_and_stores_nothing(shared: Intake, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    status, h, _ = shared.request("PUT", "/upload/x.bin", b"data", headers=headers)
    assert status == 401 and h["www-authenticate"].startswith("Bearer")
    status, _, _ = shared.request("POST", "/files", headers={**headers, "Upload-Length": "4",
                                                            "Tus-Resumable": "1.0.0"})
    assert status == 401
    assert shared.waiting() == {} and shared.partials() == []


def test_other_users_uploads_are_unreachable(intake: Intake) -> None:
    """Bob cannot tell Alice's unfinished upload from one that does not exist, nor touch it;
    the URL never chooses the area: Bob's PUT of the same name lands in Bob's area."""
    loc = intake.create(2000, "secret-plan.txt")
    assert intake.patch(loc, 0, b"a" * 1000)[0] == 204
    missing = "/files/" + "0" * 32
    for method in ("HEAD", "PATCH", "DELETE"):
        headers = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "1000"}
        theirs = intake.request(method, loc, b"b" * 10, user="bob", tus=True, headers=headers)
        nothing = intake.request(method, missing, b"b" * 10, user="bob", tus=True, headers=headers)
        assert theirs[0] == nothing[0] == 404, method
        assert theirs[2] == nothing[2]
    assert intake.offset(loc) == 1000  # untouched
    status, body = intake.put("secret-plan.txt", b"bob's own", user="bob")
    assert status == 201 and body["name"] == "secret-plan.txt"
    assert intake.waiting("bob") == {"secret-plan.txt": b"bob's own"}
    assert intake.patch(loc, 1000, b"a" * 1000)[0] == 204
    assert intake.waiting() == {"secret-plan.txt": b"a" * 2000}


@pytest.mark.parametrize("raw, stored", [
    ("..%2F..%2Fetc%2Fpasswd", "passwd"),
    ("%2E%2E", "upload"),
    ("..", "upload"),
    ("dir%2Fsub%2Fname.txt", "name.txt"),
    ("C:%5CUsers%5Cme%5Creport.pdf", "report.pdf"),
    (".bashrc", "bashrc"),
    ("image.iso.part", "image.iso.part_"),
    ("notes~", "notes~_"),
    ("a%0Ab%00c%1B.txt", "a_b_c_.txt"),
    ("caf%C3%A9%20menu.txt", "café menu.txt"),
    ("bad%FFutf8.txt", "bad\ufffdutf8.txt"),
    ("x" * 300 + ".tar.zst", "x" * 196 + ".zst"),
])
def test_odd_names_are_sanitised_into_the_own_area(shared: Intake, raw: str, stored: str) -> None:
    status, body = shared.put(raw, b"content")
    assert status == 201 and body["name"] == stored
    assert shared.waiting() == {stored: b"content"}
    assert sorted(p.name for p in shared.tmp.iterdir() if p.is_file() and "passwd" in p.name) == []


@pytest.mark.parametrize("method, path", [
    ("GET", "/upload/x.bin"), ("DELETE", "/upload/x.bin"), ("POST", "/upload/x.bin"),
    ("PROPFIND", "/"), ("PROPFIND", "/upload/x.bin"), ("MKCOL", "/upload/new"),
    ("GET", "/files"), ("PUT", "/"), ("DELETE", "/"), ("GET", "/etc/passwd"),
    ("GET", "/upload/"), ("GET", "/files/abc/def"), ("TRACE", "/"), ("GET", "/../etc/passwd"),
])
def test_everything_else_is_refused_the_same_whether_a_file_exists(shared: Intake, method: str,
                                                                   path: str) -> None:
    assert shared.put("x.bin", b"stored")[0] == 201
    with_file = shared.request(method, path, b"", user="alice")
    without_token = shared.request(method, path, b"")
    assert with_file[0] in (404, 405), (method, path, with_file)
    assert with_file[0] == without_token[0] and with_file[2] == without_token[2]
    assert b"stored" not in with_file[2]
    if path == "/upload/x.bin":  # the same answer for a name that was never sent
        assert shared.request(method, "/upload/never.bin", b"", user="alice")[:3:2] == \
            with_file[:3:2]
    assert shared.waiting() == {"x.bin": b"stored"}


def test_upload_page_has_a_strict_csp(intake: Intake) -> None:
    status, h, body = intake.request("GET", "/")
    assert status == 200 and b'<script src="upload.js"' in body and b"<script>" not in body
    csp = h["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert h["x-content-type-options"] == "nosniff" and h["server"] == "odbackupd-intake"
    status, h, body = intake.request("GET", "/upload.js")
    assert status == 200 and h["content-type"].startswith("text/javascript") and b"PATCH" in body


def test_max_file_size_on_content_length_before_the_body(intake: Intake) -> None:
    """Refused at the headers (no 100 Continue): the client never sends 9 MiB."""
    import socket

    s = socket.create_connection(("127.0.0.1", intake.port))
    s.sendall(f"PUT /upload/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKENS['alice']}"
              f"\r\nContent-Length: {9 * MiB}\r\nExpect: 100-continue\r\n\r\n".encode())
    s.settimeout(30)
    head = s.recv(4096).decode()
    s.close()
    assert head.startswith("HTTP/1.1 413") and "100 Continue" not in head
    status, _, _ = intake.request("POST", "/files", user="alice", tus=True,
                                      headers={"Upload-Length": str(9 * MiB)})
    assert status == 413
    assert intake.request("OPTIONS", "/files")[1]["tus-max-size"] == str(8 * MiB)
    assert intake.waiting() == {} and intake.partials() == []


def test_max_file_size_while_a_chunked_body_streams(intake: Intake) -> None:
    big = (os.urandom(MiB) for _ in range(10))
    status, _ = intake.put("big.bin", big, headers={"Transfer-Encoding": "chunked"})
    assert status == 413
    assert intake.waiting() == {} and intake.partials() == []
    assert intake.put("small.bin", b"ok")[0] == 201


def test_quota_counts_what_waits_and_frees_when_the_daemon_took_it(tmp_path) -> None:
    svc = Intake(tmp_path, quota="5MiB")
    svc.start()
    try:
        assert svc.put("one.bin", os.urandom(3 * MiB))[0] == 201
        status, body = svc.put("two.bin", os.urandom(3 * MiB))  # Content-Length: at once
        assert status == 507 and "quota" in body["text"]
        chunked = (os.urandom(MiB) for _ in range(3))
        assert svc.put("three.bin", chunked, headers={"Transfer-Encoding": "chunked"})[0] == 507
        assert svc.request("POST", "/files", user="alice", tus=True,
                           headers={"Upload-Length": str(3 * MiB)})[0] == 507
        assert svc.put("bob.bin", os.urandom(3 * MiB), user="bob")[0] == 201  # his own quota
        assert set(svc.waiting()) == {"one.bin"} and svc.partials() == []
        svc.restart()  # the ledger survives a restart
        assert svc.put("two.bin", os.urandom(3 * MiB))[0] == 507
        (svc.drop["alice"] / "one.bin").unlink()  # what the daemon does once it is stored
        assert svc.put("two.bin", os.urandom(3 * MiB))[0] == 201
        loc = svc.create(2 * MiB)  # an unfinished upload counts at its full length
        assert svc.put("four.bin", os.urandom(MiB))[0] == 507
        assert svc.request("DELETE", loc, user="alice", tus=True)[0] == 204
        assert svc.put("four.bin", os.urandom(MiB))[0] == 201
    finally:
        svc.close()


def test_tus_resume_after_a_cut_connection_and_a_crash(intake: Intake) -> None:
    data = os.urandom(5 * MiB + 123)
    loc = intake.create(len(data), "vm-101 日本.vma")
    assert intake.patch(loc, 0, data[:MiB])[0] == 204
    head = (f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKENS['alice']}\r\n"
            f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Upload-Offset: {MiB}\r\nContent-Length: {len(data) - MiB}\r\n\r\n")
    send_partial(intake.port, head, data[MiB:3 * MiB])  # the link drops after 2 MiB more
    assert "Traceback" not in intake.log()
    offset = intake.offset(loc)
    assert offset is not None and MiB < offset <= 3 * MiB  # what arrived was kept
    intake.restart(signal.SIGKILL)  # a crash: only what was acknowledged may count
    assert intake.offset(loc) == offset
    assert intake.patch(loc, 0, data)[0] == 409  # the wrong offset is refused, not appended
    status, h, _ = intake.patch(loc, offset, data[offset:4 * MiB])
    assert status == 204 and int(h["upload-offset"]) == 4 * MiB
    intake.restart()  # a clean stop and start
    status, h, _ = intake.patch(loc, 4 * MiB, data[4 * MiB:])
    assert status == 204 and h["intake-name"] == "vm-101 %E6%97%A5%E6%9C%AC.vma"
    assert h["intake-sha256"] == hashlib.sha256(data).hexdigest()
    assert intake.waiting() == {"vm-101 日本.vma": data}
    assert intake.offset(loc) is None and intake.partials() == []  # finished: gone from tus


def test_tus_checksum_and_termination(intake: Intake) -> None:
    data = os.urandom(2 * MiB)
    loc = intake.create(len(data))
    bad = "sha1 " + base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    status, _, _ = intake.patch(loc, 0, data[:MiB], headers={"Upload-Checksum": bad})
    assert status == 460 and intake.offset(loc) == 0
    good = "sha256 " + base64.b64encode(hashlib.sha256(data[:MiB]).digest()).decode()
    assert intake.patch(loc, 0, data[:MiB], headers={"Upload-Checksum": good})[0] == 204
    assert intake.patch(loc, MiB, data[MiB:], headers={"Upload-Checksum": "crc32 AAAA"})[0] == 400
    assert intake.request("DELETE", loc, user="alice", tus=True)[0] == 204
    assert intake.offset(loc) is None and intake.partials() == [] and intake.waiting() == {}
    loc = intake.create(4)
    assert intake.patch(loc, 0, b"done")[0] == 204
    assert intake.request("DELETE", loc, user="alice", tus=True)[0] == 404  # stored files stay
    assert intake.waiting() == {"big.bin": b"done"}


def test_tus_needs_the_protocol_header_and_the_offset_type(intake: Intake) -> None:
    loc = intake.create(10)
    assert intake.request("HEAD", loc, user="alice")[0] == 412
    assert intake.request("PATCH", loc, b"x", user="alice", tus=True,
                          headers={"Upload-Offset": "0", "Content-Type": "text/plain"})[0] == 415
    assert intake.patch(loc, 0, b"x" * 11)[0] == 413  # past Upload-Length
    assert intake.offset(loc) == 0


def test_a_restart_loses_no_finished_upload(intake: Intake) -> None:
    data = os.urandom(MiB)
    assert intake.put("kept.bin", data)[0] == 201
    intake.restart(signal.SIGKILL)
    assert intake.waiting() == {"kept.bin": data}
    assert intake.put("kept.bin", b"again")[1]["name"] == "kept-2.bin"


def test_an_empty_file_by_tus_lands_at_creation(intake: Intake) -> None:
    status, h, _ = intake.request("POST", "/files", user="alice", tus=True, headers={
        "Upload-Length": "0",
        "Upload-Metadata": "filename " + base64.b64encode(b"empty.txt").decode()})
    assert status == 201 and h["intake-name"] == "empty.txt"
    assert h["intake-sha256"] == hashlib.sha256(b"").hexdigest()
    assert intake.waiting() == {"empty.txt": b""} and intake.partials() == []


def test_a_put_cut_off_mid_body_lands_nothing(intake: Intake) -> None:
    head = (f"PUT /upload/cut.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKENS['alice']}"
            f"\r\nContent-Length: {4 * MiB}\r\n\r\n")
    send_partial(intake.port, head, os.urandom(2 * MiB))
    status, body = intake.put("after.bin", b"the service still serves")
    assert status == 201
    assert intake.waiting() == {"after.bin": b"the service still serves"}
    assert intake.partials() == []
    assert "was cut off after" in intake.log() and "Traceback" not in intake.log()
