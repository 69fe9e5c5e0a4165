"""coursekit claims: verdicts and figures collected per seed offset, a failed claim reported, not lost."""
from __future__ import annotations

import nbformat
import pytest

pytest.importorskip("nbclient")
from coursekit import claims as ck  # noqa: E402

SOURCE = '''import os
from gvlib.claims import claim
off = int(os.environ.get("GVLIB_SEED_OFFSET", "0"))
claim("the offset is below 500", off < 500, offset=off)
claim("always", True)
'''


def _nb(tmp_path, source=SOURCE):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source), nbformat.v4.new_code_cell("print('after')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_claims_in_reads_verdicts_and_measured_lines():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("")]
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                  text="✓ a holds\n    measured: x=1\n✓ b holds\nother\n"),
                           nbformat.v4.new_output("error", ename="ClaimError", evalue="✗ c fails\n    measured: y=2",
                                                  traceback=[])]
    assert ck.claims_in(nb) == [("a holds", True, "x=1"), ("b holds", True, ""), ("c fails", False, "y=2")]


def test_each_offset_is_a_column_and_a_failed_claim_does_not_stop_the_run(tmp_path, capsys):
    path = _nb(tmp_path)
    before = path.read_text()
    out = tmp_path / "claims.md"
    rc = ck.main([str(path), "--offsets", "0", "1000", "--out", str(out)])
    assert rc == 1  # offset 1000 breaks the first claim
    text = out.read_text()
    assert "| the offset is below 500 | ✓ offset=0 | ✗ offset=1000 |" in text
    assert "| always | ✓ | ✓ |" in text  # a false claim does not stop the survey
    assert path.read_text() == before  # the notebook itself is not touched
    assert "1 failed" in capsys.readouterr().err


def test_other_errors_are_reported(tmp_path):
    path = _nb(tmp_path, "raise ValueError('broken')")
    claims, _, error = ck.run_notebook(path, 0)
    assert claims == [] and error == "ValueError: broken"


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        ck.main([str(tmp_path / "missing.ipynb")])
    with pytest.raises(SystemExit):
        ck.main([str(_nb(tmp_path)), "--offsets", "1", "1"])
