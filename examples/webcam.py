"""A webcam loop: faces and emotions on every frame, shown in an OpenCV window (q or Esc quits).

    python examples/webcam.py                      # camera 0
    python examples/webcam.py video.mp4 --no-window --max-frames 50     # a file, headless

`Recognizer.frames` opens the source, runs the same pipeline as `fer-edge`, and closes the camera when the loop
ends or breaks. The window needs an OpenCV with a GUI (`pip install opencv-python` instead of the headless
build) and a display; without them the loop prints one line per frame.
"""
import argparse

import cv2

from fer_edge import Recognizer


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", nargs="?", default="0", help="camera index, video file, URL or folder (default 0)")
    p.add_argument("--no-window", action="store_true", help="print results instead of showing a window")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    a = p.parse_args()
    source = int(a.source) if a.source.isdigit() else a.source
    with Recognizer(detect_every=2, smooth=0.5) as rec:  # detect every other frame, steady labels
        for image, result in rec.frames(source, max_frames=a.max_frames):
            if a.no_window:
                print(f"frame {result.frame}: " + (", ".join(f"{f.label} {f.probs[f.label]:.2f}"
                                                            for f in result.faces) or "no face"))
                continue
            cv2.imshow("fer-edge", rec.draw(image, result))
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                break
    if not a.no_window:
        cv2.destroyAllWindows()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
