"""Issue 10, item 16 at the Python boundary: bytes of a config that are not
UTF-8, numbers out of a double's range and huge keys reach the user as a
ValueError that names the file and what is wrong, never as a
UnicodeDecodeError or a bare JSON library message."""

import pytest
import torch

import amct_pytorch as amct
from models import spec_net

X = torch.randn(2, 3, 8, 8)


def quantize(config, tmp_path):
    return amct.quantize_model(str(config), str(tmp_path / "mod.onnx"), str(tmp_path / "rec.txt"), spec_net(), X)


def test_invalid_utf8_in_config_is_value_error_with_offset(tmp_path):
    config = tmp_path / "bad.json"
    config.write_bytes(b'{"version": 1, "conv1\xff": {}}')
    with pytest.raises(ValueError, match=r"bad\.json' is not valid UTF-8: byte 0xFF at offset 21 \(line 1, column 22\)"):
        quantize(config, tmp_path)


def test_invalid_utf8_in_simple_config_is_value_error(tmp_path):
    simple = tmp_path / "bad.cfg"
    simple.write_bytes(b"batch_num: 1\n# caf\xe9\n")
    with pytest.raises(ValueError, match=r"bad\.cfg' is not valid UTF-8: byte 0xE9 at offset 18"):
        amct.create_quant_config(str(tmp_path / "c.json"), spec_net(), X, config_defination=str(simple))


def test_number_out_of_double_range_names_file_and_field(tmp_path):
    config = tmp_path / "big.json"
    config.write_text('{"version": 1, "batch_num": 1e400}')
    with pytest.raises(ValueError, match=r"big\.json': the number 1e400 of 'batch_num' is out of the range of a double"):
        quantize(config, tmp_path)


def test_huge_key_is_cut_in_the_message(tmp_path):
    config = tmp_path / "long.json"
    config.write_text('{"version": 1, "' + "k" * (1 << 20) + '": 1}')
    with pytest.raises(ValueError) as raised:
        quantize(config, tmp_path)
    assert "... (1048576 bytes) is an invalid layer name or parameter" in str(raised.value)
    assert len(str(raised.value)) < 400


def test_non_utf8_bytes_inside_a_message_do_not_become_unicode_errors(tmp_path):
    # A "\377" escape in a record key yields a key that is not UTF-8; save_model
    # names it in its error, which must still arrive as the error it is.
    calib_dir = tmp_path / "flow"
    calib_dir.mkdir()
    paths = {n: str(calib_dir / n) for n in ("config.json", "modified.onnx", "record.txt")}
    model = spec_net()
    amct.create_quant_config(paths["config.json"], model, X)
    calib = amct.quantize_model(paths["config.json"], paths["modified.onnx"], paths["record.txt"], model, X)
    with torch.no_grad():
        calib(X)
    with open(paths["record.txt"], "a", encoding="utf-8") as f:
        f.write('record {\n  key: "conv\\377"\n  value {\n    scale_d: 0.1\n    offset_d: 0\n  }\n}\n')
    with pytest.raises(RuntimeError, match=r"conv\\xff"):
        amct.save_model(paths["modified.onnx"], paths["record.txt"], str(tmp_path / "out" / "m"))
