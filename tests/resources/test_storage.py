"""ArtifactStore on a local folder and on an fsspec object store (fsspec's in-memory file system)."""

import pandas as pd
import pytest

from ml import io
from resources.storage import ArtifactStore


@pytest.mark.parametrize("root", ["local", "memory://keel-test"])
def test_round_trip(tmp_path, root):
    store = ArtifactStore(root=str(tmp_path / "store") if root == "local" else root)
    frame = pd.DataFrame({"id": ["a", "b"], "x": [1.5, 2.5]})
    uri = store.uri("features", "table.parquet")
    io.write_parquet(frame, uri)
    assert uri.endswith("features/table.parquet") and io.exists(store.uri("features", "table.parquet"))
    pd.testing.assert_frame_equal(io.read_parquet(store.uri("features", "table.parquet")), frame)
    io.write_json({"levels": ["x"]}, store.uri("features", "state.json"))
    assert io.read_json(store.uri("features", "state.json")) == {"levels": ["x"]}
    assert not io.exists(store.uri("features", "missing.json"))


def test_local_root_leaves_no_temporary_files(tmp_path):
    store = ArtifactStore(root=str(tmp_path))
    for n in range(3):
        io.write_json({"n": n}, store.uri("state.json"))
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"] and io.read_json(store.uri("state.json")) == {"n": 2}


def test_browser_urls_follow_the_store(tmp_path):
    served = ArtifactStore(root=str(tmp_path), web_url="http://127.0.0.1:3001/")
    assert served.browser_url(served.uri("monitoring", "drift", "2026-10-01 a.html")) == (
        "http://127.0.0.1:3001/monitoring/drift/2026-10-01%20a.html"
    )
    assert ArtifactStore(root=str(tmp_path)).browser_url(str(tmp_path / "r.html")) is None  # nobody serves it
    assert ArtifactStore(root="s3://bucket/keel").browser_url("s3://bucket/keel/monitoring/d.html") == (
        "https://console.aws.amazon.com/s3/object/bucket?prefix=keel/monitoring/d.html"
    )
    assert ArtifactStore(root="gs://bucket/keel/").browser_url("gs://bucket/keel/monitoring/d.html") == (
        "https://console.cloud.google.com/storage/browser/_details/bucket/keel/monitoring/d.html"
    )
    assert ArtifactStore(root="az://container/keel").browser_url("az://container/keel/d.html") is None
    with pytest.raises(ValueError, match="not under the artifact store's root"):
        served.browser_url("/etc/passwd")


def test_a_downloaded_copy_is_removed_when_its_block_ends_even_on_error(tmp_path, monkeypatch):
    """A remote artifact's local copy lives in the temp folder only while it is used (none piles up there)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    store = ArtifactStore(root="memory://keel-copies")
    io.write_json({"file": "manifest"}, store.uri("models", "run1", "manifest.json"))
    with store.local_copy(store.uri("models", "run1")) as local:
        assert io.read_json(str(local / "manifest.json")) == {"file": "manifest"}
    with pytest.raises(RuntimeError), store.local_copy(store.uri("models", "run1")) as failed:
        raise RuntimeError("the step failed while the copy was open")
    with pytest.raises(FileNotFoundError), store.local_copy(store.uri("models", "missing")):
        pass
    assert not local.exists() and not failed.exists() and not list(tmp_path.glob("keel-artifact-*"))
    owned = store.download(store.uri("models", "run1"))  # a copy its caller keeps (the endpoint's loaded model)
    assert (owned / "manifest.json").exists()
    with store.local_copy(str(tmp_path)) as folder:  # a local folder is used in place and never removed
        assert folder == tmp_path
    assert tmp_path.exists()
