"""``python -m lossfn.bench``: the one entry point to the benchmark scripts (not run here: speed is never timed in tests)."""

from __future__ import annotations

import os

import lossfn.bench as bench


def test_every_listed_benchmark_has_its_script(capsys):
    assert bench.main(["--list"]) == 0
    listing = capsys.readouterr().out
    for name, (script, _) in bench.BENCHMARKS.items():
        assert name in listing
        assert os.path.exists(os.path.join(bench._scripts(), script + ".py")), script


def test_an_unknown_benchmark_is_refused_with_the_choices(capsys):
    assert bench.main(["speed"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark 'speed'" in err and "losses" in err
