from pathlib import Path

from picobot.config import parse_config
from picobot.runtime.media import MediaRuntime


def test_files_go_to_data_dir_unless_media_dir_is_set(tmp_path: Path) -> None:
    own = MediaRuntime(parse_config({"data_dir": str(tmp_path / "data")}, {}))
    assert own.store.root == (tmp_path / "data" / "media").resolve()

    def node(name: str) -> MediaRuntime:
        data = {"data_dir": str(tmp_path / name), "media": {"dir": str(tmp_path / "shared")}}
        return MediaRuntime(parse_config(data, {}))

    a, b, a_again = node("a"), node("b"), node("a")
    assert a.store.root == b.store.root == (tmp_path / "shared").resolve()
    # Each node receives files in a folder of its own, the same one after a restart.
    assert a.store._incoming != b.store._incoming
    assert a.store._incoming == a_again.store._incoming
