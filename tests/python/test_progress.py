"""Progress on stderr: a bar on a terminal, nothing when stderr is not a
terminal or when AMCT_PROGRESS=0 / set_progress(False); AMCT_PROGRESS=1 or
set_progress(True) force it on."""

import io
import re
import sys

import pytest
import torch

import amct_pytorch as amct
from amct_pytorch.progress import Progress
from models import spec_net


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def automatic_progress(monkeypatch):
    monkeypatch.delenv("AMCT_PROGRESS", raising=False)
    yield
    amct.set_progress(None)


def _steps(stream):
    with Progress("amct: step", total=4) as progress:
        for done in range(1, 5):
            progress.update(done)
    with Progress("amct: opaque"):
        pass
    return stream.getvalue()


def test_bar_on_a_terminal(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    text = _steps(terminal)
    lines = text.split("\n")
    assert lines[-1] == ""
    # The last drawing of each line is its final state.
    assert re.fullmatch(r"amct: step \|#{24}\| 4/4 \d+\.\ds", lines[0].split("\r\x1b[K")[-1])
    assert lines[0].startswith("\r\x1b[Kamct: step |                        | 0/4 ")
    assert re.fullmatch(r"amct: opaque done \d+\.\ds", lines[1].split("\r\x1b[K")[-1])
    assert lines[1].split("\r\x1b[K")[1].startswith("amct: opaque ... ")


@pytest.mark.parametrize("how", ["env", "switch"])
def test_disabled_on_a_terminal_prints_nothing(monkeypatch, how):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    if how == "env":
        monkeypatch.setenv("AMCT_PROGRESS", "0")
    else:
        monkeypatch.setenv("AMCT_PROGRESS", "1")  # the switch wins over the variable
        amct.set_progress(False)
    assert _steps(terminal) == ""


def test_not_a_terminal_prints_nothing_unless_forced(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    assert _steps(log) == ""
    monkeypatch.setenv("AMCT_PROGRESS", "1")
    assert "amct: step |" in _steps(log)


def test_set_progress_checks_its_argument():
    with pytest.raises(TypeError, match=r"set_progress\(\): enabled must be True, False or None, got 'yes'"):
        amct.set_progress("yes")


def _final_lines(text):
    return [line.split("\r\x1b[K")[-1] for line in text.split("\n") if line]


def test_flow_reports_export_calibration_and_save(tmp_path, monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    amct.set_progress(True)
    model = spec_net()
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(2, 3, 8, 8, generator=gen) for _ in range(2)]
    config, modified, record = (str(tmp_path / n) for n in ("c.json", "m.onnx", "r.txt"))
    amct.create_quant_config(config, model, batches[0], batch_num=2)
    calib = amct.quantize_model(config, modified, record, model, batches[0])
    with torch.no_grad():
        for batch in batches:
            calib(batch)
    amct.save_model(modified, record, str(tmp_path / "out" / "m"))
    lines = _final_lines(log.getvalue())
    # One export for the flow: quantize_model reused create_quant_config's.
    assert len(lines) == 3, lines
    assert re.fullmatch(r"amct: exporting the model to ONNX done \d+\.\ds", lines[0])
    assert re.fullmatch(r"amct: calibration batches \|#{24}\| 2/2 \d+\.\ds record written", lines[1])
    assert re.fullmatch(r"amct: saving the models done \d+\.\ds", lines[2])
