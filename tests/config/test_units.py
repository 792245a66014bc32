import pytest

from odbackupd.config import parse_duration, parse_size
from odbackupd.config.units import format_duration, format_size


@pytest.mark.parametrize(
    "text, expected",
    [
        (0, 0),
        (1024, 1024),
        ("1024", 1024),
        ("0", 0),
        ("64MiB", 64 * 2**20),
        ("64 MiB", 64 * 2**20),
        (" 64mib ", 64 * 2**20),
        ("20GiB", 20 * 2**30),
        ("1.5GiB", 3 * 2**29),
        ("500M", 500_000_000),
        ("500MB", 500_000_000),
        ("1k", 1000),
        ("1K", 1000),
        ("1KiB", 1024),
        ("2TiB", 2 * 2**40),
        ("3T", 3 * 10**12),
        ("7B", 7),
        ("320KiB", 327_680),
        ("0.3KiB", 307),  # fractions are rounded down to whole bytes
        (".5MiB", 2**19),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected
    assert isinstance(parse_size(text), int)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "expected a number of bytes"),
        ("MiB", "expected a number of bytes"),
        ("64XiB", "unknown unit 'XiB'"),
        ("64 MiB extra", "expected a number of bytes"),
        ("1,5GiB", "expected a number of bytes"),
        ("-5MiB", "must not be negative"),
        (-1, "must not be negative"),
        (True, "expected a number of bytes"),
        (1.5, "expected a number of bytes"),
        (None, "expected a number of bytes"),
        ("1e3", "expected a number of bytes"),
    ],
)
def test_parse_size_rejects(text, message):
    with pytest.raises(ValueError, match="invalid size") as info:
        parse_size(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        (300, 300.0),
        (1.5, 1.5),
        (0, 0.0),
        ("300", 300.0),
        ("90s", 90.0),
        ("10min", 600.0),
        ("10m", 600.0),  # systemd: m is minutes
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1h30min", 5400.0),
        ("1h 30min 15s", 5415.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("2 hours", 7200.0),
        ("1 day", 86400.0),
        ("5 minutes", 300.0),
        ("10MIN", 600.0),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "expected a number of seconds"),
        ("soon", "expected a number of seconds"),
        ("10 fortnights", "unknown unit 'fortnights'"),
        ("1M", "unknown unit 'M'"),  # month or minute? refuse to guess
        ("1h 30", "unknown unit ''"),
        ("-5s", "must not be negative"),
        (-5, "must not be negative"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (True, "expected a number of seconds"),
        (None, "expected a number of seconds"),
    ],
)
def test_parse_duration_rejects(text, message):
    with pytest.raises(ValueError, match="invalid duration") as info:
        parse_duration(text)
    assert message in str(info.value)


@pytest.mark.parametrize("n", [0, 1, 1000, 1024, 320 * 1024, 64 * 2**20, 20 * 2**30, 2**40 + 1])
def test_format_size_round_trips(n):
    assert parse_size(format_size(n)) == n


@pytest.mark.parametrize("s", [0.0, 0.25, 1.0, 59.0, 300.0, 3600.0, 5400.0, 90061.0])
def test_format_duration_round_trips(s):
    assert parse_duration(format_duration(s)) == s


def test_formats_read_well():
    assert format_size(64 * 2**20) == "64MiB"
    assert format_size(10 * 2**20) == "10MiB"
    assert format_duration(5400) == "1h30min"
    assert format_duration(300) == "5min"
