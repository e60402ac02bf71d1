"""predict scores no image that prepare would refuse as training data: one error line naming the file."""

from covid_keras import commands


def test_predict_refuses_an_image_smaller_than_prepare_accepts_naming_it(tmp_path, capsys):
    from PIL import Image

    from covid_keras import sources

    tiny = tmp_path / "tiny.png"
    Image.new("L", (1, 1)).save(tiny)
    Image.new("L", (sources.MIN_IMAGE_SIDE, sources.MIN_IMAGE_SIDE)).save(tmp_path / "ok.png")
    assert sources.too_small(tmp_path / "ok.png") is None
    # No model is loaded when no file is left to score: the saved model named here does not exist.
    assert commands.main(["predict", "--saved-model", str(tmp_path / "no-model"), str(tiny)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tiny}: image too small: 1x1 px (the minimum is {sources.MIN_IMAGE_SIDE} px a side, "
                   "as for training data)"]


