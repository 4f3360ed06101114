"""`turbodiff inspect --hash` against torch/safetensors on freshly generated
weight files: every tensor's name, dtype, shape and SHA-256 of its bytes."""
import collections

import pytest

from conftest import run_td
from gen_weight_fixtures import write_fixtures


def test_inspect_matches_python(td_cli, seed, tmp_path):
    expected = collections.defaultdict(list)
    for f, *row in write_fixtures(tmp_path, seed):
        expected[f].append("\t".join(row))
    assert len(expected) >= 6
    for f, rows in expected.items():
        got = run_td(td_cli, "inspect", "--hash", tmp_path / f).stdout.splitlines()
        assert sorted(got) == sorted(rows), f"{f}: {set(got) ^ set(rows)}"


def test_inspect_without_hash(td_cli, seed, tmp_path):
    rows = write_fixtures(tmp_path, seed)
    got = run_td(td_cli, "inspect", tmp_path / "views.pth").stdout.splitlines()
    want = ["\t".join(r[1:4]) for r in rows if r[0] == "views.pth"]
    assert sorted(got) == sorted(want)


@pytest.mark.parametrize("content, words", [
    (b"", "too short"),
    (b"\x80\x02}q\x00.", "legacy PyTorch format"),
    (b"PK\x03\x04" + b"\0" * 40, "end of central directory"),
    (b"\x10\0\0\0\0\0\0\0{\"a\": 1}", "past the end"),
])
def test_inspect_bad_file(td_cli, tmp_path, content, words):
    p = tmp_path / "bad.bin"
    p.write_bytes(content)
    r = run_td(td_cli, "inspect", p, check=False)
    assert r.returncode != 0
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr
