"""The percentage odctl and STATUS= show: half building, half storing, never backwards."""
from __future__ import annotations

from odbackupd.service.progress import progress_dict
from odbackupd.snapshot.builder import Progress


def _walk(stored_lag: int) -> list[float]:
    """A 10-volume run whose previous snapshot had 100 bytes; stores lag ``stored_lag`` volumes."""
    out = []
    for built in range(1, 11):
        p = Progress(phase="building", data_bytes=built * 10, volumes_built=built,
                     volumes_stored=max(0, built - stored_lag), estimated_total=100, started=0)
        out.append(progress_dict(p, 1.0)["percent"])
    for stored in range(max(0, 10 - stored_lag), 11):
        p = Progress(phase="uploading", data_bytes=100, volumes_built=10, volumes_stored=stored,
                     estimated_total=100, started=0)
        out.append(progress_dict(p, 1.0)["percent"])
    out.append(progress_dict(Progress(phase="done", started=0), 1.0)["percent"])
    return out


def test_local_destination_climbs_steadily():
    seq = _walk(stored_lag=0)
    assert seq == sorted(seq) and seq[0] == 10.0 and seq[-1] == 100.0
    assert max(seq[:-1]) <= 99.0


def test_slow_uploads_do_not_make_the_figure_fall_when_building_ends():
    seq = _walk(stored_lag=6)
    assert seq == sorted(seq), seq
    assert seq[9] < 80  # reading done, most volumes not stored yet: not "nearly done"


def test_no_estimate_no_percentage_while_building():
    p = Progress(phase="building", data_bytes=10, volumes_built=1, started=0)
    assert "percent" not in progress_dict(p, 1.0)
