"""The home folder's layout (autotune.home): the files of a study come from a safe folder name.
"""

from __future__ import annotations


def test_8_files_of_a_study_come_from_a_safe_folder_name() -> None:
    from autotune.home import study_folder

    assert study_folder("demo") != study_folder("demo2") and study_folder("demo").startswith("demo-")
    for odd in ("..", "a/../b", "x" * 500, "a\nb"):
        folder = study_folder(odd)
        assert "/" not in folder and "\n" not in folder and not folder.startswith(".") and len(folder) < 60
