"""Outputs are written whole or not at all: a process killed in the middle of a write leaves the earlier
file (or model folder) as it was; names from a record stay inside their folder."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers.design import make_tiny_clip

from trendgen.files import UnsafeName, inside, safe_name, write_text


def test_a_process_killed_while_writing_leaves_the_earlier_file_whole(tmp_path):
    target = tmp_path / "trend.json"
    write_text(target, '{"k": 5}\n')
    script = (
        "import os; from trendgen.files import write_with\n"
        "def half(handle):\n"
        "    handle.write(b'{\"k\": 3, \"clusters\": [' + b'0,' * 100000); handle.flush(); os._exit(9)\n"
        f"write_with({str(target)!r}, half)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert killed.returncode == 9
    assert target.read_text() == '{"k": 5}\n'


def test_a_model_folder_whose_save_fails_is_left_as_it_was(tmp_path, monkeypatch):
    from transformers import CLIPProcessor

    from trendgen.model.build import load_saved, save_clip

    folder = make_tiny_clip(tmp_path / "model")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    model, tokenizer, image_processor = load_saved(folder)

    def dies(self, *args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(CLIPProcessor, "save_pretrained", dies)
    with pytest.raises(OSError):
        save_clip(folder, model, tokenizer, image_processor)  # the weights were written, the processor not
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no partial folder left beside it


@pytest.mark.parametrize("name", ["../victim.txt", "/etc/passwd", "a/../../b", "", "~/x", "a\\..\\b"])
def test_names_that_leave_their_folder_are_refused(tmp_path, name):
    with pytest.raises(UnsafeName):
        inside(tmp_path, name)


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "designs").symlink_to(tmp_path)
    with pytest.raises(UnsafeName):
        inside(tmp_path / "run", "designs/victim.png")
    assert safe_name("designs/design-1.png") == "designs/design-1.png"
