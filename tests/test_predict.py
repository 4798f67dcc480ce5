import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from popray import store
from popray.cli import app
from popray.predict import candidate_files, run_predict


@pytest.fixture
def candidates(tmp_path, tiny_input, tiny_truth):
    folder = tmp_path / "candidates"
    (folder / "sub").mkdir(parents=True)
    media = sorted((tiny_input / "media").glob("*.jpg"))
    good = [m for m in media if m.stem not in tiny_truth["corrupt_media"] and not m.is_symlink()]
    shutil.copy(good[0], folder / "a.jpg")
    shutil.copy(good[1], folder / "sub" / "b.jpg")
    Image.new("RGB", (300, 200), (10, 200, 30)).save(folder / "c.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (folder / "notes.txt").write_text("not media")
    (folder / ".hidden.jpg").write_bytes(b"")
    video = next((tiny_input / "media").glob("*.mp4"))
    shutil.copy(video, folder / "clip.mp4")
    return folder


def test_candidates_are_ranked_best_first_and_bad_files_say_why(trained_copy, candidates):
    assert ".hidden.jpg" not in {p.name for p in candidate_files([candidates])}
    table = run_predict(trained_copy, [candidates], k=2)
    rows = table.to_pylist()
    by_name = {r["file"].rsplit("/", 1)[1]: r for r in rows}
    assert set(by_name) == {"a.jpg", "b.jpg", "c.png", "broken.jpg", "notes.txt", "clip.mp4"}
    ranked = [r for r in rows if r["rank"] is not None]
    assert [r["rank"] for r in ranked] == [1, 2, 3]
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    for r in ranked:
        assert r["model"] == "image" and r["k"] == 2 and r["error"] is None
        assert r["score"] == pytest.approx(r["proba"][1])  # k = 2: P(popular)
        assert (trained_copy / r["gradcam"]).is_file()
    assert by_name["broken.jpg"]["error"].startswith("cannot decode image")
    assert "not an image" in by_name["notes.txt"]["error"]
    assert "no video model" in by_name["clip.mp4"]["error"]  # only `image` was trained
    con = store.connect(trained_copy)
    assert con.sql("SELECT count(*) FROM predictions_new WHERE rank IS NOT NULL").fetchall() == [
        (3,)
    ]
    con.close()


def test_predict_cli_prints_the_ranking(trained_copy, candidates):
    result = CliRunner().invoke(
        app,
        ["predict", "--out", str(trained_copy), "--media", str(candidates / "a.jpg"), "--k", "2"],
    )
    assert result.exit_code == 0, result.output
    assert "   1 " in result.output and "Grad-CAM:" in result.output
    missing = CliRunner().invoke(
        app, ["predict", "--out", str(trained_copy), "--media", "x", "--k", "5"]
    )
    assert missing.exit_code == 2 and "no saved image model for k=5" in missing.output
