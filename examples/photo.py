"""Faces and emotions in one photo, from Python.

    python examples/photo.py ../shared/data/samples/fer_justin.jpg [--out annotated.jpg]
"""
import argparse
import sys

import cv2

from fer_edge import FerEdgeError, Recognizer, load_image


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("photo")
    p.add_argument("--out", help="also write the photo with boxes and labels drawn on it")
    a = p.parse_args()
    try:
        with Recognizer() as rec:
            faces = rec.analyze(a.photo)
            for face in faces:
                top3 = sorted(face.probs.items(), key=lambda kv: -kv[1])[:3]
                print(f"face at {face.box}: {face.label} ({', '.join(f'{k} {p:.2f}' for k, p in top3)})")
            if not faces:
                print("no face")
            if a.out:
                cv2.imwrite(a.out, rec.draw(load_image(a.photo), faces))
    except FerEdgeError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
