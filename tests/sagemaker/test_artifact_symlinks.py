"""A code folder ships what is in it: a symbolic link that points outside the folder (or the repository) is
refused with the link, where it points and how to fix it, so compile never uploads a file from elsewhere; links
that stay inside the folder are followed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.archives import LinkOutside, local_members, reproducible_targz
from tests.conftest import make_project, run_cli

SECRET = "aws_secret_access_key = do-not-ship-me"


def _folder(tmp_path: Path) -> Path:
    code = tmp_path / "repo" / "scripts"
    (code / "helpers").mkdir(parents=True)
    (code / "train.py").write_text("print('train')\n")
    (code / "helpers" / "util.py").write_text("X = 1\n")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "credentials").write_text(SECRET)
    return code


@pytest.mark.parametrize("link, target", [
    ("creds.txt", "secrets/credentials"),              # a file outside the folder and the repository
    ("home", "secrets"),                               # a folder outside
    ("helpers/up.py", "repo/pyproject.toml"),          # a file in the repository, outside the code folder
    ("back", "repo"),                                  # the folder's own parent
])
def test_a_link_that_leads_outside_the_folder_is_refused(tmp_path: Path, link: str, target: str) -> None:
    code = _folder(tmp_path)
    (tmp_path / "repo" / "pyproject.toml").write_text("[project]\n")
    (code / link).symlink_to(tmp_path / target)
    for call in (local_members, reproducible_targz):
        with pytest.raises(LinkOutside) as caught:
            call(code)
        message = str(caught.value)
        assert str(code / link) in message and str((tmp_path / target).resolve()) in message, message
        assert "outside the folder" in message and ("Copy the file into the folder" in message), message


def test_links_inside_the_folder_are_followed_and_dangling_ones_left_out(tmp_path: Path) -> None:
    code = _folder(tmp_path)
    (code / "alias.py").symlink_to(code / "train.py")
    (code / "lib").symlink_to(code / "helpers", target_is_directory=True)
    (code / "gone.py").symlink_to(code / "missing.py")
    assert local_members(code) == {"alias.py": b"print('train')\n", "helpers/util.py": b"X = 1\n",
                                   "lib/util.py": b"X = 1\n", "train.py": b"print('train')\n"}


def test_a_link_loop_is_refused(tmp_path: Path) -> None:
    code = _folder(tmp_path)
    (code / "helpers" / "again").symlink_to(code, target_is_directory=True)
    with pytest.raises(LinkOutside, match="a loop"):
        local_members(code)


def test_a_folder_without_links_ships_as_before(tmp_path: Path) -> None:
    code = _folder(tmp_path)
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    assert list(local_members(code)) == ["helpers/util.py", "train.py"]
    assert local_members(code / "train.py") == {"train.py": b"print('train')\n"}
    assert local_members(tmp_path / "absent") is None


PIPELINE = """
name: links
steps:
  - name: prepare
    type: processing
    code: scripts/emit.py
    outputs: [data]
"""
DEV = "sagemaker: {region: us-east-1, role: 'arn:aws:iam::111122223333:role/exec', bucket: links-bucket}\n"


def test_compile_refuses_a_code_folder_link_to_a_file_outside_the_repository(tmp_path: Path) -> None:
    config = make_project(tmp_path / "p", "links", PIPELINE, {"dev": DEV}, ("emit.py",))
    (tmp_path / "credentials").write_text(SECRET)
    (tmp_path / "p" / "scripts" / "settings.ini").symlink_to(tmp_path / "credentials")
    done = run_cli("compile", str(config), "--env", "dev", home=tmp_path / "state", cwd=tmp_path / "p")
    assert done.returncode == 2, done.stderr
    assert "scripts/settings.ini" in done.stderr and str(tmp_path / "credentials") in done.stderr, done.stderr
    assert "remove the link" in done.stderr and "Traceback" not in done.stderr
    assert SECRET not in done.stdout + done.stderr

    (tmp_path / "p" / "scripts" / "settings.ini").unlink()  # without it, the same project compiles
    done = run_cli("compile", str(config), "--env", "dev", home=tmp_path / "state", cwd=tmp_path / "p")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["Steps"]
