"""`python -m agent.images`: the one-off pass for manual checks."""

from __future__ import annotations

import json

from agent.images.__main__ import main
from tests.integration.agent.images.conftest import put


def test_a_console_pass_prints_what_it_read_and_the_result(tmp_path, folder, capsys):
    put(folder / "a.jpg", b"abc")
    assert main([str(folder), "--state", str(tmp_path / "st"), "--pace-ms", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("read a.jpg (3 bytes)\n")
    result = json.loads(out[out.index("{") :])
    assert result["stored"] == 1 and result["skipped"] == {}
    assert main([str(tmp_path / "missing"), "--state", str(tmp_path / "st")]) == 1
