"""The preprocessing contract: any crop in, one batch shape and value range out."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from fer_edge.runtime.core.boxes import FaceBox
from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.model.preprocess import PreprocessSpec, crop_faces, expand_box, preprocess, to_gray


def _gradient(h: int, w: int) -> np.ndarray:
    """A low-contrast grey face stand-in (values 60..140), so equalisation has something to stretch."""
    return (60 + 80 * np.add.outer(np.arange(h) / max(h - 1, 1), np.arange(w) / max(w - 1, 1)) / 2).astype(np.uint8)


def _faces():
    g = _gradient(64, 52)
    bgr = cv2.cvtColor(_gradient(30, 40), cv2.COLOR_GRAY2BGR)
    bgra = cv2.cvtColor(_gradient(100, 90), cv2.COLOR_GRAY2BGRA)
    return [g, bgr, bgra, g[:, :, None], _gradient(48, 48)]


@pytest.mark.parametrize("size, channels", [((48, 48), 1), ((64, 64), 3), ((40, 56), 1)])
def test_mixed_inputs_give_one_batch_shape(size, channels):
    spec = PreprocessSpec(size=size, channels=channels)
    x = preprocess(_faces(), spec)
    assert x.shape == (5, *size, channels) and x.dtype == np.float32


def test_uint8_batch_array_and_empty_list():
    spec = PreprocessSpec()
    batch = np.stack([_gradient(48, 48)] * 3)
    assert preprocess(batch, spec).shape == (3, 48, 48, 1)
    assert preprocess(batch[..., None], spec).shape == (3, 48, 48, 1)
    assert preprocess([], spec).shape == (0, 48, 48, 1)


def test_grey_bgr_and_bgra_of_the_same_face_agree():
    g = _gradient(48, 48)
    spec = PreprocessSpec()
    x = preprocess([g, cv2.cvtColor(g, cv2.COLOR_GRAY2BGR), cv2.cvtColor(g, cv2.COLOR_GRAY2BGRA)], spec)
    assert np.array_equal(x[0], x[1]) and np.array_equal(x[0], x[2])


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)])
def test_value_range_honoured(value_range):
    lo, hi = value_range
    face = np.tile(np.arange(256, dtype=np.uint8), (48, 1))[:, ::5][:, :48]  # includes 0 and 255
    face[0, 0], face[0, 1] = 0, 255
    x = preprocess([face], PreprocessSpec(value_range=value_range))
    assert x.min() == lo and x.max() == hi  # exact ends: 0 -> low, 255 -> high
    assert np.all((x >= lo) & (x <= hi))
    mid = preprocess([np.full((48, 48), 51, np.uint8)], PreprocessSpec(value_range=value_range))
    assert np.allclose(mid, lo + (hi - lo) * 51 / 255, atol=1e-6)


def test_parse_range_and_bad_specs():
    assert PreprocessSpec.parse_range("-1, 1") == (-1.0, 1.0)
    with pytest.raises(FerEdgeError, match="unknown value range"):
        PreprocessSpec.parse_range("0,2")
    for bad in (dict(channels=2), dict(value_range=(1, 0)), dict(size=(4, 4)), dict(crop_margin=-0.1)):
        with pytest.raises(FerEdgeError):
            PreprocessSpec(**bad)


def test_spec_dict_round_trip():
    spec = PreprocessSpec(size=(64, 56), channels=3, value_range=(-1, 1), equalize=True, crop_margin=0.2)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(FerEdgeError, match="unknown preprocessing keys"):
        PreprocessSpec.from_dict({**spec.to_dict(), "gamma": 0.5})


def test_equalize_changes_output():
    faces = [_gradient(48, 48)]
    plain = preprocess(faces, PreprocessSpec(equalize=False))
    eq = preprocess(faces, PreprocessSpec(equalize=True))
    assert not np.array_equal(plain, eq)
    assert np.ptp(eq) > np.ptp(plain)  # equalisation stretches a low-contrast face to the full range
    assert np.allclose(eq[0, :, :, 0], cv2.equalizeHist(faces[0]) / 255.0, atol=1e-6)


def test_equalize_must_be_a_boolean():
    """bool('false') is True: a string from a config file must not silently switch equalisation on."""
    with pytest.raises(FerEdgeError, match="equalize"):
        PreprocessSpec(equalize="false")
    assert PreprocessSpec(equalize=np.bool_(True)).equalize is True


def test_channels_3_replicates_grey():
    x = preprocess([cv2.cvtColor(_gradient(60, 60), cv2.COLOR_GRAY2BGR)], PreprocessSpec(channels=3))
    assert x.shape == (1, 48, 48, 3)
    assert np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2])
    assert np.array_equal(x[..., :1], preprocess([_gradient(60, 60)], PreprocessSpec(channels=1)))


def test_colour_goes_through_bt601_grey():
    bgr = np.zeros((48, 48, 3), np.uint8)
    bgr[..., 2] = 255  # pure red
    x = preprocess([bgr], PreprocessSpec(value_range=(0, 255)))
    assert np.all(x == 76)  # 0.299 * 255, rounded by OpenCV
    assert to_gray(bgr).dtype == np.uint8


@pytest.mark.parametrize("bad, match", [
    (np.zeros((48, 48), np.float32), "uint8"),
    (np.zeros((48, 48, 3), np.float64), "uint8"),
    (np.zeros((48, 48, 5), np.uint8), "found shape"),
    (np.zeros((48, 48, 2), np.uint8), "found shape"),
    (np.zeros((2, 48, 48, 3), np.uint8), "found shape"),
    (np.zeros((0, 10), np.uint8), "empty"),
], ids=["float32", "float64-bgr", "5-channel", "2-channel", "4-d", "empty"])
def test_bad_faces_raise(bad, match):
    with pytest.raises(FerEdgeError, match=match):
        preprocess([bad], PreprocessSpec())


def test_single_face_instead_of_batch_is_refused():
    with pytest.raises(FerEdgeError, match="wrap a single face in a list"):
        preprocess(_gradient(48, 48), PreprocessSpec())
    # A single BGR image would otherwise be read as a batch of H faces, each W x 3 pixels.
    with pytest.raises(FerEdgeError, match="wrap a single face in a list"):
        preprocess(np.zeros((60, 80, 3), np.uint8), PreprocessSpec())


def test_views_and_flipped_channels_are_accepted():
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    rgb = frame[:, :, ::-1]  # negative stride, as from an RGB camera converted by slicing
    x = preprocess([rgb[10:70, 20:90], frame[::2, ::2]], PreprocessSpec())
    assert x.shape == (2, 48, 48, 1)
    assert np.array_equal(x[:1], preprocess([np.ascontiguousarray(rgb[10:70, 20:90])], PreprocessSpec()))


# --- crop_faces ------------------------------------------------------------------------------------

def test_crop_without_margin_is_the_box():
    frame = np.arange(100 * 120, dtype=np.int64).reshape(100, 120).astype(np.uint8)
    (crop,) = crop_faces(frame, [(10, 20, 30, 40)], PreprocessSpec())
    assert crop.shape == (40, 30) and np.array_equal(crop, frame[20:60, 10:40])


def test_crop_margin_grows_every_side():
    frame = np.zeros((200, 200, 3), np.uint8)
    spec = PreprocessSpec(crop_margin=0.25)
    (crop,) = crop_faces(frame, [(80, 60, 40, 80)], spec)
    assert crop.shape == (120, 60, 3)  # 80 + 2*20 high, 40 + 2*10 wide
    assert expand_box((80, 60, 40, 80), 0.25, frame.shape) == (70, 40, 60, 120)


def test_crop_clips_to_the_frame():
    frame = np.zeros((100, 120), np.uint8)
    spec = PreprocessSpec(crop_margin=0.5)
    # x: -10 - 20 -> 0 .. -10 + 40 + 20 = 50;  y: 90 - 15 = 75 .. 90 + 30 + 15 -> 100
    assert expand_box((-10, 90, 40, 30), 0.5, frame.shape) == (0, 75, 50, 25)
    crops = crop_faces(frame, [(-10, 90, 40, 30), (100, -5, 40, 40)], spec)
    assert [c.shape for c in crops] == [(25, 50), (55, 40)]  # second: x 80..120, y 0..55
    assert preprocess(crops, spec).shape == (2, 48, 48, 1)


def test_crop_box_outside_the_frame_raises():
    frame = np.zeros((100, 120), np.uint8)
    with pytest.raises(FerEdgeError, match="outside"):
        crop_faces(frame, [(130, 10, 20, 20)], PreprocessSpec())
    with pytest.raises(FerEdgeError, match="outside"):
        crop_faces(frame, [(-50, 10, 20, 20)], PreprocessSpec(crop_margin=0.1))


def test_a_grey_spec_writes_the_keys_it_always_wrote():
    """Colour, mean/std and alignment keys appear only when used: a grey model's metadata reads as before, and an
    older fer-edge still reads it."""
    assert set(PreprocessSpec(equalize=True).to_dict()) == {"size", "channels", "value_range", "equalize", "crop_margin"}


def test_colour_specs_scale_per_channel_in_the_models_order():
    from fer_edge.runtime.model.preprocess import IMAGENET

    face = np.zeros((8, 8, 3), np.uint8)
    face[..., 2] = 255  # pure red in BGR
    rgb = PreprocessSpec((8, 8), 3, colour="rgb", mean=IMAGENET[0], std=IMAGENET[1])
    out = preprocess([face], rgb)[0, 0, 0]
    np.testing.assert_allclose(out, [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-5)
    bgr = PreprocessSpec((8, 8), 3, colour="bgr", value_range=(0, 1))
    np.testing.assert_allclose(preprocess([face], bgr)[0, 0, 0], [0, 0, 1])
    assert PreprocessSpec.from_dict(rgb.to_dict()) == rgb


@pytest.mark.parametrize("kw,words", [
    ({"colour": "rgb"}, "takes 3 channels"), ({"channels": 3, "colour": "rgb", "equalize": True}, "grey models only"),
    ({"channels": 3, "mean": (0.5, 0.5, 0.5)}, "both a mean and a std"),
    ({"channels": 3, "mean": (0.5, 0.5), "std": (1, 1, 1)}, "mean must be 3 finite numbers"),
    ({"channels": 3, "mean": (0.5, 0.5, 0.5), "std": (1, 0, 1)}, "std must be positive"),
    ({"align": "7point"}, "alignment must be one of"), ({"colour": "hsv"}, "colour must be one of")])
def test_bad_colour_specs_are_refused(kw, words):
    with pytest.raises(FerEdgeError, match=words):
        PreprocessSpec(**kw)


def test_5point_alignment_puts_the_landmarks_on_the_template():
    """Five dots at a rotated, scaled, shifted copy of the template land on the template (within two pixels)."""
    from fer_edge.runtime.faces.framing import face_crops, template_points

    spec = PreprocessSpec((112, 96), 3, colour="rgb", align="5point")
    angle, scale, shift = np.deg2rad(20), 1.7, np.array([60.0, 40.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    tmpl = template_points(spec, 96, 112).astype(np.float64)
    marks = tmpl @ rot.T + shift
    image = np.zeros((400, 400, 3), np.uint8)
    for x, y in marks:
        cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    crop = face_crops(image, [FaceBox(0, 0, 400, 400, 1.0, tuple(map(tuple, marks)))], spec)[0]
    k = crop.shape[1] / 96
    for tx, ty in tmpl * k:
        y0, x0 = int(ty), int(tx)
        assert crop[max(0, y0 - 2):y0 + 3, max(0, x0 - 2):x0 + 3].max() > 128, (tx, ty)
