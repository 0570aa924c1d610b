# The `fer` package's own test suite, run against fer_edge.compat (issue 28).
#
# Origin: tests/test_fer.py of fer 25.10.3 (https://github.com/justinshenk/fer; the sdist from PyPI,
# `pip download fer==25.10.3 --no-deps --no-binary :all:`), under the MIT licence below. Changed, each marked
# "fer-edge:" where it is:
#   1. the two import lines: `from fer import FER, Video` and `from fer.exceptions import InvalidImage` ->
#      `from fer_edge.compat import ...`;
#   2. the files it reads from the working directory (justin.jpg, no-faces.jpg, example.py) are the shared
#      samples, copied into a temporary working directory by the fixture at the end of this file;
#   3. `happy > 0.9` on justin.jpg: fer-edge's model is calibrated (its probabilities match how often it is
#      right), so a smile it labels happy gets 0.58 here, not fer's 0.92; the assertion kept is that happy is
#      the face's top emotion (docs/python.md, "What differs");
#   4. tests/woman2.mp4 is not in fer's sdist (nor in this repository): the video test runs on the shared sample
#      fer_test.mp4, and its `neutral > 0.5 on the first 5 frames` (a fact about woman2.mp4's opening frames)
#      becomes the fact about this video that fer itself gives: happy is the dominant emotion.
#
# MIT License
#
# Copyright (c) 2018 Justin Shenk
#
# Permission is hereby granted, free of charge, to any person obtaining a copy
# of this software and associated documentation files (the "Software"), to deal
# in the Software without restriction, including without limitation the rights
# to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
# copies of the Software, and to permit persons to whom the Software is
# furnished to do so, subject to the following conditions:
#
# The above copyright notice and this permission notice shall be included in all
# copies or substantial portions of the Software.
#
# THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
# IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
# FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
# AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
# LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
# OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
# SOFTWARE.

import unittest

import cv2
import pytest

pd = pytest.importorskip("pandas")  # fer-edge: the [compat] extra

from fer_edge.compat import FER, Video  # fer-edge: was `from fer import FER, Video`
from fer_edge.compat import InvalidImage  # fer-edge: was `from fer.exceptions import InvalidImage`

detector = None


class TestFER(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        global detector, mtcnn_detector
        detector = FER()
        mtcnn_detector = FER(mtcnn=True)

    def test_detect_emotions(self):
        """
        FER is able to detect faces in an image
        :return:
        """
        justin = "justin.jpg"

        result = detector.detect_emotions(justin)  # type: list
        mtcnn_result = mtcnn_detector.detect_emotions(justin)  # type: list

        self.assertEqual(len(result), 1)

        first = result[0]
        mtcnn_first = mtcnn_result[0]

        # fer-edge: was assertGreater(first["emotions"]["happy"], 0.9) for both: a calibrated model's smile
        # scores 0.58 here (see the header); happy is still the top emotion
        self.assertEqual(max(first["emotions"], key=first["emotions"].get), "happy")
        self.assertEqual(max(mtcnn_first["emotions"], key=mtcnn_first["emotions"].get), "happy")
        self.assertIn("box", first)
        self.assertIn("emotions", first)
        self.assertTrue(len(first["box"]), 1)

    def test_detect_faces_invalid_content(self):
        """
        FER detects invalid images
        :return:
        """
        justin = cv2.imread("example.py")

        with self.assertRaises(InvalidImage):
            _ = detector.detect_emotions(justin)  # type: list

    def test_detect_no_faces_on_no_faces_content(self):
        """
        FER successfully reports an empty list when no faces are detected.
        :return:
        """
        justin = cv2.imread("no-faces.jpg")

        result = detector.detect_emotions(justin)  # type: list
        self.assertEqual(len(result), 0)

    def test_top_emotion(self):
        """
        FER successfully returns tuple of string and float for first face.
        :return:
        """
        justin = cv2.imread("justin.jpg")

        top_emotion, score = detector.top_emotion(justin)  # type: tuple
        self.assertIsInstance(top_emotion, str)
        self.assertIsInstance(float(score), float)

    def test_video(self):
        detector = FER()
        video = Video("tests/fer_test.mp4")  # fer-edge: was tests/woman2.mp4 (not shipped; see the header)

        raw_data = video.analyze(detector, display=False)
        assert isinstance(raw_data, list)

        # Convert to pandas for analysis
        df = video.to_pandas(raw_data)
        # fer-edge: was `sum(df.neutral[:5] > 0.5) == 5`, a fact about woman2.mp4; on fer_test.mp4 fer itself
        # makes happy the top emotion on 101 of its 114 face frames
        top = df[["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]].idxmax(axis=1)
        assert top.value_counts().index[0] == "happy", f"Expected mostly happy, got {top.value_counts()}"
        assert isinstance(df, pd.DataFrame)
        assert "angry" in df
        df = video.get_first_face(df)
        assert isinstance(df, pd.DataFrame)
        df = video.get_emotions(df)
        assert isinstance(df, pd.DataFrame)

    def tearDownClass():
        global detector
        del detector


# fer-edge: the files fer's tests read from their working directory, from the shared samples
@pytest.fixture(autouse=True, scope="module")
def _fer_working_directory(samples_dir, tmp_path_factory):
    import os
    import shutil

    work = tmp_path_factory.mktemp("fer-tests")
    shutil.copy(samples_dir / "fer_justin.jpg", work / "justin.jpg")
    shutil.copy(samples_dir / "fer_no-faces.jpg", work / "no-faces.jpg")
    (work / "example.py").write_text("from fer import FER\n")  # fer's example script: not an image
    (work / "tests").mkdir()
    shutil.copy(samples_dir / "fer_test.mp4", work / "tests" / "fer_test.mp4")
    old = os.getcwd()
    os.chdir(work)  # Video.analyze writes output/ and data.csv here, as fer does
    yield work
    os.chdir(old)


if __name__ == "__main__":
    unittest.main()
