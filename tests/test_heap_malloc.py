"""`heap_malloc`: glibc's allocator told to keep freed CPU buffers (fewer page faults)."""

from __future__ import annotations

import platform
import sys

import pytest

from ganlab.training import fit as run


def test_disabled_does_nothing() -> None:
    assert run.keep_freed_memory(False) is False


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_glibc_accepts_the_thresholds() -> None:
    assert run.keep_freed_memory(True) is True


@pytest.mark.slow
def test_a_run_applies_the_config_switch(make_cfg, monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(run, "keep_freed_memory", seen.append)
    run.train(make_cfg("kimg=null", "trainer.max_steps=2"))
    run.train(make_cfg("kimg=null", "trainer.max_steps=2", "heap_malloc=false", name="off"))
    assert seen == [True, False]
